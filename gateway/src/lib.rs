//! The Switchyard gateway: TLS termination, token checks, worker choice, the upgrade
//! hand-off and byte splice, and the HTTP API (DESIGN "The path of a connection").
//!
//! Layout, in the order a connection meets it:
//! - [`config`]: the TOML configuration and its validation; [`GatewaySettings`] is what
//!   serving needs, loaded from files by [`GatewaySettings::from_config`] or built in
//!   memory by the binary's `dev` mode.
//! - [`tls`]: the rustls server config (ring provider) and a handshake with a timeout.
//! - [`upgrade`] (inbound): one hyper HTTP/1.1 service per client connection, served with
//!   upgrades. `/ws` requests go through the checks of PROTOCOL §1 in order: the
//!   upgrade itself, then [`auth`] (token extraction and verification), then
//!   [`ratelimit`] (per client IP), then [`route`] (choosing a worker).
//! - [`route`] and [`splice`] (outbound): an in-process [`route::LocalWorker`] takes the
//!   hyper request itself; a remote worker gets the upgrade over TCP (mTLS with
//!   `[internal_tls]`) with a signed identity, and its `101` turns into a byte splice. Remote workers come from
//!   `[[workers]]` and from [`registry`]: a task that follows the broker's worker
//!   registry and swaps the router's list of workers, with their reported load and
//!   draining state, as workers come, change and go.
//! - [`api`]: the backend API of PROTOCOL §6 on the same listener, over the broker.
//! - [`demo`]: the demo page and its token endpoint, only with [`DemoSettings`] (dev mode).
//! - [`error`]: refusals tagged by source and mapped to status and log level in one place.
//!
//! [`Gateway::serve`] owns the accept loop: a semaphore permit before each accept, one
//! task per connection in a `TaskTracker` (the registry task in another), and on
//! cancellation it stops accepting, answers `/readyz` with 503, stops following the
//! registry, waits for in-flight handshakes and then ends the splices.

pub mod api;
pub mod auth;
pub mod config;
pub mod demo;
pub mod error;
mod metrics;
pub mod ratelimit;
pub mod registry;
pub mod route;
pub mod splice;
pub mod tls;
pub mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use switchyard_broker::Broker;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

pub use api::ApiKey;
pub use auth::{AuthError, Verifier, VerifierOptions, VerifyingKey};
pub use config::{GatewayConfig, LimitsConfig, RemoteWorkerConfig};
pub use demo::{DemoSettings, MintToken};
pub use error::{ErrorSource, GatewayError, Rejection};
pub use route::{LocalWorker, WorkerLoad};
pub use switchyard_protocol::VerifiedToken;

use crate::config::read_first_line;
use crate::metrics::Handshake;
use crate::ratelimit::RateLimiter;
use crate::route::{RemoteWorker, Router};

/// Pause after a failed `accept` (out of file descriptors, mostly) before the next one.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Everything serving needs, with files already read. The binary's `dev` mode builds it
/// in memory; [`GatewaySettings::from_config`] loads it from a [`GatewayConfig`].
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// `None` serves plain WebSocket (only behind a TLS-terminating proxy).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub verifier: Arc<Verifier>,
    /// `None` disables the HTTP API (it answers 503).
    pub api_key: Option<ApiKey>,
    /// HMAC secret for identity headers; required when `remote_workers` is not empty,
    /// and without it workers learned from the registry are not routed to.
    pub identity_secret: Option<Arc<[u8]>>,
    /// mTLS to remote workers (`[internal_tls]`); `None` dials them over plain TCP.
    pub internal_tls: Option<Arc<rustls::ClientConfig>>,
    pub remote_workers: Vec<RemoteWorkerConfig>,
    /// Route to the workers of the broker's registry too (`registry` in the config);
    /// only when [`GatewayDeps::broker`] is given.
    pub use_registry: bool,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    pub limits: LimitsConfig,
    /// Serve the demo page under `/demo` (dev mode only; never from a config file).
    pub demo: Option<DemoSettings>,
}

impl GatewaySettings {
    /// Settings for in-memory use: TLS and the verifier given, defaults elsewhere.
    pub fn new(tls: Option<Arc<rustls::ServerConfig>>, verifier: Arc<Verifier>) -> GatewaySettings {
        GatewaySettings {
            tls,
            verifier,
            api_key: None,
            identity_secret: None,
            internal_tls: None,
            remote_workers: Vec::new(),
            use_registry: config::DEFAULT_USE_REGISTRY,
            handshake_timeout: config::DEFAULT_HANDSHAKE_TIMEOUT,
            connect_timeout: config::DEFAULT_CONNECT_TIMEOUT,
            limits: LimitsConfig::default(),
            demo: None,
        }
    }

