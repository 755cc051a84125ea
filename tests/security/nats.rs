//! The shipped NATS configuration (`nats/`), on real nats-server processes on loopback.
//!
//! The files are the source of truth: [`render`] reads them, inlines their includes
//! and changes only what a test on loopback must (certificate dir, store, monitoring
//! and route ports, route hosts), asserting that each thing it changes is still there.
//! Client ports come from the testkit (`-p -1`). nats-server 2.9 does not know
//! `sync_interval` (2.10+): on such a server the test drops that one line and says so.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, Event, ServerError};
use futures_util::StreamExt as _;
use switchyard_broker::nats::config::NatsTls;
use switchyard_broker::nats::{NatsBroker, NatsConfig};
use switchyard_client::{ConnectOptions as WsOptions, Connection, TlsTrust, TokenVia};
use switchyard_testkit::api::Api;
use switchyard_testkit::{expect, nats_server_path, NatsOptions, NatsServer};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};

use crate::pki::Pki;
use crate::roles::{self, path, quote, Role, GATEWAY_LISTENING, WORKER_LISTENING};
use crate::{message, publish, subscribe, token};

const WAIT: Duration = Duration::from_secs(10);

fn nats_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("nats")
}

/// A shipped file with every `include "x"` replaced by x's text (relative to the
/// including file, as nats-server reads it).
fn inline(file: &Path) -> String {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    text.lines()
        .map(|line| match line.trim().strip_prefix("include ") {
            Some(included) => inline(
                &file
                    .parent()
                    .unwrap()
                    .join(included.trim().trim_matches('"')),
            ),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether this nats-server takes `jetstream.sync_interval` (2.10.0 and later).
fn supports_sync_interval() -> bool {
    let out = Command::new(nats_server_path())
        .arg("--version")
        .output()
        .expect("nats-server --version");
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().rsplit('v').next().unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 10)
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// `file` (under `nats/`) for loopback: certificates from `certs`, the JetStream store
/// in `store`, a free monitoring port, and `changes` (each must occur in the file).
/// The server is started with the file's `jetstream` block, not the testkit's `-js`.
fn render(file: &str, certs: &Path, store: &Path, changes: &[(String, String)]) -> String {
    let mut text = inline(&nats_dir().join(file));
    let mut change = |from: &str, to: &str| {
        assert!(
            text.contains(from),
            "nats/{file} no longer holds {from:?}: update tests/security/nats.rs"
        );
        text = text.replace(from, to);
    };
    change("/etc/nats/certs/", &format!("{}/", certs.display()));
    change(
        "store_dir: \"/data/nats\"",
        &format!("store_dir: \"{}\"", store.display()),
    );
    change(
        "http: \"127.0.0.1:8222\"",
        &format!("http: \"127.0.0.1:{}\"", free_ports(1)[0]),
    );
    for (from, to) in changes {
        change(from, to);
    }
    assert!(
        text.contains("sync_interval: \"1s\""),
        "the sync interval is explicit"
    );
    if !supports_sync_interval() {
        eprintln!("note: this nats-server predates sync_interval (2.10): the test drops that line");
        text = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("sync_interval:"))
            .collect::<Vec<_>>()
            .join("\n");
    }
    text
}

/// The 3-node cluster of `nats/cluster/n1.conf`..`n3.conf` on loopback.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<NatsServer>,
    /// The nodes' JetStream stores; after `nodes`, so the servers die first.
    _stores: tempfile::TempDir,
}

/// A failing test shows why the cluster did what it did: each node's last log lines
/// (say, a meta group that never placed an R3 stream).
impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!(
                    "--- nats {} ---\n{}",
                    node.name().unwrap_or(""),
                    node.log_tail()
                );
            }
        }
    }
}

impl Cluster {
    pub(crate) async fn start(certs: &Path) -> Cluster {
        let routes = free_ports(3);
        let stores = tempfile::Builder::new()
            .prefix("nats-cluster-")
            .tempdir()
            .unwrap();
        let options = |i: usize| {
            let mut changes = vec![(
                "listen: \"0.0.0.0:6222\"".to_string(),
                format!("listen: \"127.0.0.1:{}\"", routes[i]),
            )];
            for (j, port) in routes.iter().enumerate().filter(|&(j, _)| j != i) {
                changes.push((
                    format!("\"nats-route://n{}:6222\"", j + 1),
                    format!("\"nats-route://127.0.0.1:{port}\""),
                ));
            }
            let store = stores.path().join(format!("n{}", i + 1));
            NatsOptions {
                config: Some(render(
                    &format!("cluster/n{}.conf", i + 1),
                    certs,
                    &store,
                    &changes,
                )),
                name: Some(format!("n{}", i + 1)),
                jetstream: false,
                store_dir: None,
            }
        };
        let (n1, n2, n3) = tokio::join!(
            NatsServer::start_with(options(0)),
            NatsServer::start_with(options(1)),
            NatsServer::start_with(options(2)),
        );
        Cluster {
            nodes: vec![n1, n2, n3],
            _stores: stores,
        }
    }

