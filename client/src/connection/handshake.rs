//! Dialing: URL → TCP → (TLS) → HTTP/1.1 upgrade → a WebSocket. A refused upgrade comes
//! back with its status, its JSON error body and its headers, so tests can check codes.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use fastwebsockets::{Role, WebSocket};
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use switchyard_protocol::error::HttpError;
use switchyard_protocol::{AUTH_SUBPROTOCOL_PREFIX, SUBPROTOCOL};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::debug;

use super::options::{ConnectOptions, TlsTrust, TokenVia};

/// Largest error body read from a refused upgrade.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// RFC 6455 §1.3: appended to the key before hashing it into `Sec-WebSocket-Accept`.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad url: {0}")]
    BadUrl(String),
    #[error("bad header {0}")]
    BadHeader(String),
    #[error("tls configuration: {0}")]
    TlsConfig(String),
    #[error("{0} timed out")]
    Timeout(Phase),
    #[error("{phase} failed: {source}")]
    Io {
        phase: Phase,
        #[source]
        source: std::io::Error,
    },
    #[error("http: {0}")]
    Hyper(#[from] hyper::Error),
    /// The server answered the upgrade with something other than `101`.
    #[error("upgrade refused with {status}")]
    Http {
        status: u16,
        /// The `{"error","message"}` body, when it was one.
        body: Option<HttpError>,
        /// Boxed to keep the error small; `Retry-After` is read by [`ConnectError::retry_after`].
        headers: Box<HeaderMap>,
    },
    /// A `101` that breaks RFC 6455 (bad accept key, a subprotocol not offered).
    #[error("bad upgrade answer: {0}")]
    BadHandshake(&'static str),
}

impl ConnectError {
    /// The server's `Retry-After` in seconds, for 429 and 503 answers.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ConnectError::Http { headers, .. } => headers
                .get(header::RETRY_AFTER)?
                .to_str()
                .ok()?
                .trim()
                .parse()
                .ok()
                .map(std::time::Duration::from_secs),
            _ => None,
        }
    }
}

/// The phase a timeout or I/O error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Tls,
    Upgrade,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Connect => "tcp connect",
            Phase::Tls => "tls handshake",
            Phase::Upgrade => "websocket upgrade",
        })
    }
}

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) tls: bool,
    /// Without IPv6 brackets, for DNS, SNI and certificate checks.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `host[:port]` as the `Host` header carries it.
    pub(crate) authority: String,
    /// `/path?query`.
    pub(crate) path_and_query: String,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, ConnectError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ConnectError::BadUrl(format!("{e}")))?;
        let tls = match uri.scheme_str() {
            Some("wss") | Some("https") => true,
            Some("ws") | Some("http") => false,
            _ => return Err(ConnectError::BadUrl("scheme must be ws or wss".into())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| ConnectError::BadUrl("no host".into()))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path_and_query = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        let path_and_query = if path_and_query.starts_with('/') {
            path_and_query.to_string()
        } else {
            format!("/{path_and_query}")
        };
        Ok(Target {
            tls,
            host,
            port,
            authority: authority.as_str().to_string(),
            path_and_query,
        })
    }
}

/// Percent-encodes a query value, keeping only RFC 3986 unreserved bytes.
pub(crate) fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Appends `name=value` to a `/path?query`.
pub(crate) fn append_query(path_and_query: &str, name: &str, value: &str) -> String {
    let sep = if path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{path_and_query}{sep}{name}={}", encode_query_value(value))
}