    /// Validates the config and reads every file it names.
    pub fn from_config(config: &GatewayConfig) -> Result<GatewaySettings, GatewayError> {
        config.validate()?;
        let tls = match &config.tls {
            Some(tls) if !config.plain => Some(tls::load_server_config(&tls.cert, &tls.key)?),
            _ => None,
        };
        let verifier = Arc::new(Verifier::from_config(&config.auth)?);
        let api_key = match &config.api {
            Some(api) => Some(ApiKey::new(non_empty_line(&api.key_file, "api.key_file")?)),
            None => None,
        };
        let identity_secret = match &config.identity_secret_file {
            Some(path) => Some(Arc::from(
                non_empty_line(path, "identity_secret_file")?.into_bytes(),
            )),
            None => None,
        };
        let internal_tls = match &config.internal_tls {
            Some(internal) => Some(tls::load_internal_client_config(
                &internal.ca,
                &internal.cert,
                &internal.key,
            )?),
            None => None,
        };
        Ok(GatewaySettings {
            tls,
            verifier,
            api_key,
            identity_secret,
            internal_tls,
            remote_workers: config.workers.clone(),
            use_registry: config.registry,
            handshake_timeout: config.handshake_timeout,
            connect_timeout: config.connect_timeout,
            limits: config.limits.clone(),
            demo: None,
        })
    }
}

fn non_empty_line(path: &std::path::Path, key: &str) -> Result<String, GatewayError> {
    let line = read_first_line(path)?;
    if line.is_empty() {
        return Err(config::ConfigError::Invalid(vec![config::Problem {
            key: key.to_string(),
            message: format!("the first line of {} is empty", path.display()),
        }])
        .into());
    }
    Ok(line)
}

/// What the gateway is wired to at run time.
#[derive(Default)]
pub struct GatewayDeps {
    /// The broker for the HTTP API, revocation checks and, with
    /// [`GatewaySettings::use_registry`], the worker registry. `None` for a standalone
    /// gateway in front of worker processes on the memory engine: the API then answers
    /// 503 and only `[[workers]]` are routed to.
    pub broker: Option<Arc<dyn Broker>>,
    /// Workers sharing this process, handed upgrades without a loopback hop.
    pub local_workers: Vec<Arc<dyn LocalWorker>>,
}

/// State shared by every connection of one gateway.
pub(crate) struct Shared {
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) router: Arc<Router>,
    pub(crate) limiter: RateLimiter,
    pub(crate) broker: Option<Arc<dyn Broker>>,
    pub(crate) api_key: Option<ApiKey>,
    pub(crate) identity_secret: Option<Arc<[u8]>>,
    /// Dials remote workers with mTLS when set.
    pub(crate) internal_tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_api_body_bytes: usize,
    pub(crate) demo: Option<DemoSettings>,
    /// Cancelled when the gateway stops accepting.
    pub(crate) shutdown: CancellationToken,
    /// Spliced connections and their worker-side HTTP connections.
    pub(crate) splices: TaskTracker,
    /// Cancelled once in-flight handshakes are done: ends the splices.
    pub(crate) splice_stop: CancellationToken,
    pub(crate) metrics: Arc<metrics::GatewayMetrics>,
}

impl Shared {
    /// `/readyz`: serving, and at least one worker can take a connection.
    pub(crate) fn ready(&self) -> bool {
        !self.shutdown.is_cancelled() && self.router.any_routable(Instant::now())
    }
}

/// A gateway ready to serve a listener.
pub struct Gateway {
    shared: Arc<Shared>,
    /// The broker whose registry is followed, if any.
    registry: Option<Arc<dyn Broker>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    handshake_timeout: Duration,
    max_header_bytes: usize,
    max_connections: usize,
}

impl Gateway {
    pub fn new(settings: GatewaySettings, deps: GatewayDeps) -> Result<Gateway, GatewayError> {
        if !settings.remote_workers.is_empty() && settings.identity_secret.is_none() {
            return Err(config::ConfigError::Invalid(vec![config::Problem {
                key: "identity_secret_file".into(),
                message: "required when [[workers]] are configured".into(),
            }])
            .into());
        }
        let limits = &settings.limits;
        let registry = deps.broker.clone().filter(|_| settings.use_registry);
        let remote = settings
            .remote_workers
            .iter()
            .map(|w| Arc::new(RemoteWorker::new(w)))
            .collect();
        let shared = Shared {
            verifier: settings.verifier,
            router: Arc::new(Router::new(deps.local_workers, remote)),
            limiter: RateLimiter::new(
                limits.max_upgrades_per_sec_per_ip,
                limits
                    .upgrade_burst
                    .unwrap_or(limits.max_upgrades_per_sec_per_ip),
                limits.rate_limit_tracked_ips,
            ),
            broker: deps.broker,
            api_key: settings.api_key,
            identity_secret: settings.identity_secret,
            internal_tls: settings.internal_tls,
            connect_timeout: settings.connect_timeout,
            max_api_body_bytes: limits.max_api_body_bytes,
            demo: settings.demo,
            shutdown: CancellationToken::new(),
            splices: TaskTracker::new(),
            splice_stop: CancellationToken::new(),
            metrics: Arc::default(),
        };
        if settings.tls.is_none() {
            tracing::warn!(
                "serving plain WebSocket without TLS: only behind a TLS-terminating proxy on a private network"
            );
        }
        Ok(Gateway {
            shared: Arc::new(shared),
            registry,
            tls: settings.tls,
            handshake_timeout: settings.handshake_timeout,
            max_header_bytes: limits.max_header_bytes.max(config::MIN_MAX_HEADER_BYTES),
            max_connections: limits.max_connections.max(1),
        })
    }