    pub(crate) fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Lines of any node's log that report a permissions violation.
    fn violations(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|n| {
                n.log_tail()
                    .lines()
                    .filter(|l| l.contains("Violation"))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.name().unwrap_or(""), n.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The `[nats]` settings of a role connecting with its certificate.
fn nats_config(urls: &str, pki: &Pki, role: &str, replicas: usize) -> NatsConfig {
    NatsConfig {
        url: urls.to_string(),
        name: Some(format!("test-{role}")),
        tls: Some(NatsTls {
            ca: pki.cert("ca"),
            cert: Some(pki.cert(role)),
            key: Some(pki.key(role)),
        }),
        replicas,
        ..NatsConfig::default()
    }
}

/// A raw NATS client that keeps the server's `-ERR`s.
struct Client {
    nats: async_nats::Client,
    errors: mpsc::Receiver<String>,
}

/// Connects with the NATS CA trusted and, when given, `cert` (a name of the PKI).
async fn connect(
    urls: &str,
    pki: &Pki,
    cert: Option<&str>,
    inbox_prefix: Option<&str>,
) -> Result<Client, async_nats::ConnectError> {
    let (tx, errors) = mpsc::channel(64);
    let mut options = ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(pki.cert("ca"))
        .connection_timeout(WAIT)
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(err) = event {
                    let text = match err {
                        ServerError::AuthorizationViolation => "authorization violation".into(),
                        ServerError::Other(text) => text,
                        other => format!("{other:?}"),
                    };
                    let _ = tx.try_send(text);
                }
            }
        });
    if let Some(cert) = cert {
        options = options.add_client_certificate(pki.cert(cert), pki.key(cert));
    }
    if let Some(prefix) = inbox_prefix {
        options = options.custom_inbox_prefix(prefix);
    }
    let addrs: Vec<async_nats::ServerAddr> = urls.split(',').map(|u| u.parse().unwrap()).collect();
    let nats = options.connect(addrs).await?;
    Ok(Client { nats, errors })
}

impl Client {
    /// Waits for the server's permissions violation of `op` (`Publish` or
    /// `Subscription`) on `subject`.
    async fn refused(&mut self, op: &str, subject: &str) {
        let want = format!("Permissions Violation for {op} to \"{subject}\"");
        let deadline = Instant::now() + WAIT;
        loop {
            match timeout(deadline - Instant::now(), self.errors.recv()).await {
                Ok(Some(err)) if err.contains(&want) => return,
                Ok(Some(_)) => continue,
                _ => panic!("no {want:?} from the server within {WAIT:?}"),
            }
        }
    }

    /// Publishes `subject` (with a reply subject, as a request does) and waits for the
    /// server to refuse it.
    async fn publish_refused(&mut self, subject: &str) {
        let reply = self.nats.new_inbox();
        self.nats
            .publish_with_reply(subject.to_string(), reply, "{}".into())
            .await
            .unwrap();
        self.nats.flush().await.unwrap();
        self.refused("Publish", subject).await;
    }

    async fn subscribe_refused(&mut self, subject: &str) {
        let _sub = self.nats.subscribe(subject.to_string()).await.unwrap();
        self.nats.flush().await.unwrap();
        self.refused("Subscription", subject).await;
    }
}

/// Whether message `seq` of `room` (or a later one) arrives within `wait`.
async fn delivered(conn: &mut Connection, room: &str, seq: u64, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv_timeout(left).await {
            Ok(switchyard_client::Incoming::Frame(
                switchyard_protocol::frame::ServerFrame::Msg {
                    room: r,
                    seq: Some(s),
                    ..
                },
            )) if r == room && s >= seq => return true,
            Ok(switchyard_client::Incoming::Frame(_)) => continue,
            _ => return false,
        }
    }
}

