//! The gateway over real sockets: a TLS client (CA made by rcgen) against a gateway on
//! 127.0.0.1:0, with in-process workers written here and a tiny remote worker.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
use http::{header, HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use switchyard_broker::memory::{MemoryBroker, MemoryConfig};
use switchyard_broker::Broker;
use switchyard_gateway::{
    ApiKey, Gateway, GatewayDeps, GatewayError, GatewaySettings, GatewayTelemetry, LocalWorker,
    RemoteWorkerConfig, Verifier, WorkerLoad,
};
use switchyard_protocol::error::HttpError;
use switchyard_protocol::identity::{IDENTITY_HEADER, IDENTITY_SIG_HEADER};
use switchyard_protocol::{ErrorCode, Identity};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"test-secret";
const API_KEY: &str = "api-key-1";
const IDENTITY_SECRET: &[u8] = b"identity-secret";
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn token_for(sub: &str, exp_in: f64, secret: &[u8]) -> String {
    encode(
        &Header::default(),
        &json!({"sub": sub, "exp": now() + exp_in, "iat": now()}),
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn token() -> String {
    token_for("alice", 60.0, SECRET)
}

// ---- TLS -------------------------------------------------------------------------

struct Pki {
    server: Arc<rustls::ServerConfig>,
    roots: rustls::RootCertStore,
    connector: TlsConnector,
}

/// A TLS client trusting `roots`; with `resume` off it neither offers nor keeps a
/// session ticket, so each of its handshakes is full.
fn connector(roots: &rustls::RootCertStore, resume: bool) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        client.resumption = rustls::client::Resumption::disabled();
    }
    TlsConnector::from(Arc::new(client))
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let server_cert = server_params.signed_by(&server_key, &ca).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
    let server = switchyard_gateway::tls::server_config(
        vec![server_cert.der().clone(), ca.der().clone()],
        key,
    )
    .unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    Pki {
        server,
        connector: connector(&roots, true),
        roots,
    }
}

// ---- An in-process worker ----------------------------------------------------------

struct Seen {
    identity: Identity,
    headers: HeaderMap,
    uri: Uri,
}

struct TestWorker {
    id: &'static str,
    load: Mutex<WorkerLoad>,
    seen: Mutex<Vec<Seen>>,
}

impl TestWorker {
    fn new(id: &'static str) -> Arc<TestWorker> {
        Arc::new(TestWorker {
            id,
            load: Mutex::new(WorkerLoad {
                conns: 0,
                capacity: 1000,
                draining: false,
            }),
            seen: Mutex::new(Vec::new()),
        })
    }

    fn set_draining(&self, draining: bool) {
        self.load.lock().unwrap().draining = draining;
    }

    fn handed(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[async_trait::async_trait]
impl LocalWorker for TestWorker {
    fn id(&self) -> &str {
        self.id
    }

    fn load(&self) -> WorkerLoad {
        *self.load.lock().unwrap()
    }

    async fn handoff(
        &self,
        mut req: Request<Incoming>,
        identity: Identity,
    ) -> Response<Full<Bytes>> {
        let subprotocol = identity.subprotocol;
        self.seen.lock().unwrap().push(Seen {
            identity,
            headers: req.headers().clone(),
            uri: req.uri().clone(),
        });
        let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut req).unwrap();
        tokio::spawn(async move {
            let mut ws = upgrade.await.unwrap();
            while let Ok(frame) = ws.read_frame().await {
                let echo = match frame.opcode {
                    OpCode::Close => break,
                    OpCode::Text | OpCode::Binary => frame,
                    _ => continue,
                };
                if ws.write_frame(echo).await.is_err() {
                    break;
                }
            }
        });
        let mut response = response.map(|_| Full::default());
        if subprotocol {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                header::HeaderValue::from_static("switchyard.v1"),
            );
        }
        response
    }
}

// ---- A gateway on a free port ------------------------------------------------------

struct TestGateway {
    addr: SocketAddr,
    connector: TlsConnector,
    roots: rustls::RootCertStore,
    telemetry: GatewayTelemetry,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), GatewayError>>,
}