/// The upgrade request, and the subprotocols it offers.
pub(crate) fn build_request(
    opts: &ConnectOptions,
    target: &Target,
    key: &str,
) -> Result<(Request<Empty<Bytes>>, Vec<String>), ConnectError> {
    let mut path = target.path_and_query.clone();
    let mut offered: Vec<String> = Vec::new();
    if opts.offer_subprotocol {
        offered.push(SUBPROTOCOL.to_string());
    }
    let mut builder = Request::builder()
        .method("GET")
        .uri(path.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "upgrade")
        .header(header::SEC_WEBSOCKET_KEY, key)
        .header(header::SEC_WEBSOCKET_VERSION, "13");
    if let Some(token) = &opts.token {
        match opts.token_via {
            TokenVia::Header => {
                builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            TokenVia::Subprotocol => {
                if offered.is_empty() {
                    offered.push(SUBPROTOCOL.to_string());
                }
                offered.push(format!("{AUTH_SUBPROTOCOL_PREFIX}{token}"));
            }
            TokenVia::Query => {
                path = append_query(&path, "access_token", token);
                builder = builder.uri(path.as_str());
            }
        }
    }
    if !offered.is_empty() {
        builder = builder.header(header::SEC_WEBSOCKET_PROTOCOL, offered.join(", "));
    }
    let mut request = builder
        .body(Empty::new())
        .map_err(|e| ConnectError::BadUrl(e.to_string()))?;
    for (name, value) in &opts.headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| ConnectError::BadHeader(name.clone()))?;
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|_| ConnectError::BadHeader(name.to_string()))?;
        if name == header::SEC_WEBSOCKET_PROTOCOL {
            offered.extend(
                value
                    .to_str()
                    .unwrap_or_default()
                    .split(',')
                    .map(|p| p.trim().to_string()),
            );
        }
        request.headers_mut().append(name, value);
    }
    Ok((request, offered))
}

/// The rustls configuration for a trust choice: the ring provider, TLS 1.3 suites in
/// browsers' order. Its session cache is what lets a reconnect resume, so a client keeps
/// one config across its connections.
pub(crate) fn tls_config(trust: &TlsTrust) -> Result<Arc<rustls::ClientConfig>, ConnectError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match trust {
        TlsTrust::Config(config) => return Ok(config.clone()),
        TlsTrust::WebPki => {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Vec::new()
        }
        TlsTrust::CaPemFile(path) => CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| ConnectError::TlsConfig(format!("{}: {e}", path.display())))?,
        TlsTrust::CaPem(pem) => CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| ConnectError::TlsConfig(e.to_string()))?,
    };
    if certs.is_empty() && roots.is_empty() {
        return Err(ConnectError::TlsConfig(
            "no CA certificate in the PEM".into(),
        ));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| ConnectError::TlsConfig(e.to_string()))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::TlsConfig(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// ring, with AES-128-GCM-SHA256 offered first as browsers do: the server takes our
/// order, and SHA-256 runs on the CPU's SHA instructions where rustls' first choice,
/// SHA-384, has none.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// TCP, then TLS for `wss`, each under its own timeout.
pub(crate) async fn dial(
    opts: &ConnectOptions,
    target: &Target,
) -> Result<Box<dyn Io>, ConnectError> {
    let tls = if target.tls {
        Some(tls_config(&opts.tls)?)
    } else {
        None
    };
    let tcp = timeout(
        opts.connect_timeout,
        TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| ConnectError::Timeout(Phase::Connect))?
    .map_err(|source| ConnectError::Io {
        phase: Phase::Connect,
        source,
    })?;
    // Small frames (acks, subs) should not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    let Some(config) = tls else {
        return Ok(Box::new(tcp));
    };
    let name = ServerName::try_from(target.host.clone())
        .map_err(|_| ConnectError::BadUrl("host is not a valid server name".into()))?;
    let stream = timeout(
        opts.connect_timeout,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| ConnectError::Timeout(Phase::Tls))?
    .map_err(|source| ConnectError::Io {
        phase: Phase::Tls,
        source,
    })?;
    Ok(Box::new(stream))
}

/// What a successful upgrade yields.
pub(crate) struct Upgrade {
    pub(crate) ws: WebSocket<TokioIo<Upgraded>>,
    pub(crate) headers: HeaderMap,
    pub(crate) subprotocol: Option<String>,
}

