//! The admin listener (`--admin-listen`, never the public port): `/metrics` in the
//! Prometheus text format, or OpenMetrics with exemplars when the scraper asks for it
//! (`Accept: application/openmetrics-text`), `/healthz` (the process serves) and
//! `/readyz` (it can take connections now). Every crate renders its own metrics into
//! the scrape; this module only serves them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use switchyard_broker::Broker;
use switchyard_gateway::GatewayTelemetry;
use switchyard_telemetry::Exposition;
use switchyard_worker::Worker;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

/// `switchyard dev`'s admin address; roles have none unless given.
pub const DEFAULT_DEV_ADMIN_LISTEN: &str = "127.0.0.1:9464";
/// A scraper that has not sent its request by then is cut.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What one process serves on its admin listener.
#[derive(Clone, Default)]
pub struct Admin {
    pub gateway: Option<GatewayTelemetry>,
    pub workers: Vec<Worker>,
    pub broker: Option<Arc<dyn Broker>>,
}

impl Admin {
    /// One scrape of every part of the process.
    pub fn render(&self, openmetrics: bool) -> (String, &'static str) {
        let mut out = Exposition::new(openmetrics);
        out.gauge(
            "switchyard_build_info",
            "The running build: always 1, with its version as a label.",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        if let Some(gateway) = &self.gateway {
            gateway.render_metrics(&mut out);
        }
        for worker in &self.workers {
            worker.render_metrics(&mut out);
        }
        if let Some(broker) = &self.broker {
            broker.render_metrics(&mut out);
        }
        let content_type = out.content_type();
        (out.finish(), content_type)
    }

    /// Ready when the gateway can route and every worker takes connections.
    pub fn ready(&self) -> bool {
        self.gateway.as_ref().is_none_or(GatewayTelemetry::is_ready)
            && self.workers.iter().all(Worker::is_ready)
    }

    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n", "text/plain");
        }
        match req.uri().path() {
            "/metrics" => {
                let accept = req
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                let openmetrics = Exposition::for_accept(accept).is_openmetrics();
                let (body, content_type) = self.render(openmetrics);
                text(StatusCode::OK, body, content_type)
            }
            "/healthz" => text(StatusCode::OK, r#"{"status":"ok"}"#, "application/json"),
            "/readyz" if self.ready() => {
                text(StatusCode::OK, r#"{"status":"ready"}"#, "application/json")
            }
            "/readyz" => text(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"status":"not ready"}"#,
                "application/json",
            ),
            _ => text(StatusCode::NOT_FOUND, "not found\n", "text/plain"),
        }
    }
}

fn text(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// Binds the admin listener.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the admin endpoints (--admin-listen)")
    })
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, admin: Admin, stop: CancellationToken) {
    let admin = Arc::new(admin);
    let connections = TaskTracker::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin endpoints: /metrics /healthz /readyz");
    }
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let admin = admin.clone();
        let stop = stop.clone();
        connections.spawn(
            async move {
                let service = service_fn(move |req| {
                    let answer = admin.answer(&req);
                    async move { Ok::<_, std::convert::Infallible>(answer) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT);
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                let result = tokio::select! {
                    result = conn.as_mut() => result,
                    _ = stop.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "admin connection ended");
                }
            }
            .instrument(tracing::debug_span!("admin")),
        );
    }
    connections.close();
    connections.wait().await;
}