async fn start(configure: impl FnOnce(&mut GatewaySettings), deps: GatewayDeps) -> TestGateway {
    let pki = pki();
    let mut settings =
        GatewaySettings::new(Some(pki.server.clone()), Arc::new(Verifier::hs256(SECRET)));
    settings.api_key = Some(ApiKey::new(API_KEY));
    configure(&mut settings);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let gateway = Gateway::new(settings, deps).unwrap();
    let telemetry = gateway.telemetry();
    let task = tokio::spawn(gateway.serve(listener, shutdown.clone()));
    TestGateway {
        addr,
        connector: pki.connector,
        roots: pki.roots,
        telemetry,
        shutdown,
        task,
    }
}

fn with_workers(workers: Vec<Arc<TestWorker>>) -> GatewayDeps {
    GatewayDeps {
        broker: None,
        local_workers: workers
            .into_iter()
            .map(|w| w as Arc<dyn LocalWorker>)
            .collect(),
    }
}

impl TestGateway {
    async fn send(&self, req: Request<Full<Bytes>>) -> Response<Incoming> {
        self.send_over(&self.connector, req).await.0
    }

    /// [`TestGateway::send`] with a client of its own; also says how the handshake went.
    async fn send_over(
        &self,
        connector: &TlsConnector,
        req: Request<Full<Bytes>>,
    ) -> (Response<Incoming>, Option<rustls::HandshakeKind>) {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let kind = tls.get_ref().1.handshake_kind();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn.with_upgrades());
        (sender.send_request(req).await.unwrap(), kind)
    }

    /// The value of a metric sample, e.g. `name{kind="full"}`.
    fn metric(&self, sample: &str) -> u64 {
        let mut out = switchyard_telemetry::Exposition::new(false);
        self.telemetry.render_metrics(&mut out);
        let text = out.finish();
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn ws(path: &str) -> http::request::Builder {
    Request::get(path)
        .header(header::HOST, "localhost")
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_KEY, WS_KEY)
        .header(header::SEC_WEBSOCKET_VERSION, "13")
}

fn bearer(builder: http::request::Builder, token: &str) -> http::request::Builder {
    builder.header(header::AUTHORIZATION, format!("Bearer {token}"))
}

fn empty(builder: http::request::Builder) -> Request<Full<Bytes>> {
    builder.body(Full::default()).unwrap()
}

async fn expect_error(response: Response<Incoming>, status: StatusCode, code: ErrorCode) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let error: HttpError = serde_json::from_slice(&body).unwrap();
    assert_eq!(error.error, code, "{}", error.message);
}

async fn json_body(response: Response<Incoming>) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

// ---- Tests -------------------------------------------------------------------------

