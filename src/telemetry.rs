//! Logs and traces of the process: the `tracing` subscriber, text or JSON, and, with an
//! OTLP endpoint, OpenTelemetry traces exported over gRPC or HTTP.
//!
//! Traces are off by default. Off, no span of the message path is created at all
//! (see [`switchyard_telemetry::trace`]): the hot path pays one relaxed atomic load.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::Deserialize;
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{self, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer as _;

pub const DEFAULT_SAMPLE_RATIO: f64 = 1.0;
pub const DEFAULT_PARENT_BASED: bool = true;

/// How traces leave the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP/gRPC (a collector's port 4317).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318, path `/v1/traces`).
    Http,
}

/// `[telemetry]` in a role's file; flags of the same names override it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Where OTLP traces go, e.g. `http://127.0.0.1:4317`; without it traces are off.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    #[serde(default)]
    pub otlp_protocol: OtlpProtocol,
    /// Share of new traces sampled, 0.0 to 1.0.
    #[serde(default = "default_ratio")]
    pub sample_ratio: f64,
    /// Follow the sampling decision of an incoming `traceparent` (W3C) when there is one.
    #[serde(default = "default_parent_based")]
    pub parent_based: bool,
    /// The `service.name` resource; defaults to `switchyard-<role>`.
    #[serde(default)]
    pub service_name: Option<String>,
}

fn default_ratio() -> f64 {
    DEFAULT_SAMPLE_RATIO
}

fn default_parent_based() -> bool {
    DEFAULT_PARENT_BASED
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::default(),
            sample_ratio: DEFAULT_SAMPLE_RATIO,
            parent_based: DEFAULT_PARENT_BASED,
            service_name: None,
        }
    }
}

impl TelemetryConfig {
    /// Every problem, each naming its key under `prefix`.
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            problems.push(format!("{prefix}sample_ratio: must be between 0.0 and 1.0"));
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                problems.push(format!(
                    "{prefix}otlp_endpoint: must be an http:// or https:// URL"
                ));
            }
        }
        problems
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// What [`install`] set up; [`Telemetry::shutdown`] flushes the spans still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports every finished span now (tests; the batch processor exports by itself).
    pub async fn force_flush(&self) {
        let Some(provider) = self.provider.clone() else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    }

    /// Exports what is buffered and stops the exporter (bounded: a collector that is
    /// gone does not hold the process up).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, flushed).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => eprintln!("warning: traces not flushed: {err}"),
            Ok(Err(_)) | Err(_) => eprintln!("warning: traces not flushed in time"),
        }
    }
}

/// How long the last spans may take to leave at exit.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// One export of a batch of spans.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The span exporter, sampler and provider of `config` (which has an endpoint); must
/// run inside the Tokio runtime, which exports the batches. The caller installs the
/// layer (see [`install`]; tests install their own subscriber).
pub fn tracer_provider(config: &TelemetryConfig, role: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig as _;
    let endpoint = config
        .otlp_endpoint
        .as_deref()
        .context("no OTLP endpoint")?;
    let exporter = match config.otlp_protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
        OtlpProtocol::Http => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(http_traces_url(endpoint))
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
    }
    .with_context(|| format!("cannot set up the OTLP exporter to {endpoint}"))?;
    let ratio = Sampler::TraceIdRatioBased(config.sample_ratio);
    let sampler = if config.parent_based {
        Sampler::ParentBased(Box::new(ratio))
    } else {
        ratio
    };
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let service = config
        .service_name
        .clone()
        .unwrap_or_else(|| format!("switchyard-{role}"));
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build())
}

/// OTLP/HTTP takes traces at `/v1/traces`: added when the endpoint names no path.
fn http_traces_url(endpoint: &str) -> String {
    let path_start = endpoint
        .find("://")
        .map(|i| i + 3)
        .and_then(|from| endpoint[from..].find('/').map(|j| from + j));
    match path_start {
        Some(at) if endpoint[at..].len() > 1 => endpoint.to_string(),
        _ => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
    }
}

/// The spans that go to OTLP: Switchyard's own, at `info` and above, whatever the log
/// filter says.
pub fn trace_filter() -> Targets {
    Targets::new().with_target("switchyard", Level::INFO)
}