/// (a) The cluster forms with mTLS on clients and routes, and a worker and a gateway
/// (`switchyard` processes with `[worker.tls]`, `[internal_tls]` and `[nats.tls]`,
/// each its own NATS user) carry a client's messages end to end; no NATS permission is
/// violated on the way.
#[tokio::test]
async fn a_mesh_runs_on_the_mtls_cluster_with_per_role_users_and_mtls_hand_offs() {
    let pki = Pki::generate();
    let cluster = Cluster::start(pki.dir()).await;
    let dir = tempfile::Builder::new()
        .prefix("switchyard-security-")
        .tempdir()
        .unwrap();
    let state = dir.path().join("state");
    roles::dev_state(&state);
    let nats = |role: &str| {
        format!(
            "[nats]\nurl = {}\nreplicas = 3\nregistry_ttl = \"3s\"\n[nats.tls]\nca = {}\ncert = {}\nkey = {}\n",
            quote(cluster.urls()),
            path(pki.cert("ca")),
            path(pki.cert(role)),
            path(pki.key(role)),
        )
    };
    let worker_config = format!(
        "[worker]\nid = \"w1\"\nlisten = \"127.0.0.1:0\"\nidentity_secret_file = {}\nannounce_every = \"1s\"\n\
         [worker.tls]\ncert = {}\nkey = {}\nclient_ca = {}\n[auth]\nhs256_secret_file = {}\n{}",
        path(state.join("identity.secret")),
        path(pki.cert("handoff-worker")),
        path(pki.key("handoff-worker")),
        path(pki.cert("handoff-ca")),
        path(state.join("jwt.secret")),
        nats("worker"),
    );
    let mut worker = Role::spawn("worker", "w1", dir.path(), &worker_config);
    worker.addr(WORKER_LISTENING).await;
    let gateway_config = format!(
        "listen = \"127.0.0.1:0\"\nidentity_secret_file = {}\nconnect_timeout = \"2s\"\n\
         [internal_tls]\nca = {}\ncert = {}\nkey = {}\n[tls]\ncert = {}\nkey = {}\n\
         [auth]\nhs256_secret_file = {}\n[api]\nkey_file = {}\n{}",
        path(state.join("identity.secret")),
        path(pki.cert("handoff-ca")),
        path(pki.cert("handoff-gateway")),
        path(pki.key("handoff-gateway")),
        path(state.join("server.pem")),
        path(state.join("server.key")),
        path(state.join("jwt.secret")),
        path(state.join("api.key")),
        nats("gateway"),
    );
    let mut gateway = Role::spawn("gateway", "gateway", dir.path(), &gateway_config);
    let gateway_addr = gateway.addr(GATEWAY_LISTENING).await;

    let ca_pem = std::fs::read(state.join("ca.pem")).unwrap();
    let jwt = std::fs::read_to_string(state.join("jwt.secret")).unwrap();
    let jwt = jwt.lines().next().unwrap().as_bytes().to_vec();
    let options = |path: &str, user: &str| {
        let mut options = WsOptions::new(format!("wss://localhost:{}{path}", gateway_addr.port()))
            .token(token(&jwt, user, &["lobby"], &["lobby"]), TokenVia::Header);
        options.tls = TlsTrust::CaPem(ca_pem.clone());
        options
    };
    // The gateway learns w1 from the registry (KV over NATS), then hands off over mTLS.
    let deadline = Instant::now() + WAIT * 3;
    let mut alice = loop {
        if let Ok(Ok(mut conn)) = timeout(WAIT, Connection::connect(&options("/ws", "alice"))).await
        {
            let welcome = expect::welcome(&mut conn).await;
            assert_eq!(welcome.worker, "w1");
            break conn;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never routed to w1; the logs:\n{}\n{}\n{}",
            gateway.log_text(),
            worker.log_text(),
            cluster.logs()
        );
        sleep(Duration::from_millis(200)).await;
    };
    subscribe(&mut alice, "lobby").await;
    // The worker's subscription to the room's live subject reaches the other nodes over
    // routes a moment after it is made: a message the stream's leader republishes on
    // another node before then is not delivered live (the worker fills it from the
    // store once a later message shows the gap). So publish until one comes back.
    let deadline = Instant::now() + WAIT;
    for attempt in 0.. {
        let reference = format!("p{attempt}");
        let seq = publish(&mut alice, "lobby", r#"{"text":"hi"}"#, &reference).await;
        if delivered(&mut alice, "lobby", seq, Duration::from_secs(1)).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no message came back; the logs:\n{}\n{}\n{}",
            gateway.log_text(),
            worker.log_text(),
            cluster.logs()
        );
    }
    // The gateway's own NATS user on the publish path: the HTTP API.
    let api_key = std::fs::read_to_string(state.join("api.key")).unwrap();
    let api = Api::new(
        gateway_addr,
        &ca_pem,
        Some(api_key.lines().next().unwrap().to_string()),
    );
    let answer = api
        .post(
            "/api/v1/publish",
            &serde_json::json!({"room": "lobby", "data": {"text": "from a backend"}}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.error());
    let seq = answer.json()["seq"].as_u64().unwrap();
    assert_eq!(
        message(&mut alice, "lobby", seq).await,
        r#"{"text":"from a backend"}"#
    );
    // The rest of the gateway's API over its NATS user: presence (KV consumer),
    // history (stream reads), disconnect with a revocation (KV write, control subject),
    // which reaches the worker and closes alice's socket.
    let presence = api.get("/api/v1/presence/lobby").await;
    assert_eq!(presence.status, 200, "{}", presence.error());
    assert_eq!(presence.json()["members"][0]["user"], "alice");
    let history = api.get("/api/v1/history/lobby").await;
    assert_eq!(history.status, 200, "{}", history.error());
    let until = switchyard_testkit::now() as u64 + 60;
    let answer = api
        .post(
            "/api/v1/disconnect",
            &serde_json::json!({"user": "alice", "until": until}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.error());
    assert!(expect::closed(&mut alice).await.is_some());
    assert!(
        worker.log_text().contains("mtls=true"),
        "the worker serves hand-offs over mTLS"
    );
    let violations = cluster.violations();
    assert!(
        violations.is_empty(),
        "the mesh's own work hit NATS permissions:\n{}",
        violations.join("\n")
    );
}

/// (b), (c), (d): what NATS refuses on the cluster config, each by the server's own
/// error (a failed TLS handshake, `authorization violation`, `Permissions Violation`).
#[tokio::test]
async fn the_cluster_refuses_what_each_user_must_not_do() {
    let pki = Pki::generate();
    let cluster = Cluster::start(pki.dir()).await;
    let urls = cluster.urls();

    // The worker user creates the R3 stream and the three buckets on a fresh cluster;
    // the gateway user then opens them (it could not create them).
    let worker = NatsBroker::connect(nats_config(&urls, &pki, "worker", 3))
        .await
        .unwrap_or_else(|e| panic!("the worker's setup failed: {e}\n{}", cluster.logs()));
    let _gateway = NatsBroker::connect(nats_config(&urls, &pki, "gateway", 3))
        .await
        .unwrap_or_else(|e| panic!("the gateway's setup failed: {e}\n{}", cluster.logs()));

    // (b) No certificate: refused in the TLS handshake. A certificate of another CA
    // (the hand-off CA's gateway certificate): the same. The NATS CA's own server
    // certificate maps to no user: authorization violation.
    for cert in [None, Some("handoff-gateway")] {
        let refused = connect(&urls, &pki, cert, None).await;
        let err = refused
            .err()
            .unwrap_or_else(|| panic!("{cert:?} was let in"));
        assert_ne!(err.kind(), ConnectErrorKind::TimedOut, "{cert:?}: {err}");
        assert_ne!(
            err.kind(),
            ConnectErrorKind::AuthorizationViolation,
            "{cert:?} must fail in TLS, before auth: {err}"
        );
    }
    let unmapped = connect(&urls, &pki, Some("server"), None).await;
    assert_eq!(
        unmapped.err().map(|e| e.kind()),
        Some(ConnectErrorKind::AuthorizationViolation)
    );

    // (c) Backends publish to rooms, stored and ephemeral, and nothing else.
    let mut backend = connect(&urls, &pki, Some("backend"), Some("_INBOX_backend"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(backend.nats.clone());
    let ack = js
        .publish("sy.room.x", r#"{"text":"stored"}"#.into())
        .await
        .unwrap()
        .await
        .expect("a backend's stored publish is acknowledged");
    assert!(ack.sequence > 0);
    let mut watcher = connect(&urls, &pki, Some("worker"), None).await.unwrap();
    let mut live = watcher.nats.subscribe("sy.live.room.x").await.unwrap();
    watcher.nats.flush().await.unwrap();
    // The two may be on different nodes: the subscription reaches the backend's node
    // over a route a moment later, so publish until it is seen.
    let deadline = Instant::now() + WAIT;
    let seen = loop {
        backend
            .nats
            .publish("sy.live.room.x", r#"{"text":"ephemeral"}"#.into())
            .await
            .unwrap();
        if let Ok(Some(msg)) = timeout(Duration::from_millis(200), live.next()).await {
            break msg;
        }
        assert!(
            Instant::now() < deadline,
            "the ephemeral message never arrived"
        );
    };
    assert_eq!(&seen.payload[..], br#"{"text":"ephemeral"}"#);
    for subject in [
        "sy.control",                                         // disconnect anyone
        "sy.live.presence.lobby",                             // forge a join
        "$KV.sy_workers.w1",                                  // forge a worker into the registry
        "$KV.sy_presence.lobby.mallory.c1",                   // forge presence
        "$KV.sy_revoked.alice",                               // revoke a user
        "$JS.API.DIRECT.GET.KV_sy_presence",                  // read presence
        "$JS.API.DIRECT.GET.KV_sy_workers.$KV.sy_workers.w1", // read the registry
        "$JS.API.CONSUMER.CREATE.KV_sy_revoked",              // watch a bucket
        "$JS.API.DIRECT.GET.SY_ROOMS",                        // read history
        "$JS.API.STREAM.DELETE.SY_ROOMS",
    ] {
        backend.publish_refused(subject).await;
    }
    for subject in ["$KV.>", "$KV.sy_workers.>", "_INBOX.>", "sy.live.room.>"] {
        backend.subscribe_refused(subject).await;
    }

    // (d) Gateways and workers cannot change what holds the data.
    let mut gateway = connect(&urls, &pki, Some("gateway"), None).await.unwrap();
    for subject in [
        "$JS.API.STREAM.DELETE.SY_ROOMS",
        "$JS.API.STREAM.UPDATE.SY_ROOMS",
        "$JS.API.STREAM.PURGE.SY_ROOMS",
        "$JS.API.STREAM.CREATE.SY_ROOMS",
        "$JS.API.STREAM.DELETE.KV_sy_workers",
        "$KV.sy_workers.w1",                // forge a worker into the registry
        "$KV.sy_presence.lobby.mallory.c1", // forge presence
    ] {
        gateway.publish_refused(subject).await;
    }
    for subject in [
        "$JS.API.STREAM.DELETE.SY_ROOMS",
        "$JS.API.STREAM.PURGE.KV_sy_presence",
        "$JS.API.STREAM.UPDATE.SY_ROOMS",
        "$KV.sy_revoked.alice", // revocations are the API's (gateways')
    ] {
        watcher.publish_refused(subject).await;
    }
    // The stream survived every attempt.
    let mut stream = async_nats::jetstream::new(watcher.nats.clone())
        .get_stream("SY_ROOMS")
        .await
        .expect("the stream is still there");
    assert_eq!(stream.info().await.unwrap().config.num_replicas, 3);
    // The servers log what they refused: the mesh test's "no violation" means something.
    assert!(!cluster.violations().is_empty(), "refusals are logged");
    drop(worker);
}

/// `nats/gen-certs.sh` (openssl) makes what `single.conf` needs: the server starts with
/// them, the worker's certificate logs in as `worker` and sets up R1, a client without
/// a certificate is refused.
#[tokio::test]
async fn gen_certs_sh_makes_what_single_conf_needs() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: no openssl to run nats/gen-certs.sh with");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .arg(nats_dir().join("gen-certs.sh"))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gen-certs.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = NatsServer::start_with(NatsOptions {
        config: Some(render(
            "single.conf",
            dir.path(),
            &dir.path().join("store"),
            &[],
        )),
        name: Some("nats-0".into()),
        jetstream: false,
        store_dir: None,
    })
    .await;
    let cert = |name: &str| dir.path().join(format!("{name}.pem"));
    let key = |name: &str| dir.path().join(format!("{name}-key.pem"));
    let config = NatsConfig {
        url: server.url(),
        tls: Some(NatsTls {
            ca: cert("ca"),
            cert: Some(cert("worker")),
            key: Some(key("worker")),
        }),
        ..NatsConfig::default()
    };
    NatsBroker::connect(config).await.unwrap_or_else(|e| {
        panic!(
            "worker setup on single.conf failed: {e}\n{}",
            server.log_tail()
        )
    });
    let refused = ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(cert("ca"))
        .connection_timeout(WAIT)
        .connect(server.url())
        .await;
    assert!(refused.is_err(), "a client without a certificate got in");
    // The hand-off pair verifies in rustls: worker listener and gateway client config.
    let listener =
        switchyard_worker::listener::tls_config(&switchyard_worker::config::ListenerTls {
            cert: cert("handoff-worker"),
            key: key("handoff-worker"),
            client_ca: cert("handoff-ca"),
        });
    assert!(listener.is_ok(), "{:?}", listener.err());
    let client = switchyard_gateway::tls::load_internal_client_config(
        &cert("handoff-ca"),
        &cert("handoff-gateway"),
        &key("handoff-gateway"),
    );
    assert!(client.is_ok(), "{:?}", client.err());
}
