//! The gateway the browser talks to: Switchyard's gateway library in this process, with
//! the demo setting on (as `switchyard dev` sets it) and otherwise configured like the
//! mesh's own gateway processes: TLS from the mesh's dev state, its HS256 secret and
//! identity secret, routing to the worker processes it learns from the registry on NATS.
//! Gateways started from a config file never serve the demo, hence this one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchyard::dev::demo_settings;
use switchyard::dev_state::{
    read_line, CERT_FILE, IDENTITY_SECRET_FILE, JWT_SECRET_FILE, KEY_FILE,
};
use switchyard_broker::nats::{NatsBroker, NatsConfig};
use switchyard_broker::Broker;
use switchyard_client::{ConnectOptions, Connection, Incoming, TlsTrust, TokenVia};
use switchyard_gateway::{Gateway, GatewayDeps, GatewaySettings, Verifier};
use switchyard_protocol::ServerFrame;
use switchyard_testkit::mesh::Mesh;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;

/// How long the gateway has to learn a worker from the registry.
const ROUTABLE_TIMEOUT: Duration = Duration::from_secs(20);
const PROBE_WAIT: Duration = Duration::from_secs(2);

pub(crate) struct DemoGateway {
    pub(crate) addr: SocketAddr,
    stop: CancellationToken,
    serving: JoinHandle<()>,
}

impl DemoGateway {
    /// Starts on `127.0.0.1:0` and waits until it places a connection on every worker.
    pub(crate) async fn start(mesh: &Mesh, nats: NatsConfig) -> DemoGateway {
        let state = mesh.state_dir();
        let line = |name: &str| {
            read_line(&state.join(name)).unwrap_or_else(|e| panic!("read {name}: {e:#}"))
        };
        let jwt_secret = line(JWT_SECRET_FILE);
        let tls = switchyard_gateway::tls::load_server_config(
            &state.join(CERT_FILE),
            &state.join(KEY_FILE),
        )
        .expect("the mesh's server certificate loads");
        let mut settings =
            GatewaySettings::new(Some(tls), Arc::new(Verifier::hs256(jwt_secret.as_bytes())));
        settings.identity_secret = Some(Arc::from(line(IDENTITY_SECRET_FILE).into_bytes()));
        settings.use_registry = true;
        settings.demo = Some(demo_settings(&jwt_secret));
        let broker: Arc<dyn Broker> = NatsBroker::connect(NatsConfig {
            name: Some("switchyard-demo-gateway".into()),
            ..nats
        })
        .await
        .expect("the demo gateway reaches NATS");
        let deps = GatewayDeps {
            broker: Some(broker),
            local_workers: Vec::new(),
        };
        let gateway = Gateway::new(settings, deps).expect("the demo gateway starts");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let stop = CancellationToken::new();
        let serving = tokio::spawn({
            let stop = stop.clone();
            async move {
                gateway
                    .serve(listener, stop)
                    .await
                    .expect("the demo gateway serves");
            }
        });
        let this = DemoGateway {
            addr,
            stop,
            serving,
        };
        for id in mesh.worker_ids() {
            this.wait_routable(mesh, &id).await;
        }
        this
    }

    /// `https://localhost:PORT`: the page's origin (the certificate names `localhost`).
    pub(crate) fn base_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    async fn wait_routable(&self, mesh: &Mesh, id: &str) {
        let deadline = Instant::now() + ROUTABLE_TIMEOUT;
        loop {
            match self.probe(mesh, id).await {
                Ok(()) => return,
                Err(why) if Instant::now() >= deadline => {
                    panic!(
                        "the demo gateway did not route to {id} within {ROUTABLE_TIMEOUT:?}: {why}"
                    )
                }
                Err(_) => sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// One sticky connection to `/ws/<id>/probe`: `Ok` when its `welcome` names `id`.
    async fn probe(&self, mesh: &Mesh, id: &str) -> Result<(), String> {
        let url = format!("wss://localhost:{}/ws/{id}/probe", self.addr.port());
        let mut options =
            ConnectOptions::new(url).token(mesh.token("probe", &[], &[]), TokenVia::Header);
        options.tls = TlsTrust::CaPem(mesh.ca_pem().to_vec());
        options.connect_timeout = PROBE_WAIT;
        options.upgrade_timeout = PROBE_WAIT;
        let mut conn = timeout(PROBE_WAIT * 2, Connection::connect(&options))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let placed = match conn.recv_timeout(PROBE_WAIT).await {
            Ok(Incoming::Frame(ServerFrame::Welcome { worker, .. })) => worker.into_owned(),
            other => return Err(format!("no welcome: {other:?}")),
        };
        let _ = timeout(PROBE_WAIT, conn.close(1000)).await;
        if placed == id {
            Ok(())
        } else {
            Err(format!("placed on {placed}"))
        }
    }

    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = timeout(Duration::from_secs(10), self.serving).await;
    }
}