/// Installs the global subscriber: logs to stderr filtered by `filter` (text or JSON)
/// and, when `config` has an endpoint, traces over OTLP. Must run inside the Tokio
/// runtime (it exports the traces).
pub fn install(
    filter: &str,
    format: LogFormat,
    config: &TelemetryConfig,
    role: &str,
) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| {
        eprintln!("warning: bad log filter {filter:?}, using info");
        EnvFilter::new("info")
    });
    let provider = match &config.otlp_endpoint {
        Some(_) => Some(tracer_provider(config, role)?),
        None => None,
    };
    let traced = provider.is_some();
    let logs = fmt::layer().with_writer(std::io::stderr);
    let logs = match (format, traced) {
        (LogFormat::Text, false) => logs.boxed(),
        (LogFormat::Json, false) => logs.json().boxed(),
        (LogFormat::Text, true) => logs
            .with_ansi(false)
            .event_format(WithTraceIds::new(fmt::format(), false))
            .boxed(),
        (LogFormat::Json, true) => logs
            .json()
            .event_format(WithTraceIds::new(fmt::format().json(), true))
            .boxed(),
    }
    .with_filter(filter);
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("switchyard"))
            .with_filter(trace_filter())
    });
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(logs).with(traces));
    let _ = LOG_DISPATCH.set(dispatch.downgrade());
    tracing::dispatcher::set_global_default(dispatch)
        .context("a global tracing subscriber is already installed")?;
    if let Some(endpoint) = &config.otlp_endpoint {
        switchyard_telemetry::trace::enable();
        tracing::info!(
            endpoint = %endpoint,
            protocol = ?config.otlp_protocol,
            sample_ratio = config.sample_ratio,
            parent_based = config.parent_based,
            "exporting traces over OTLP"
        );
    }
    Ok(Telemetry { provider })
}

/// The installed subscriber, for finding a log line's OpenTelemetry context.
static LOG_DISPATCH: OnceLock<WeakDispatch> = OnceLock::new();

/// Writes each log line with the `trace_id` and `span_id` of the innermost span around
/// it (text: appended as fields; JSON: top-level keys). Used only when traces are on.
pub struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<F> WithTraceIds<F> {
    pub fn new(inner: F, json: bool) -> WithTraceIds<F> {
        WithTraceIds { inner, json }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let ids = current_ids(ctx);
        let Some((trace_id, span_id)) = ids else {
            return writer.write_str(&line);
        };
        let body = line.trim_end_matches('\n');
        if self.json {
            match body.strip_suffix('}') {
                Some(open) => writeln!(
                    writer,
                    "{open},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
                ),
                None => writeln!(writer, "{body}"),
            }
        } else {
            writeln!(writer, "{body} trace_id={trace_id} span_id={span_id}")
        }
    }
}

/// The trace and span ids of the innermost span of the event with a valid context.
fn current_ids<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<(String, String)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let dispatch = LOG_DISPATCH.get()?.upgrade()?;
    let scope = ctx.event_scope()?;
    for span in scope {
        let Some(cx) = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch) else {
            continue;
        };
        let span_ref = cx.span();
        let span_context = span_ref.span_context();
        if span_context.is_valid() {
            return Some((
                span_context.trace_id().to_string(),
                span_context.span_id().to_string(),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_endpoints_get_the_traces_path() {
        assert_eq!(http_traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(http_traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            http_traces_url("https://c/otlp/v1/traces"),
            "https://c/otlp/v1/traces"
        );
    }

    #[test]
    fn problems_name_their_keys() {
        let config = TelemetryConfig {
            sample_ratio: 1.5,
            otlp_endpoint: Some("collector:4317".into()),
            ..TelemetryConfig::default()
        };
        let problems = config.problems("telemetry.");
        assert_eq!(problems.len(), 2);
        assert!(problems[0].starts_with("telemetry.sample_ratio"));
        assert!(problems[1].starts_with("telemetry.otlp_endpoint"));
        assert!(TelemetryConfig::default().problems("").is_empty());
    }
}
