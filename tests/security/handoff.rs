//! Gateway → worker hand-offs over mTLS (`[worker.tls]`, `[internal_tls]`): a worker's
//! listener refuses every peer that is not a gateway of its CA, in the TLS handshake,
//! and still checks the signed identity after it; a gateway refuses a worker whose
//! certificate its CA did not sign. Worker and gateway run in this process on the
//! memory engine, over real sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::AlertDescription;
use switchyard_broker::memory::{MemoryBroker, MemoryConfig};
use switchyard_client::{ConnectError, ConnectOptions, Connection, TokenVia};
use switchyard_gateway::{Gateway, GatewayDeps, GatewaySettings, RemoteWorkerConfig, Verifier};
use switchyard_protocol::{Identity, Scope, UserId};
use switchyard_testkit::{expect, now};
use switchyard_worker::config::ListenerTls;
use switchyard_worker::{Worker, WorkerConfig};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::pki::Pki;
use crate::{message, publish, subscribe, token, IDENTITY_SECRET, JWT_SECRET};

const WAIT: Duration = Duration::from_secs(5);

/// A worker on the memory engine whose listener requires gateways' certificates.
struct TlsWorker {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for TlsWorker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn tls_worker(pki: &Pki) -> TlsWorker {
    let worker = Worker::start(
        WorkerConfig::default(),
        Arc::new(MemoryBroker::new(MemoryConfig::default())),
        None,
    )
    .unwrap();
    let tls = switchyard_worker::listener::tls_config(&ListenerTls {
        cert: pki.cert("handoff-worker"),
        key: pki.key("handoff-worker"),
        client_ca: pki.cert("handoff-ca"),
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(switchyard_worker::listener::run_tls(
        worker,
        listener,
        Arc::from(IDENTITY_SECRET),
        tls,
        stop.clone(),
    ));
    TlsWorker { addr, stop }
}

/// A rustls client trusting `ca`, presenting `client` (a name of the PKI) if given.
fn connector(pki: &Pki, ca: &str, client: Option<&str>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types_certs(&pki.cert(ca)) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(name) => {
            use rustls::pki_types::pem::PemObject as _;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(pki.key(name)).unwrap();
            builder
                .with_client_auth_cert(rustls_pki_types_certs(&pki.cert(name)), key)
                .unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

fn rustls_pki_types_certs(
    path: &std::path::Path,
) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A WebSocket upgrade as a gateway sends it, signed with `secret` (unsigned: `None`).
fn upgrade(secret: Option<&[u8]>) -> String {
    let mut head = String::from(
        "GET /ws HTTP/1.1\r\nHost: worker\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    if let Some(secret) = secret {
        let identity = Identity {
            user: UserId::parse("alice").unwrap(),
            scope: Scope::default(),
            exp: now() + 60.0,
            iat: None,
            resume_conn: None,
            resume_token: None,
            traceparent: None,
            subprotocol: false,
        };
        let (payload, sig) = identity.sign(secret, (now() * 1000.0) as u64);
        head.push_str(&format!(
            "sy-identity: {payload}\r\nsy-identity-sig: {sig}\r\n"
        ));
    }
    head.push_str("\r\n");
    head
}

/// Sends `request` and reads the answer's head; EOF gives what was read (maybe nothing).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &str,
) -> std::io::Result<String> {
    tokio::time::timeout(WAIT, async {
        stream.write_all(request.as_bytes()).await?;
        stream.flush().await?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&head).into_owned())
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

/// The TLS alert the worker sent when it refused the handshake.
async fn refused_with(worker: &TlsWorker, tls: TlsConnector) -> AlertDescription {
    let tcp = TcpStream::connect(worker.addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    // TLS 1.3: the client's side of the handshake completes before the server has
    // checked the client's certificate; the refusal arrives as an alert on first read.
    let result = match tls.connect(name, tcp).await {
        Ok(mut stream) => exchange(&mut stream, &upgrade(Some(IDENTITY_SECRET))).await,
        Err(err) => Err(err),
    };
    let err = match result {
        Ok(answer) => panic!("the worker answered: {answer:?}"),
        Err(err) => err,
    };
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) => *alert,
        other => panic!("expected a TLS alert, got {err} ({other:?})"),
    }
}

#[tokio::test]
async fn a_worker_with_mtls_refuses_plain_tcp() {
    let pki = Pki::generate();
    let worker = tls_worker(&pki).await;
    let mut tcp = TcpStream::connect(worker.addr).await.unwrap();
    // A correctly signed hand-off, but in clear text: not even read as HTTP.
    let answer = exchange(&mut tcp, &upgrade(Some(IDENTITY_SECRET))).await;
    match answer {
        Ok(text) => assert!(
            !text.starts_with("HTTP/"),
            "a plain hand-off got an HTTP answer: {text:?}"
        ),
        Err(err) => assert_ne!(err.kind(), std::io::ErrorKind::TimedOut, "{err}"),
    }
}

#[tokio::test]
async fn a_worker_with_mtls_refuses_tls_without_a_client_certificate() {
    let pki = Pki::generate();
    let worker = tls_worker(&pki).await;
    let alert = refused_with(&worker, connector(&pki, "handoff-ca", None)).await;
    assert_eq!(alert, AlertDescription::CertificateRequired);
}

#[tokio::test]
async fn a_worker_with_mtls_refuses_a_certificate_of_another_ca() {
    let pki = Pki::generate();
    let worker = tls_worker(&pki).await;
    // The gateway's NATS certificate: the same subject (CN=switchyard-gateway), valid,
    // but signed by the NATS CA, not by the worker's client_ca.
    let alert = refused_with(&worker, connector(&pki, "handoff-ca", Some("gateway"))).await;
    assert_eq!(alert, AlertDescription::UnknownCA);
}

#[tokio::test]
async fn a_worker_with_mtls_takes_the_gateways_certificate_and_still_checks_the_signature() {
    let pki = Pki::generate();
    let worker = tls_worker(&pki).await;
    let tls = connector(&pki, "handoff-ca", Some("handoff-gateway"));
    let dial = || async {
        let tcp = TcpStream::connect(worker.addr).await.unwrap();
        tls.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap()
    };
    let answer = exchange(&mut dial().await, &upgrade(Some(IDENTITY_SECRET)))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer:?}");
    // Defence in depth: a gateway's certificate does not replace the signed identity.
    for request in [upgrade(None), upgrade(Some(b"not the secret"))] {
        let answer = exchange(&mut dial().await, &request).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer:?}");
    }
}

/// A gateway in this process in front of one remote worker, plain WebSocket for the
/// test's client; `internal` is its `[internal_tls]` as (ca, cert) names of the PKI.
async fn gateway(
    pki: &Pki,
    worker: SocketAddr,
    internal: Option<(&str, &str)>,
) -> (SocketAddr, CancellationToken) {
    let mut settings = GatewaySettings::new(None, Arc::new(Verifier::hs256(JWT_SECRET)));
    settings.identity_secret = Some(Arc::from(IDENTITY_SECRET));
    settings.remote_workers = vec![RemoteWorkerConfig {
        id: "w1".into(),
        address: worker.to_string(),
        capacity: 100,
    }];
    settings.connect_timeout = Duration::from_secs(2);
    if let Some((ca, cert)) = internal {
        settings.internal_tls = Some(
            switchyard_gateway::tls::load_internal_client_config(
                &pki.cert(ca),
                &pki.cert(cert),
                &pki.key(cert),
            )
            .unwrap(),
        );
    }
    let gateway = Gateway::new(settings, GatewayDeps::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(gateway.serve(listener, stop.clone()));
    (addr, stop)
}

fn client(gateway: SocketAddr, user: &str) -> ConnectOptions {
    ConnectOptions::new(format!("ws://{gateway}/ws")).token(
        token(JWT_SECRET, user, &["lobby"], &["lobby"]),
        TokenVia::Header,
    )
}

#[tokio::test]
async fn a_gateway_hands_off_over_mtls_end_to_end() {
    let pki = Pki::generate();
    let worker = tls_worker(&pki).await;
    let (addr, stop) = gateway(&pki, worker.addr, Some(("handoff-ca", "handoff-gateway"))).await;
    let mut alice = Connection::connect(&client(addr, "alice")).await.unwrap();
    let welcome = expect::welcome(&mut alice).await;
    assert_eq!(welcome.worker, "w1");
    subscribe(&mut alice, "lobby").await;
    let seq = publish(&mut alice, "lobby", r#"{"text":"over mTLS"}"#, "p1").await;
    assert_eq!(
        message(&mut alice, "lobby", seq).await,
        r#"{"text":"over mTLS"}"#
    );
    stop.cancel();
}

#[tokio::test]
async fn a_gateway_without_the_workers_ca_or_without_internal_tls_reaches_no_worker() {
    let pki = Pki::generate();
    let worker = tls_worker(&pki).await;
    // Plain TCP to an mTLS worker, and mTLS trusting another CA (the NATS CA did not
    // sign the worker's certificate): both are refused, and the client hears 503.
    for internal in [None, Some(("ca", "handoff-gateway"))] {
        let (addr, stop) = gateway(&pki, worker.addr, internal).await;
        let refused = Connection::connect(&client(addr, "alice")).await;
        assert!(
            matches!(refused, Err(ConnectError::Http { status: 503, .. })),
            "{internal:?}: {:?}",
            refused.map(|_| ())
        );
        stop.cancel();
    }
}

/// Every TLS key is validated with its name, and a bad one exits 64 (`EX_USAGE`).
#[test]
fn tls_keys_that_name_missing_files_exit_64_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s\n").unwrap();
    let secret = crate::roles::path(&secret);
    let worker = format!(
        "[worker]\nlisten = \"127.0.0.1:0\"\nidentity_secret_file = {secret}\n\
         [worker.tls]\ncert = \"/nonexistent/w.pem\"\nkey = \"/nonexistent/w-key.pem\"\nclient_ca = \"/nonexistent/ca.pem\"\n\
         [auth]\nhs256_secret_file = {secret}\n"
    );
    let (code, stderr) = crate::roles::check_config("worker", dir.path(), &worker);
    assert_eq!(code, Some(64), "{stderr}");
    for key in ["worker.tls.cert", "worker.tls.key", "worker.tls.client_ca"] {
        assert!(stderr.contains(key), "{key} is not named: {stderr}");
    }
    let gateway = format!(
        "listen = \"127.0.0.1:0\"\nplain = true\n[internal_tls]\nca = \"/nonexistent/ca.pem\"\n\
         cert = \"/nonexistent/g.pem\"\nkey = \"/nonexistent/g-key.pem\"\n[auth]\nhs256_secret_file = {secret}\n"
    );
    let (code, stderr) = crate::roles::check_config("gateway", dir.path(), &gateway);
    assert_eq!(code, Some(64), "{stderr}");
    for key in ["internal_tls.ca", "internal_tls.cert", "internal_tls.key"] {
        assert!(stderr.contains(key), "{key} is not named: {stderr}");
    }
    // Files that exist but hold no PEM: still exit 64, naming the key.
    let (code, stderr) = crate::roles::check_config(
        "worker",
        dir.path(),
        &worker
            .replace(
                "/nonexistent/w.pem",
                dir.path().join("secret").to_str().unwrap(),
            )
            .replace(
                "/nonexistent/w-key.pem",
                dir.path().join("secret").to_str().unwrap(),
            )
            .replace(
                "/nonexistent/ca.pem",
                dir.path().join("secret").to_str().unwrap(),
            ),
    );
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("worker.tls.cert"), "{stderr}");
}