/// Sends the upgrade request over `io` and checks the answer (RFC 6455 §4.1).
pub(crate) async fn upgrade(
    io: Box<dyn Io>,
    request: Request<Empty<Bytes>>,
    key: &str,
    offered: &[String],
) -> Result<Upgrade, ConnectError> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    // The connection future hands the socket over to `upgrade::on` and then ends; the
    // guard stops it if the upgrade fails or times out first.
    let driver = AbortOnDrop(tokio::spawn(async move {
        if let Err(error) = conn.with_upgrades().await {
            debug!(%error, "upgrade connection ended");
        }
    }));
    let mut response = sender.send_request(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let body = Limited::new(response.into_body(), MAX_ERROR_BODY_BYTES)
            .collect()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<HttpError>(&b.to_bytes()).ok());
        return Err(ConnectError::Http {
            status: status.as_u16(),
            body,
            headers: Box::new(headers),
        });
    }
    let has = |name: header::HeaderName, want: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
    };
    if !has(header::UPGRADE, "websocket") {
        return Err(ConnectError::BadHandshake("Upgrade is not websocket"));
    }
    if !has(header::CONNECTION, "upgrade") {
        return Err(ConnectError::BadHandshake("Connection is not upgrade"));
    }
    let accept = headers
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .and_then(|v| v.to_str().ok());
    if accept != Some(accept_key(key).as_str()) {
        return Err(ConnectError::BadHandshake(
            "Sec-WebSocket-Accept does not match",
        ));
    }
    let subprotocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .map(|v| v.to_str().unwrap_or_default().trim().to_string());
    if let Some(chosen) = &subprotocol {
        if !offered.iter().any(|o| o == chosen) {
            return Err(ConnectError::BadHandshake(
                "server chose a subprotocol not offered",
            ));
        }
    }
    let upgraded = hyper::upgrade::on(&mut response).await?;
    drop(driver);
    Ok(Upgrade {
        ws: WebSocket::after_handshake(TokioIo::new(upgraded), Role::Client),
        headers,
        subprotocol,
    })
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)).
fn accept_key(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(WS_GUID.as_bytes());
    BASE64.encode(ctx.finish().as_ref())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn targets() {
        let t = Target::parse("wss://localhost:8443/ws?x=1").unwrap();
        assert!(t.tls);
        assert_eq!((t.host.as_str(), t.port), ("localhost", 8443));
        assert_eq!(t.authority, "localhost:8443");
        assert_eq!(t.path_and_query, "/ws?x=1");
        let t = Target::parse("ws://[::1]:9000").unwrap();
        assert!(!t.tls);
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert_eq!(t.path_and_query, "/");
        assert_eq!(Target::parse("wss://example.com/ws").unwrap().port, 443);
        assert!(matches!(
            Target::parse("ftp://example.com/"),
            Err(ConnectError::BadUrl(_))
        ));
    }

    #[test]
    fn token_placement() {
        let target = Target::parse("ws://h:1/ws?a=b").unwrap();
        let opts = ConnectOptions::new("ws://h:1/ws?a=b").token("t.o.k", TokenVia::Query);
        let (req, offered) = build_request(&opts, &target, "k").unwrap();
        assert_eq!(req.uri(), "/ws?a=b&access_token=t.o.k");
        assert!(offered.is_empty());
        assert!(req.headers().get(header::AUTHORIZATION).is_none());

        let opts = opts.token("t.o.k", TokenVia::Subprotocol);
        let (req, offered) = build_request(&opts, &target, "k").unwrap();
        assert_eq!(
            req.headers()[header::SEC_WEBSOCKET_PROTOCOL],
            "switchyard.v1, switchyard.auth.t.o.k"
        );
        assert_eq!(offered, ["switchyard.v1", "switchyard.auth.t.o.k"]);

        let opts = opts.token("t.o.k", TokenVia::Header);
        let (req, _) = build_request(&opts, &target, "k").unwrap();
        assert_eq!(req.headers()[header::AUTHORIZATION], "Bearer t.o.k");
        assert_eq!(req.uri(), "/ws?a=b");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query_value("a.b-c_d~"), "a.b-c_d~");
        assert_eq!(encode_query_value("a+b/c=&"), "a%2Bb%2Fc%3D%26");
        assert_eq!(append_query("/ws", "k", "v w"), "/ws?k=v%20w");
    }

    #[test]
    fn ca_pem_without_certificates_is_refused() {
        assert!(matches!(
            tls_config(&TlsTrust::CaPem(b"not a pem".to_vec())),
            Err(ConnectError::TlsConfig(_))
        ));
    }
}