#[tokio::test]
async fn pre_upgrade_errors_follow_the_protocol_order() {
    let worker = TestWorker::new("w1");
    let gw = start(|_| {}, with_workers(vec![worker.clone()])).await;
    let t = token();
    use ErrorCode::*;
    let cases: Vec<(Request<Full<Bytes>>, StatusCode, ErrorCode)> = vec![
        // 400: not an upgrade, bad path, subprotocols without switchyard.v1. These come
        // before the token check, so they have no token.
        (
            empty(Request::get("/ws").header(header::HOST, "x")),
            StatusCode::BAD_REQUEST,
            BadRequest,
        ),
        (
            empty(bearer(Request::post("/ws"), &t).header(header::HOST, "x")),
            StatusCode::BAD_REQUEST,
            BadRequest,
        ),
        (
            empty(ws("/ws").header(header::SEC_WEBSOCKET_VERSION, "12")),
            StatusCode::BAD_REQUEST,
            BadRequest,
        ),
        (
            empty(
                Request::get("/ws")
                    .header(header::HOST, "x")
                    .header(header::UPGRADE, "websocket")
                    .header(header::CONNECTION, "Upgrade")
                    .header(header::SEC_WEBSOCKET_VERSION, "13"),
            ),
            StatusCode::BAD_REQUEST,
            BadRequest,
        ),
        (empty(ws("/ws/w1")), StatusCode::BAD_REQUEST, BadRequest),
        (
            empty(ws("/ws/w1/c/extra")),
            StatusCode::BAD_REQUEST,
            BadRequest,
        ),
        (
            empty(ws("/ws").header(header::SEC_WEBSOCKET_PROTOCOL, "chat")),
            StatusCode::BAD_REQUEST,
            BadRequest,
        ),
        (
            empty(ws("/ws").header(
                header::SEC_WEBSOCKET_PROTOCOL,
                format!("switchyard.auth.{t}"),
            )),
            StatusCode::BAD_REQUEST,
            BadRequest,
        ),
        // 401.
        (empty(ws("/ws")), StatusCode::UNAUTHORIZED, MissingToken),
        (
            empty(ws("/ws").header(header::AUTHORIZATION, "Basic YTpi")),
            StatusCode::UNAUTHORIZED,
            MissingToken,
        ),
        (
            empty(bearer(ws("/ws"), "garbage")),
            StatusCode::UNAUTHORIZED,
            InvalidToken,
        ),
        (
            empty(bearer(ws("/ws"), &token_for("alice", 60.0, b"wrong-key"))),
            StatusCode::UNAUTHORIZED,
            InvalidToken,
        ),
        (
            empty(bearer(ws("/ws"), &token_for("alice", -60.0, SECRET))),
            StatusCode::UNAUTHORIZED,
            TokenExpired,
        ),
        (
            empty(ws(&format!(
                "/ws?access_token={}",
                token_for("alice", -60.0, SECRET)
            ))),
            StatusCode::UNAUTHORIZED,
            TokenExpired,
        ),
        (
            empty(bearer(ws("/ws"), &alg_none_token())),
            StatusCode::UNAUTHORIZED,
            InvalidToken,
        ),
        (
            empty(bearer(ws("/ws"), &token_for("not a user", 60.0, SECRET))),
            StatusCode::UNAUTHORIZED,
            InvalidToken,
        ),
        // Unknown paths.
        (
            empty(Request::get("/nope").header(header::HOST, "x")),
            StatusCode::NOT_FOUND,
            NotFound,
        ),
    ];
    for (req, status, code) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let response = gw.send(req).await;
        assert_eq!(response.status(), status, "{what}");
        expect_error(response, status, code).await;
    }
    assert_eq!(worker.handed(), 0);
    gw.stop().await;
}

fn alg_none_token() -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(json!({"sub": "alice", "exp": now() + 60.0}).to_string());
    format!("{header}.{claims}.")
}

