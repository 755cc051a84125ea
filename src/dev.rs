//! `switchyard dev`: a gateway and N workers in one process, with TLS from the dev CA.
//! The gateway hands upgrades to the workers in-process. The broker is the memory
//! engine, or NATS (`--nats URL`, or `--cluster` to start a local nats-server). The
//! gateway serves the demo page at `/demo`, with tokens minted by [`demo_settings`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use switchyard_broker::memory::{MemoryBroker, MemoryConfig};
use switchyard_broker::nats::{NatsBroker, NatsConfig};
use switchyard_broker::Broker;
use switchyard_gateway::demo::{DEMO_ROOM_PATTERNS, DEMO_TOKEN_TTL};
use switchyard_gateway::{
    ApiKey, DemoSettings, Gateway, GatewayDeps, GatewaySettings, LocalWorker, Verifier,
};
use switchyard_protocol::{RoomName, UserId};
use switchyard_worker::{Worker, WorkerConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::dev_state::DevState;
use crate::token::{mint_hs256, TokenRequest};
use crate::wiring::{GatewayVerifier, InProcessWorker};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
pub const DEFAULT_STATE_DIR: &str = ".switchyard/dev";

#[derive(Debug, Clone)]
pub struct DevOptions {
    pub listen: SocketAddr,
    /// Connections the kernel may queue for accept on `listen` (capped at somaxconn).
    pub listen_backlog: u32,
    pub workers: usize,
    pub state_dir: PathBuf,
    /// Serve plain `ws://` instead of TLS (behind a TLS-terminating proxy only).
    pub plain: bool,
    /// Settings every worker starts from; ids are `<prefix>1`..`<prefix>N`.
    pub worker: WorkerConfig,
    pub worker_prefix: String,
    pub memory: MemoryConfig,
    /// Run on NATS instead of the memory engine.
    pub nats: Option<NatsConfig>,
    /// Serve the demo page at `/demo` (and mint its tokens at `/demo/token`).
    pub demo: bool,
    /// Serve `/metrics`, `/healthz` and `/readyz` here (the CLI's default is
    /// [`crate::admin::DEFAULT_DEV_ADMIN_LISTEN`]; `None` serves no admin listener).
    pub admin_listen: Option<SocketAddr>,
}

impl DevOptions {
    pub fn new(state_dir: PathBuf) -> DevOptions {
        DevOptions {
            // The constant is a valid socket address.
            listen: DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
            listen_backlog: crate::listen::DEFAULT_BACKLOG,
            workers: 1,
            state_dir,
            plain: false,
            worker: WorkerConfig::default(),
            worker_prefix: "w".into(),
            memory: MemoryConfig::default(),
            nats: None,
            demo: true,
            admin_listen: None,
        }
    }
}

/// A running dev stack.
pub struct DevStack {
    pub addr: SocketAddr,
    pub state: DevState,
    pub workers: Vec<Worker>,
    pub broker: Arc<dyn Broker>,
    /// The memory engine, when it is the broker (tests switch it off to fake an outage).
    pub memory: Option<Arc<MemoryBroker>>,
    pub plain: bool,
    /// The gateway serves the demo page.
    pub demo: bool,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, if anywhere.
    pub admin_addr: Option<SocketAddr>,
    gateway_stop: CancellationToken,
    gateway: JoinHandle<()>,
    admin: Option<JoinHandle<()>>,
}

impl DevStack {
    pub async fn start(options: DevOptions) -> anyhow::Result<DevStack> {
        anyhow::ensure!(options.workers >= 1, "--workers must be at least 1");
        let state = DevState::load_or_create(&options.state_dir)?;
        let listener =
            crate::listen::bind(options.listen, options.listen_backlog).with_context(|| {
                format!(
                    "cannot listen on {} (is another server using it? try --listen 127.0.0.1:0)",
                    options.listen
                )
            })?;
        let addr = listener.local_addr()?;
        let (broker, memory): (Arc<dyn Broker>, _) = match &options.nats {
            Some(config) => {
                let config = NatsConfig {
                    name: Some("switchyard-dev".into()),
                    ..config.clone()
                };
                (NatsBroker::connect(config).await?, None)
            }
            None => {
                let memory = Arc::new(MemoryBroker::new(options.memory.clone()));
                (memory.clone(), Some(memory))
            }
        };
        let verifier = Arc::new(Verifier::hs256(state.jwt_secret.as_bytes()));
        let mut workers = Vec::new();
        for i in 1..=options.workers {
            let config = WorkerConfig {
                id: format!("{}{i}", options.worker_prefix),
                ..options.worker.clone()
            };
            let worker = Worker::start(
                config,
                broker.clone(),
                Some(Arc::new(GatewayVerifier(verifier.clone()))),
            )?;
            // In the registry for all to see; no address: only this process hands over.
            worker.advertise(String::new());
            workers.push(worker);
        }
        let tls = if options.plain {
            None
        } else {
            let certs = CertificateDer::pem_slice_iter(state.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .context("dev server certificate")?;
            let key = PrivateKeyDer::from_pem_slice(state.key_pem.as_bytes())
                .context("dev server key")?;
            Some(switchyard_gateway::tls::server_config(certs, key)?)
        };
        let mut settings = GatewaySettings::new(tls, verifier);
        settings.api_key = Some(ApiKey::new(state.api_key.as_bytes()));
        if options.demo {
            settings.demo = Some(demo_settings(&state.jwt_secret));
        }
        let deps = GatewayDeps {
            broker: Some(broker.clone()),
            local_workers: workers
                .iter()
                .map(|w| Arc::new(InProcessWorker(w.clone())) as Arc<dyn LocalWorker>)
                .collect(),
        };
        let gateway = Gateway::new(settings, deps)?;
        let gateway_stop = CancellationToken::new();
        let (admin_addr, admin) = match options.admin_listen {
            Some(addr) => {
                let listener = crate::admin::bind(addr).await?;
                let admin_addr = listener.local_addr()?;
                let admin = Admin {
                    gateway: Some(gateway.telemetry()),
                    workers: workers.clone(),
                    broker: Some(broker.clone()),
                };
                let task = tokio::spawn(crate::admin::serve(listener, admin, gateway_stop.clone()));
                (Some(admin_addr), Some(task))
            }
            None => (None, None),
        };
        let stop = gateway_stop.clone();
        let gateway = tokio::spawn(async move {
            if let Err(err) = gateway.serve(listener, stop).await {
                tracing::error!(error = %err, "gateway stopped");
            }
        });
        Ok(DevStack {
            addr,
            state,
            workers,
            broker,
            memory,
            plain: options.plain,
            demo: options.demo,
            admin_addr,
            gateway_stop,
            gateway,
            admin,
        })
    }

    /// The WebSocket URL of the stack.
    pub fn url(&self) -> String {
        let scheme = if self.plain { "ws" } else { "wss" };
        match self.addr {
            SocketAddr::V4(a) if a.ip().is_loopback() => {
                format!("{scheme}://localhost:{}/ws", a.port())
            }
            addr => format!("{scheme}://{addr}/ws"),
        }
    }

    /// The demo page's URL (`https://localhost:8443/demo`), when it is served.
    pub fn demo_url(&self) -> Option<String> {
        let url = self.url();
        let page = url
            .replacen("wss://", "https://", 1)
            .replacen("ws://", "http://", 1);
        self.demo
            .then(|| format!("{}/demo", page.trim_end_matches("/ws")))
    }

    /// The store's current epoch.
    pub async fn epoch(&self) -> anyhow::Result<String> {
        // Any room answers with the store's epoch.
        let room = RoomName::parse("epoch").expect("a valid room name");
        Ok(self.broker.history(&room, 0, 0).await?.epoch.to_string())
    }

    /// Drains every worker (clients get `reconnect` and 1012), then stops the gateway.
    pub async fn drain(self, grace: Duration) {
        futures_util::future::join_all(self.workers.iter().map(|w| w.drain(grace))).await;
        self.stop().await;
    }

    /// Stops the gateway without draining the workers.
    pub async fn stop(self) {
        self.gateway_stop.cancel();
        let _ = self.gateway.await;
        if let Some(admin) = self.admin {
            let _ = admin.await;
        }
    }
}

/// The demo's settings: tokens for any valid user id, for the demo rooms (`lobby`,
/// `chat.>`), valid for [`DEMO_TOKEN_TTL`], signed with the dev HS256 secret.
pub fn demo_settings(jwt_secret: &str) -> DemoSettings {
    let secret = jwt_secret.to_string();
    let rooms: Vec<String> = DEMO_ROOM_PATTERNS.iter().map(|p| p.to_string()).collect();
    DemoSettings::new(Arc::new(move |user: &str| {
        UserId::parse(user).map_err(|e| e.to_string())?;
        mint_hs256(
            secret.as_bytes(),
            &TokenRequest {
                user: user.to_string(),
                sub: rooms.clone(),
                publish: rooms.clone(),
                ttl: DEMO_TOKEN_TTL,
            },
        )
        .map_err(|e| e.to_string())
    }))
}