    /// What an admin listener reads: metrics and readiness, valid after `serve` ends.
    pub fn telemetry(&self) -> GatewayTelemetry {
        GatewayTelemetry {
            shared: self.shared.clone(),
        }
    }

    /// Accepts connections until `shutdown` is cancelled, then stops accepting, waits for
    /// in-flight handshakes and ends the splices.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), GatewayError> {
        let local = listener.local_addr()?;
        tracing::info!(listen = %local, tls = self.tls.is_some(), "gateway serving");
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.max_connections));
        let handshakes = TaskTracker::new();
        let background = TaskTracker::new();
        if let Some(broker) = this.registry.clone() {
            tracing::info!(engine = broker.engine(), "following the worker registry");
            background.spawn(
                registry::follow(
                    this.shared.router.clone(),
                    broker,
                    this.shared.identity_secret.is_some(),
                    this.shared.shutdown.clone(),
                )
                .instrument(tracing::info_span!("registry")),
            );
        }
        background.close();
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break, // The semaphore is never closed.
                },
            };
            let (stream, addr) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        continue;
                    }
                },
            };
            // One trace per connection: accept → authenticate → route → handoff.
            let span = tracing::info_span!(
                "accept",
                client.addr = %addr,
                user.id = tracing::field::Empty,
                worker.id = tracing::field::Empty,
                upgrade.outcome = tracing::field::Empty,
            );
            let gateway = this.clone();
            let stop = shutdown.clone();
            handshakes.spawn(
                async move {
                    let _open = gateway.shared.metrics.accepted();
                    gateway.connection(stream, addr, stop).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        drop(listener);
        this.shared.shutdown.cancel();
        handshakes.close();
        tracing::info!(in_flight = handshakes.len(), "gateway stopped accepting");
        handshakes.wait().await;
        background.wait().await;
        this.shared.splice_stop.cancel();
        this.shared.splices.close();
        this.shared.splices.wait().await;
        tracing::info!("gateway stopped");
        Ok(())
    }

    async fn connection(&self, stream: TcpStream, addr: SocketAddr, shutdown: CancellationToken) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        match &self.tls {
            Some(config) => match tls::accept(config, stream, self.handshake_timeout).await {
                Ok(tls) => {
                    let kind = if tls.resumed() {
                        Handshake::Resumed
                    } else {
                        Handshake::Full
                    };
                    self.shared.metrics.tls_handshake(kind);
                    self.http(TokioIo::new(tls), addr, shutdown).await
                }
                Err(e) => {
                    self.shared.metrics.tls_handshake(Handshake::Failed);
                    tracing::debug!(error = %e, "TLS handshake failed")
                }
            },
            None => self.http(TokioIo::new(stream), addr, shutdown).await,
        }
    }

    async fn http<I>(&self, io: TokioIo<I>, addr: SocketAddr, shutdown: CancellationToken)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = self.shared.clone();
        let service = service_fn(move |req| {
            let shared = shared.clone();
            async move { Ok::<_, std::convert::Infallible>(upgrade::handle(shared, addr, req).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.handshake_timeout)
            .max_buf_size(self.max_header_bytes);
        let conn = builder.serve_connection(io, service).with_upgrades();
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            // Resets, EOF and header timeouts are the client's business.
            tracing::debug!(error = %e, "connection ended");
        }
    }
}

/// A gateway's metrics and readiness, for the admin listener.
#[derive(Clone)]
pub struct GatewayTelemetry {
    shared: Arc<Shared>,
}

impl GatewayTelemetry {
    pub fn render_metrics(&self, out: &mut switchyard_telemetry::Exposition) {
        self.shared.metrics.render(out, &self.shared.router);
    }

    /// `/readyz`: serving, and at least one worker can take a connection.
    pub fn is_ready(&self) -> bool {
        self.shared.ready()
    }
}

/// Loads the settings of `config` and serves `listener` until `shutdown` is cancelled.
pub async fn run(
    config: GatewayConfig,
    listener: TcpListener,
    deps: GatewayDeps,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let settings = GatewaySettings::from_config(&config)?;
    Gateway::new(settings, deps)?
        .serve(listener, shutdown)
        .await
}

/// Seconds since the epoch, fractional, as token times are compared.
pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