#[tokio::test]
async fn flood_is_rate_limited_after_auth_errors_are_reported() {
    let worker = TestWorker::new("w1");
    let gw = start(
        |s| {
            s.limits.max_upgrades_per_sec_per_ip = 1;
            s.limits.upgrade_burst = Some(2);
        },
        with_workers(vec![worker.clone()]),
    )
    .await;
    for _ in 0..2 {
        let response = gw.send(empty(bearer(ws("/ws"), &token()))).await;
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    }
    // Over the rate: a bad token is still answered 401 (PROTOCOL §1 order) ...
    let response = gw.send(empty(bearer(ws("/ws"), "garbage"))).await;
    expect_error(response, StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken).await;
    // ... and a good one 429.
    let response = gw.send(empty(bearer(ws("/ws"), &token()))).await;
    expect_error(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimited,
    )
    .await;
    assert_eq!(worker.handed(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn no_worker_is_503_with_retry_after_and_not_ready() {
    let worker = TestWorker::new("w1");
    worker.set_draining(true);
    let gw = start(|_| {}, with_workers(vec![worker.clone()])).await;
    let response = gw.send(empty(bearer(ws("/ws"), &token()))).await;
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    expect_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::NoWorker,
    )
    .await;
    let response = gw
        .send(empty(Request::get("/readyz").header(header::HOST, "x")))
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = gw
        .send(empty(Request::get("/healthz").header(header::HOST, "x")))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    worker.set_draining(false);
    let response = gw
        .send(empty(Request::get("/readyz").header(header::HOST, "x")))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    gw.stop().await;
}

#[tokio::test]
async fn token_is_stripped_and_identity_handed_in_process() {
    let worker = TestWorker::new("w1");
    let gw = start(|_| {}, with_workers(vec![worker.clone()])).await;
    let t = token();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let req = empty(
        bearer(
            ws(&format!(
                "/ws/w1/c_1?access_token={t}&resume_token=rt%2B1&x=1"
            )),
            &t,
        )
        .header(
            header::SEC_WEBSOCKET_PROTOCOL,
            format!("switchyard.v1, switchyard.auth.{t}"),
        )
        .header("traceparent", traceparent),
    );
    let response = gw.send(req).await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        response.headers()[header::SEC_WEBSOCKET_PROTOCOL],
        "switchyard.v1"
    );
    {
        let seen = worker.seen.lock().unwrap();
        let seen = &seen[0];
        assert!(!seen.headers.contains_key(header::AUTHORIZATION));
        assert_eq!(
            seen.headers[header::SEC_WEBSOCKET_PROTOCOL],
            "switchyard.v1"
        );
        let uri = seen.uri.to_string();
        assert!(!uri.contains(&t) && !uri.contains("access_token"), "{uri}");
        assert_eq!(seen.uri.query(), Some("resume_token=rt%2B1&x=1"));
        assert_eq!(seen.identity.user.as_str(), "alice");
        assert!(seen.identity.subprotocol);
        assert_eq!(seen.identity.resume_conn.as_deref(), Some("c_1"));
        assert_eq!(seen.identity.resume_token.as_deref(), Some("rt+1"));
        assert_eq!(seen.identity.traceparent.as_deref(), Some(traceparent));
        for value in seen.headers.values() {
            assert!(!value.to_str().unwrap_or_default().contains(&t));
        }
    }

    // The socket now belongs to the worker: a WebSocket frame goes there and back.
    let upgraded = hyper::upgrade::on(response).await.unwrap();
    let mut client = WebSocket::after_handshake(TokioIo::new(upgraded), Role::Client);
    client
        .write_frame(Frame::text(Payload::Borrowed(b"hello")))
        .await
        .unwrap();
    let echo = client.read_frame().await.unwrap();
    assert_eq!(echo.opcode, OpCode::Text);
    assert_eq!(&echo.payload[..], b"hello");
    gw.stop().await;
}

#[tokio::test]
async fn no_subprotocol_offered_gets_none() {
    let worker = TestWorker::new("w1");
    let gw = start(|_| {}, with_workers(vec![worker.clone()])).await;
    let response = gw
        .send(empty(ws(&format!("/ws?access_token={}", token()))))
        .await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(!response
        .headers()
        .contains_key(header::SEC_WEBSOCKET_PROTOCOL));
    {
        let seen = worker.seen.lock().unwrap();
        assert!(!seen[0].identity.subprotocol);
        assert!(!seen[0].headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL));
        assert_eq!(seen[0].uri.query(), None);
    }
    gw.stop().await;
}

#[tokio::test]
async fn sticky_path_goes_to_its_worker_unless_draining() {
    let w1 = TestWorker::new("w1");
    let w2 = TestWorker::new("w2");
    let gw = start(|_| {}, with_workers(vec![w1.clone(), w2.clone()])).await;
    for _ in 0..5 {
        let response = gw.send(empty(bearer(ws("/ws/w2/c_7"), &token()))).await;
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    }
    assert_eq!((w1.handed(), w2.handed()), (0, 5));
    w2.set_draining(true);
    for _ in 0..3 {
        let response = gw.send(empty(bearer(ws("/ws/w2/c_7"), &token()))).await;
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    }
    assert_eq!((w1.handed(), w2.handed()), (3, 5));
    // The worker that took the reconnect still learns which conn was asked for.
    assert_eq!(
        w1.seen.lock().unwrap()[0].identity.resume_conn.as_deref(),
        Some("c_7")
    );
    // Unknown worker: routed elsewhere, never an error.
    let response = gw.send(empty(bearer(ws("/ws/w9/c_7"), &token()))).await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    gw.stop().await;
}

