//! Routing to the workers of the broker's registry, over real sockets: a plain gateway
//! on a free port, a memory broker, and small workers that check the signed identity
//! and answer `101`. Registry changes reach the gateway through a task, so each test
//! waits for them by polling with a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use switchyard_broker::memory::{MemoryBroker, MemoryConfig};
use switchyard_broker::{Broker, WorkerInfo};
use switchyard_gateway::{Gateway, GatewayDeps, GatewayError, GatewaySettings, Verifier};
use switchyard_protocol::identity::{IDENTITY_HEADER, IDENTITY_SIG_HEADER};
use switchyard_protocol::Identity;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"test-secret";
const IDENTITY_SECRET: &[u8] = b"identity-secret";
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// Longest wait for a registry change to reach the gateway.
const PROPAGATION: Duration = Duration::from_secs(10);

fn token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    encode(
        &Header::default(),
        &json!({"sub": "alice", "exp": now + 60.0, "iat": now}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

// ---- Workers -------------------------------------------------------------------------

/// A remote worker: answers `101` to upgrades with a valid signed identity (403
/// otherwise), counts them, and echoes bytes.
struct TestWorker {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl TestWorker {
    async fn start() -> TestWorker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                let service = hyper::service::service_fn(move |req| {
                    let counter = counter.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(req, &counter)) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades(),
                );
            }
        });
        TestWorker { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn info(&self, id: &str, conns: u64, draining: bool) -> WorkerInfo {
        WorkerInfo {
            id: id.into(),
            address: self.addr.to_string(),
            conns,
            capacity: 100,
            draining,
        }
    }
}

fn answer(mut req: Request<Incoming>, hits: &AtomicUsize) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let verified = Identity::verify(
        &header(IDENTITY_HEADER),
        &header(IDENTITY_SIG_HEADER),
        IDENTITY_SECRET,
        now_ms,
    );
    let forwarded_cleanly = !req.headers().contains_key(header::AUTHORIZATION)
        && header(header::SEC_WEBSOCKET_KEY.as_str()) == WS_KEY;
    if !matches!(&verified, Ok(identity) if identity.user.as_str() == "alice") || !forwarded_cleanly
    {
        let mut refused = Response::new(Full::default());
        *refused.status_mut() = StatusCode::FORBIDDEN;
        return refused;
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, "accept-from-worker")
        .body(Full::default())
        .unwrap()
}

// ---- A gateway following a memory broker's registry ----------------------------------

struct TestGateway {
    addr: SocketAddr,
    broker: Arc<MemoryBroker>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), GatewayError>>,
}

async fn start() -> TestGateway {
    let mut settings = GatewaySettings::new(None, Arc::new(Verifier::hs256(SECRET)));
    settings.identity_secret = Some(Arc::from(IDENTITY_SECRET));
    // Polling sends many upgrades from one address.
    settings.limits.max_upgrades_per_sec_per_ip = 1_000_000;
    let broker = Arc::new(MemoryBroker::new(MemoryConfig::default()));
    let deps = GatewayDeps {
        broker: Some(broker.clone() as Arc<dyn Broker>),
        local_workers: Vec::new(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let gateway = Gateway::new(settings, deps).unwrap();
    let task = tokio::spawn(gateway.serve(listener, shutdown.clone()));
    TestGateway {
        addr,
        broker,
        shutdown,
        task,
    }
}

impl TestGateway {
    async fn send(&self, req: Request<Full<Bytes>>) -> Response<Incoming> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn.with_upgrades());
        sender.send_request(req).await.unwrap()
    }

    /// Sends one upgrade on `path` and returns the gateway's answer.
    async fn upgrade(&self, path: &str) -> Response<Incoming> {
        let req = Request::get(path)
            .header(header::HOST, "localhost")
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "Upgrade")
            .header(header::SEC_WEBSOCKET_KEY, WS_KEY)
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::AUTHORIZATION, format!("Bearer {}", token()))
            .body(Full::default())
            .unwrap();
        self.send(req).await
    }

    async fn upgrades(&self, path: &str, n: usize) {
        for _ in 0..n {
            let status = self.upgrade(path).await.status();
            assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
        }
    }

    async fn ready(&self) -> bool {
        let req = Request::get("/readyz")
            .header(header::HOST, "localhost")
            .body(Full::default())
            .unwrap();
        self.send(req).await.status() == StatusCode::OK
    }

    /// Sends upgrades on `path` until one reaches `worker`: the gateway has seen what
    /// the registry says about it.
    async fn until_routed(&self, path: &str, worker: &TestWorker) {
        eventually(path, || async {
            let before = worker.hits();
            let response = self.upgrade(path).await;
            response.status() == StatusCode::SWITCHING_PROTOCOLS && worker.hits() > before
        })
        .await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Polls `check` until it holds, for at most [`PROPAGATION`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PROPAGATION;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- Tests -------------------------------------------------------------------------

#[tokio::test]
async fn announced_worker_takes_connections_and_readyz_follows() {
    let gw = start().await;
    assert!(!gw.ready().await);
    let response = gw.upgrade("/ws").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(header::RETRY_AFTER));

    let w1 = TestWorker::start().await;
    gw.broker.announce(w1.info("w1", 0, false)).await.unwrap();
    eventually("readyz to be 200", || gw.ready()).await;
    gw.upgrades("/ws", 3).await;
    assert_eq!(w1.hits(), 3);

    // The splice really runs through to the worker.
    let response = gw.upgrade("/ws").await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        response.headers()[header::SEC_WEBSOCKET_ACCEPT],
        "accept-from-worker"
    );
    let mut io = TokioIo::new(hyper::upgrade::on(response).await.unwrap());
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    io.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    io.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    gw.broker.withdraw("w1").await.unwrap();
    eventually("readyz to be 503", || async { !gw.ready().await }).await;
    let response = gw.upgrade("/ws").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The splice opened before the withdrawal is not cut.
    io.write_all(b"pong").await.unwrap();
    io.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    gw.stop().await;
}

