//! Test kit: real Switchyard stacks on free loopback ports, for integration tests.
//!
//! - [`Stack`] starts `switchyard dev`'s stack in-process (gateway + workers on the
//!   memory engine, TLS from a fresh dev CA in a temporary state dir) on `127.0.0.1:0`.
//! - [`Stack::token`] and [`Stack::sign`] mint tokens with the stack's secret;
//!   [`Stack::connect`] opens a real `wss://` connection and reads its `welcome`;
//!   [`Stack::api`] calls the HTTP API over TLS.
//! - [`expect`] holds small waiting helpers over a [`Connection`].
//! - [`proxy::Proxy`] sits between a client and a stack and cuts sockets on demand.
//! - [`NatsServer`] and [`NatsCluster`] run real `nats-server` processes (JetStream,
//!   temporary stores, random loopback ports) that tests can stop, kill, restart and
//!   pause; they die with the value.

pub mod api;
pub mod checker;
pub mod expect;
pub mod mesh;
pub mod nats;
pub mod proxy;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchyard::dev::{DevOptions, DevStack};
use switchyard_client::{ConnectError, ConnectOptions, Connection, TokenVia};
use switchyard_protocol::frame::ServerFrame;

pub use api::ApiResponse;
pub use nats::{nats_server_path, NatsCluster, NatsOptions, NatsServer};

/// How long a test waits for any one thing before failing.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Stack {
    pub dev: DevStack,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// One worker, default settings.
    pub async fn start() -> Stack {
        Stack::start_with(|_| {}).await
    }

    /// A stack on the NATS engine at `url`; its workers are `<prefix>1`.. so that
    /// several stacks can share one NATS.
    pub async fn start_nats(
        url: &str,
        prefix: &str,
        adjust: impl FnOnce(&mut DevOptions),
    ) -> Stack {
        let (url, prefix) = (url.to_string(), prefix.to_string());
        Stack::start_with(move |o| {
            o.nats = Some(switchyard_broker::nats::NatsConfig {
                url,
                ..Default::default()
            });
            o.worker_prefix = prefix;
            adjust(o);
        })
        .await
    }

    /// Lets the test adjust the options (workers, worker config, history size).
    pub async fn start_with(adjust: impl FnOnce(&mut DevOptions)) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = DevOptions::new(dir.path().join("state"));
        options.listen = "127.0.0.1:0".parse().expect("loopback address");
        adjust(&mut options);
        let dev = DevStack::start(options).await.expect("dev stack starts");
        Stack { dev, _dir: dir }
    }

    /// `wss://localhost:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        self.url_via(self.dev.addr, path)
    }

    /// The URL of `path` reached through another address (a [`proxy::Proxy`]).
    pub fn url_via(&self, addr: std::net::SocketAddr, path: &str) -> String {
        let scheme = if self.dev.plain { "ws" } else { "wss" };
        format!("{scheme}://localhost:{}{path}", addr.port())
    }

    /// A token for `user` with these scope patterns, valid for an hour.
    pub fn token(&self, user: &str, sub: &[&str], publish: &[&str]) -> String {
        self.sign(&serde_json::json!({
            "sub": user,
            "exp": now() + 3600.0,
            "iat": now(),
            "scope": {"sub": sub, "pub": publish},
        }))
    }

    /// Signs any claims with the stack's HS256 secret.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(self.dev.state.jwt_secret.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).expect("claims sign")
    }

    /// Connect options for `path` trusting the stack's CA, with `token` in the header.
    pub fn options(&self, path: &str, token: &str) -> ConnectOptions {
        let mut options = ConnectOptions::new(self.url(path)).token(token, TokenVia::Header);
        options.tls =
            switchyard_client::TlsTrust::CaPem(self.dev.state.ca_pem.clone().into_bytes());
        options
    }

    /// Opens a connection to `/ws` and reads its `welcome`.
    pub async fn connect(&self, token: &str) -> (Connection, Welcome) {
        self.connect_path("/ws", token).await
    }

    pub async fn connect_path(&self, path: &str, token: &str) -> (Connection, Welcome) {
        self.connect_with(self.options(path, token))
            .await
            .expect("connection upgrades")
    }

    pub async fn connect_with(
        &self,
        options: ConnectOptions,
    ) -> Result<(Connection, Welcome), ConnectError> {
        let mut conn = Connection::connect(&options).await?;
        let welcome = expect::welcome(&mut conn).await;
        Ok((conn, welcome))
    }

    /// GETs `path` from the stack's admin listener (start it with
    /// `options.admin_listen = Some("127.0.0.1:0".parse()?)`): status and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let addr = self
            .dev
            .admin_addr
            .expect("the stack has an admin listener");
        admin_get(addr, path).await
    }

    pub fn api(&self) -> api::Api {
        api::Api::new(
            self.dev.addr,
            self.dev.state.ca_pem.as_bytes(),
            Some(self.dev.state.api_key.clone()),
        )
    }
}

/// The fields of a `welcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub conn: String,
    pub worker: String,
    pub resume: String,
    pub resume_token: String,
    pub heartbeat_ms: u64,
    pub resumed: bool,
    pub user: String,
}

impl Welcome {
    pub fn from_frame(frame: ServerFrame<'_>) -> Option<Welcome> {
        match frame {
            ServerFrame::Welcome {
                conn,
                worker,
                resume,
                resume_token,
                heartbeat_ms,
                resumed,
                user,
            } => Some(Welcome {
                conn: conn.into_owned(),
                worker: worker.into_owned(),
                resume: resume.into_owned(),
                resume_token: resume_token.into_owned(),
                heartbeat_ms,
                resumed,
                user: user.into_owned(),
            }),
            _ => None,
        }
    }

    /// The sticky reconnect path with this session's resume token.
    pub fn resume_path(&self) -> String {
        format!("{}?resume_token={}", self.resume, self.resume_token)
    }
}

/// GETs `path` from an admin listener over plain HTTP/1.1: status and body.
pub async fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("admin listener reachable");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.expect("response read");
    let response = String::from_utf8(response).expect("admin answers are text");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_string())
}

/// The samples of a metric in a Prometheus text scrape whose labels include all of
/// `labels`, summed (0 when there is none).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            if metric != name {
                return None;
            }
            let matches = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}