// ---- The HTTP API ------------------------------------------------------------------

fn api(method: http::Method, path: &str, key: Option<&str>, body: &str) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "x");
    if let Some(key) = key {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    builder
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn api_requires_its_key_and_serves_the_broker() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new(MemoryConfig::default()));
    let gw = start(
        |s| s.limits.max_api_body_bytes = 1024,
        GatewayDeps {
            broker: Some(broker.clone()),
            local_workers: vec![],
        },
    )
    .await;
    use http::Method;
    let publish = r#"{"room":"lobby","data":{"text":
        "hi"}}"#;
    let response = gw
        .send(api(Method::POST, "/api/v1/publish", None, publish))
        .await;
    expect_error(response, StatusCode::UNAUTHORIZED, ErrorCode::MissingToken).await;
    let response = gw
        .send(api(Method::POST, "/api/v1/publish", Some("wrong"), publish))
        .await;
    expect_error(response, StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken).await;

    let response = gw
        .send(api(Method::POST, "/api/v1/publish", Some(API_KEY), publish))
        .await;
    let seq = json_body(response).await["seq"].as_u64().unwrap();
    let response = gw
        .send(api(
            Method::POST,
            "/api/v1/publish",
            Some(API_KEY),
            r#"{"room":"lobby","data":1,"ephemeral":true}"#,
        ))
        .await;
    assert_eq!(json_body(response).await, json!({}));

    let response = gw
        .send(api(
            Method::GET,
            "/api/v1/history/lobby?since=0&limit=5000",
            Some(API_KEY),
            "",
        ))
        .await;
    let history = json_body(response).await;
    assert_eq!(history["room"], "lobby");
    assert_eq!(history["seq"], seq);
    assert_eq!(history["recovered"], true);
    assert_eq!(history["messages"][0]["from"], "$server");
    assert_eq!(history["messages"][0]["data"], json!({"text": "hi"}));
    assert!(history["epoch"].is_string());

    let response = gw
        .send(api(
            Method::GET,
            "/api/v1/presence/lobby",
            Some(API_KEY),
            "",
        ))
        .await;
    assert_eq!(
        json_body(response).await,
        json!({"room": "lobby", "members": []})
    );

    let response = gw
        .send(api(
            Method::POST,
            "/api/v1/disconnect",
            Some(API_KEY),
            r#"{"user":"alice","until":4000000000}"#,
        ))
        .await;
    assert_eq!(json_body(response).await, json!({}));
    let alice = switchyard_protocol::UserId::parse("alice").unwrap();
    assert_eq!(
        broker.revoked_before(&alice).await.unwrap(),
        Some(4_000_000_000)
    );

    let cases = [
        (
            Method::POST,
            "/api/v1/publish",
            r#"{"room":"a..b","data":1}"#,
            ErrorCode::BadRoom,
        ),
        (
            Method::POST,
            "/api/v1/publish",
            r#"{"room":"lobby""#,
            ErrorCode::BadRequest,
        ),
        (
            Method::POST,
            "/api/v1/publish",
            r#"{"room":"lobby"}"#,
            ErrorCode::BadRequest,
        ),
        (
            Method::POST,
            "/api/v1/disconnect",
            r#"{"user":"a b"}"#,
            ErrorCode::BadRequest,
        ),
        (
            Method::GET,
            "/api/v1/presence/a%20b",
            "",
            ErrorCode::BadRoom,
        ),
        (
            Method::GET,
            "/api/v1/history/lobby?since=x",
            "",
            ErrorCode::BadRequest,
        ),
        (Method::GET, "/api/v1/nothing", "", ErrorCode::NotFound),
    ];
    for (method, path, body, code) in cases {
        let response = gw.send(api(method, path, Some(API_KEY), body)).await;
        let status = StatusCode::from_u16(code.http_status()).unwrap();
        expect_error(response, status, code).await;
    }
    let big = format!(r#"{{"room":"lobby","data":"{}"}}"#, "x".repeat(2000));
    let response = gw
        .send(api(Method::POST, "/api/v1/publish", Some(API_KEY), &big))
        .await;
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge).await;
    gw.stop().await;
}