#[tokio::test]
async fn draining_worker_gets_nothing_new_and_its_sticky_path_moves() {
    let gw = start().await;
    let (w1, w2) = (TestWorker::start().await, TestWorker::start().await);
    gw.broker.announce(w1.info("w1", 0, false)).await.unwrap();
    gw.broker.announce(w2.info("w2", 0, false)).await.unwrap();
    gw.until_routed("/ws/w1/c_1", &w1).await;
    gw.until_routed("/ws/w2/c_2", &w2).await;

    gw.broker.announce(w1.info("w1", 0, true)).await.unwrap();
    // A sticky path to the draining worker goes to the other one.
    gw.until_routed("/ws/w1/c_1", &w2).await;
    let (before1, before2) = (w1.hits(), w2.hits());
    gw.upgrades("/ws", 10).await;
    gw.upgrades("/ws/w1/c_1", 3).await;
    assert_eq!(w1.hits(), before1);
    assert_eq!(w2.hits(), before2 + 13);

    // Draining both leaves nothing routable.
    gw.broker.announce(w2.info("w2", 0, true)).await.unwrap();
    eventually("readyz to be 503", || async { !gw.ready().await }).await;
    let response = gw.upgrade("/ws").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    gw.stop().await;
}

#[tokio::test]
async fn withdrawn_worker_gets_nothing() {
    let gw = start().await;
    let (w1, w2) = (TestWorker::start().await, TestWorker::start().await);
    gw.broker.announce(w1.info("w1", 0, false)).await.unwrap();
    gw.broker.announce(w2.info("w2", 0, false)).await.unwrap();
    gw.until_routed("/ws/w1/c_1", &w1).await;
    gw.until_routed("/ws/w2/c_2", &w2).await;

    gw.broker.withdraw("w1").await.unwrap();
    gw.until_routed("/ws/w1/c_1", &w2).await;
    let before = w1.hits();
    gw.upgrades("/ws", 10).await;
    gw.upgrades("/ws/w1/c_1", 3).await;
    assert_eq!(w1.hits(), before);
    gw.stop().await;
}

#[tokio::test]
async fn a_worker_announced_at_a_new_address_is_followed() {
    let gw = start().await;
    let (old, new) = (TestWorker::start().await, TestWorker::start().await);
    gw.broker.announce(old.info("w1", 0, false)).await.unwrap();
    gw.until_routed("/ws/w1/c_1", &old).await;

    // The worker restarted on another port; the old listener still answers, so only
    // the registry tells the gateway to move.
    gw.broker.announce(new.info("w1", 0, false)).await.unwrap();
    gw.until_routed("/ws/w1/c_1", &new).await;
    let before = old.hits();
    gw.upgrades("/ws", 5).await;
    gw.upgrades("/ws/w1/c_1", 5).await;
    assert_eq!(old.hits(), before);
    gw.stop().await;
}

#[tokio::test]
async fn two_choices_prefer_the_worker_reporting_fewer_conns() {
    let gw = start().await;
    let (busy, idle) = (TestWorker::start().await, TestWorker::start().await);
    gw.broker
        .announce(busy.info("busy", 80, false))
        .await
        .unwrap();
    gw.broker
        .announce(idle.info("idle", 0, false))
        .await
        .unwrap();
    gw.until_routed("/ws/busy/c_1", &busy).await;
    gw.until_routed("/ws/idle/c_2", &idle).await;

    let before = idle.hits();
    gw.upgrades("/ws", 20).await;
    let to_idle = idle.hits() - before;
    assert!(
        to_idle >= 15,
        "only {to_idle} of 20 went to the idle worker"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_burst_between_reports_spreads_over_equally_loaded_workers() {
    let gw = start().await;
    let (a, b) = (TestWorker::start().await, TestWorker::start().await);
    gw.broker.announce(a.info("a", 10, false)).await.unwrap();
    gw.broker.announce(b.info("b", 10, false)).await.unwrap();
    gw.until_routed("/ws/a/c_1", &a).await;
    gw.until_routed("/ws/b/c_2", &b).await;

    // Both reported the same load and report nothing new: only the splices this
    // gateway opened since tell them apart.
    let (before_a, before_b) = (a.hits(), b.hits());
    gw.upgrades("/ws", 20).await;
    let (to_a, to_b) = (a.hits() - before_a, b.hits() - before_b);
    assert!(to_a >= 5 && to_b >= 5, "split {to_a}/{to_b}");
    gw.stop().await;
}
