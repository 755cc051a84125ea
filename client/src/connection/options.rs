//! What a connection needs before it dials: the URL, the token and how it travels,
//! extra headers, which certificates to trust, and a timeout for every phase.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Time allowed for the TCP connect and for the TLS handshake, each.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed from sending the upgrade request to its `101` (or error) answer.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the server's close frame after the client sent its own.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest server message accepted. Server frames batch many pieces, so this is generous.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How the token reaches the server (PROTOCOL §1; the server takes the first it finds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenVia {
    /// `Authorization: Bearer <jwt>`.
    #[default]
    Header,
    /// `Sec-WebSocket-Protocol: switchyard.v1, switchyard.auth.<jwt>`, as browsers do.
    Subprotocol,
    /// `?access_token=<jwt>`.
    Query,
}

/// Which server certificates a `wss://` connection trusts.
#[derive(Clone, Default)]
pub enum TlsTrust {
    /// The Mozilla roots of `webpki-roots`: public servers.
    #[default]
    WebPki,
    /// Only the CA certificate(s) in this PEM file (`switchyard dev` writes `ca.pem`).
    CaPemFile(PathBuf),
    /// Only the CA certificate(s) in these PEM bytes.
    CaPem(Vec<u8>),
    /// A ready configuration; its ALPN list is used as given.
    Config(Arc<rustls::ClientConfig>),
}

impl std::fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsTrust::WebPki => f.write_str("WebPki"),
            TlsTrust::CaPemFile(path) => f.debug_tuple("CaPemFile").field(path).finish(),
            TlsTrust::CaPem(pem) => write!(f, "CaPem({} bytes)", pem.len()),
            TlsTrust::Config(_) => f.write_str("Config(..)"),
        }
    }
}

/// Everything [`Connection::connect`](super::Connection::connect) needs.
#[derive(Clone)]
pub struct ConnectOptions {
    /// `ws://host:port/path?query` or `wss://...`.
    pub url: String,
    pub token: Option<String>,
    pub token_via: TokenVia,
    /// Offer `Sec-WebSocket-Protocol: switchyard.v1` even when the token does not travel
    /// in the subprotocol list.
    pub offer_subprotocol: bool,
    /// Sent as given, after the headers above (a test may send a bad subprotocol list).
    pub headers: Vec<(String, String)>,
    pub tls: TlsTrust,
    pub connect_timeout: Duration,
    pub upgrade_timeout: Duration,
    pub close_timeout: Duration,
    pub max_message_bytes: usize,
}

impl ConnectOptions {
    pub fn new(url: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            url: url.into(),
            token: None,
            token_via: TokenVia::Header,
            offer_subprotocol: false,
            headers: Vec::new(),
            tls: TlsTrust::WebPki,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            upgrade_timeout: DEFAULT_UPGRADE_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }

    pub fn token(mut self, token: impl Into<String>, via: TokenVia) -> ConnectOptions {
        self.token = Some(token.into());
        self.token_via = via;
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> ConnectOptions {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn ca_pem_file(mut self, path: impl Into<PathBuf>) -> ConnectOptions {
        self.tls = TlsTrust::CaPemFile(path.into());
        self
    }

    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> ConnectOptions {
        self.tls = TlsTrust::CaPem(pem.into());
        self
    }
}

impl std::fmt::Debug for ConnectOptions {
    /// The token is never printed (STYLE §9).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_via", &self.token_via)
            .field("offer_subprotocol", &self.offer_subprotocol)
            .field("headers", &self.headers.len())
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}