#[tokio::test]
async fn api_without_broker_is_unavailable() {
    let gw = start(|_| {}, GatewayDeps::default()).await;
    let response = gw
        .send(api(
            http::Method::GET,
            "/api/v1/presence/lobby",
            Some(API_KEY),
            "",
        ))
        .await;
    expect_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
    )
    .await;
    gw.stop().await;
}

// ---- Splicing to a remote worker ---------------------------------------------------

/// A remote worker: checks the signed identity, answers 101 and echoes bytes.
async fn remote_worker() -> (SocketAddr, Arc<Mutex<Vec<Identity>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let record = record.clone();
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let record = record.clone();
                async move {
                    let header = |name: &str| req.headers()[name].to_str().unwrap().to_string();
                    let now_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_millis() as u64;
                    let identity = Identity::verify(
                        &header(IDENTITY_HEADER),
                        &header(IDENTITY_SIG_HEADER),
                        IDENTITY_SECRET,
                        now_ms,
                    )
                    .unwrap();
                    assert!(!req.headers().contains_key(header::AUTHORIZATION));
                    assert_eq!(req.headers()[header::SEC_WEBSOCKET_KEY], WS_KEY);
                    record.lock().unwrap().push(identity);
                    let upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let upgraded = upgrade.await.unwrap();
                        let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    });
                    let response = Response::builder()
                        .status(StatusCode::SWITCHING_PROTOCOLS)
                        .header(header::UPGRADE, "websocket")
                        .header(header::CONNECTION, "Upgrade")
                        .header(header::SEC_WEBSOCKET_ACCEPT, "accept-from-worker")
                        .header(header::SEC_WEBSOCKET_PROTOCOL, "switchyard.v1")
                        .body(Full::<Bytes>::default())
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades(),
            );
        }
    });
    (addr, seen)
}

/// An address where nothing listens.
async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn remote(id: &str, addr: SocketAddr) -> RemoteWorkerConfig {
    RemoteWorkerConfig {
        id: id.into(),
        address: addr.to_string(),
        capacity: 100,
    }
}

#[tokio::test]
async fn splice_to_remote_worker_with_signed_identity() {
    let (addr, seen) = remote_worker().await;
    let dead = dead_address().await;
    let gw = start(
        |s| {
            s.identity_secret = Some(Arc::from(IDENTITY_SECRET));
            // The sticky path names the dead worker: the gateway must fall over once.
            s.remote_workers = vec![remote("dead", dead), remote("r1", addr)];
        },
        GatewayDeps::default(),
    )
    .await;
    let t = token();
    let req = empty(
        bearer(ws("/ws/dead/c_3?resume_token=rt"), &t)
            .header(header::SEC_WEBSOCKET_PROTOCOL, "switchyard.v1"),
    );
    let response = gw.send(req).await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        response.headers()[header::SEC_WEBSOCKET_ACCEPT],
        "accept-from-worker"
    );
    assert_eq!(
        response.headers()[header::SEC_WEBSOCKET_PROTOCOL],
        "switchyard.v1"
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].user.as_str(), "alice");
        assert_eq!(seen[0].resume_conn.as_deref(), Some("c_3"));
        assert_eq!(seen[0].resume_token.as_deref(), Some("rt"));
        assert!(seen[0].subprotocol);
    }
    let upgraded = hyper::upgrade::on(response).await.unwrap();
    let mut io = TokioIo::new(upgraded);
    io.write_all(b"spliced bytes").await.unwrap();
    let mut buf = [0u8; 13];
    io.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"spliced bytes");
    // Half-close travels: our EOF reaches the worker, whose echo loop ends and closes.
    io.shutdown().await.unwrap();
    let mut rest = Vec::new();
    io.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn unreachable_remote_workers_are_503() {
    let dead = dead_address().await;
    let gw = start(
        |s| {
            s.identity_secret = Some(Arc::from(IDENTITY_SECRET));
            s.remote_workers = vec![remote("dead", dead)];
        },
        GatewayDeps::default(),
    )
    .await;
    let response = gw.send(empty(bearer(ws("/ws"), &token()))).await;
    expect_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::NoWorker,
    )
    .await;
    // Marked down: not ready, and refused without another connect attempt.
    let response = gw
        .send(empty(Request::get("/readyz").header(header::HOST, "x")))
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let worker = TestWorker::new("w1");
    let gw = start(|_| {}, with_workers(vec![worker])).await;
    let addr = gw.addr;
    gw.stop().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

// ---- From files ------------------------------------------------------------------

#[tokio::test]
async fn config_files_load_into_a_serving_gateway() {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-gateway-test-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let write = |name: &str, text: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let cert = write("cert.pem", server_cert.pem().as_bytes());
    let key = write("key.pem", server_key.serialize_pem().as_bytes());
    let rsa = write("rsa.pem", include_bytes!("data/rsa_public.pem").as_slice());
    let secret = write("jwt.secret", b"file-secret\n");
    let api_key = write("api.key", b"file-api-key\n");
    let text = format!(
        r#"
        listen = "127.0.0.1:0"
        handshake_timeout = "5s"
        [tls]
        cert = "{cert}"
        key = "{key}"
        [auth]
        hs256_secret_file = "{secret}"
        public_keys = [{{ alg = "RS256", pem_file = "{rsa}", kid = "r1" }}]
        leeway = "2s"
        [api]
        key_file = "{api_key}"
        [limits]
        max_upgrades_per_sec_per_ip = 50
        "#
    );
    let config_path = write("gateway.toml", text.as_bytes());
    let config = switchyard_gateway::GatewayConfig::from_file(config_path.as_ref()).unwrap();
    config.validate().unwrap();
    let settings = GatewaySettings::from_config(&config).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let worker = TestWorker::new("w1");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = Gateway::new(settings, with_workers(vec![worker.clone()])).unwrap();
    let gw = TestGateway {
        addr: listener.local_addr().unwrap(),
        connector: connector(&roots, true),
        roots,
        telemetry: gateway.telemetry(),
        shutdown: CancellationToken::new(),
        task: tokio::spawn(gateway.serve(listener, CancellationToken::new())),
    };
    // The HS256 secret is the first line of its file, without the newline.
    let response = gw
        .send(empty(bearer(
            ws("/ws"),
            &token_for("alice", 60.0, b"file-secret"),
        )))
        .await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("r1".into());
    let rs256 = encode(
        &header,
        &json!({"sub": "bob", "exp": now() + 60.0}),
        &EncodingKey::from_rsa_pem(include_bytes!("data/rsa_private.pem")).unwrap(),
    )
    .unwrap();
    let response = gw.send(empty(bearer(ws("/ws"), &rs256))).await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let response = gw
        .send(api(
            http::Method::GET,
            "/api/v1/presence/lobby",
            Some("file-api-key"),
            "",
        ))
        .await;
    // Authorized, but this gateway has no broker.
    expect_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
    )
    .await;
    assert_eq!(worker.handed(), 2);
    gw.task.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

// Hostile clients: slow handshakes are cut, oversized input is refused, and none of it
// disturbs other clients.

impl TestGateway {
    async fn raw_tls(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        self.connector.connect(name, tcp).await.unwrap()
    }
}

/// Reads until the peer closes; returns what it sent and how long that took.
async fn until_closed(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> (Vec<u8>, std::time::Duration) {
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, started.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the gateway kept a stalled connection open for 5 s"),
        }
    }
}

/// A client that comes back resumes its TLS session from the ticket it was given (no
/// certificate signed), however many clients came between: rustls' default, a cache of
/// the last 256 sessions with 2 tickets each, would have lost it after 128.
#[tokio::test]
async fn a_returning_client_resumes_its_tls_session_however_many_came_between() {
    let gateway = start(|_| {}, with_workers(vec![TestWorker::new("w1")])).await;
    let readyz = || empty(Request::get("/readyz").header(header::HOST, "x"));
    let returning = connector(&gateway.roots, true);
    let (response, kind) = gateway.send_over(&returning, readyz()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    // Reading the answer took the tickets that came before it.
    response.into_body().collect().await.unwrap();

    const BETWEEN: u64 = 130;
    for _ in 0..BETWEEN {
        let (_, kind) = gateway
            .send_over(&connector(&gateway.roots, false), readyz())
            .await;
        assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    }
    let (response, kind) = gateway.send_over(&returning, readyz()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(kind, Some(rustls::HandshakeKind::Resumed));

    // Not TLS at all: a failed handshake.
    let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
    tcp.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    until_closed(&mut tcp).await;

    let handshakes = "switchyard_gateway_tls_handshakes_total";
    assert_eq!(
        gateway.metric(&format!("{handshakes}{{kind=\"full\"}}")),
        BETWEEN + 1
    );
    assert_eq!(
        gateway.metric(&format!("{handshakes}{{kind=\"resumed\"}}")),
        1
    );
    assert_eq!(
        gateway.metric(&format!("{handshakes}{{kind=\"failed\"}}")),
        1
    );
    gateway.stop().await;
}

fn short_handshakes(settings: &mut GatewaySettings) {
    settings.handshake_timeout = std::time::Duration::from_millis(300);
}

#[tokio::test]
async fn a_client_that_never_starts_tls_is_cut_at_the_handshake_timeout() {
    let gateway = start(short_handshakes, with_workers(vec![TestWorker::new("w1")])).await;
    let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
    let (_, took) = until_closed(&mut tcp).await;
    assert!(
        took < std::time::Duration::from_secs(3),
        "cut after {took:?}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_slowloris_request_head_is_cut_and_others_are_served() {
    let gateway = start(short_handshakes, with_workers(vec![TestWorker::new("w1")])).await;
    let mut slow = gateway.raw_tls().await;
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let trickle = async {
        // One header byte every 100 ms: it never completes within the timeout.
        for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let healthy = async {
        let res = gateway
            .send(empty(
                Request::get("/healthz").header(header::HOST, "localhost"),
            ))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    };
    tokio::join!(trickle, healthy);
    let (_, took) = until_closed(&mut slow).await;
    assert!(took < std::time::Duration::from_secs(3));
    gateway.stop().await;
}

#[tokio::test]
async fn oversized_headers_are_refused_without_harm() {
    let gateway = start(|_| {}, with_workers(vec![TestWorker::new("w1")])).await;
    let mut big = gateway.raw_tls().await;
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = big.write_all(head.as_bytes()).await;
    let (answer, _) = until_closed(&mut big).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "{text}"
    );
    // An oversized token inside the limit is just an invalid token.
    let huge_token = format!(
        "{}.{}.{}",
        "e".repeat(4000),
        "f".repeat(4000),
        "g".repeat(4000)
    );
    let res = gateway.send(empty(bearer(ws("/ws"), &huge_token))).await;
    expect_error(res, StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken).await;
    let res = gateway
        .send(empty(
            Request::get("/healthz").header(header::HOST, "localhost"),
        ))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    gateway.stop().await;
}
