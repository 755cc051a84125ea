//! The bench's lean client: one task per socket, no channels. TCP from a chosen loopback
//! source address, TLS with the dev CA, a hand-written upgrade, then fastwebsockets
//! unsplit (the subscriber only reads; pongs are written by `read_frame` itself).
//! Publishers use `switchyard_client::Connection` instead: they are few.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fastwebsockets::{Role, WebSocket};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

/// Time allowed for each phase: TCP connect, TLS, upgrade.
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest server message accepted (server frames batch many pieces).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest upgrade answer read.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Source addresses are spread from here (all of 127.0.0.0/8 is loopback).
const SOURCE_BASE: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 0);
/// Source addresses used at most, before they wrap.
const SOURCE_ADDRESSES: u64 = 60_000;

pub type Stream = Either<TlsStream<TcpStream>, TcpStream>;
pub type Ws = WebSocket<Stream>;

/// Where the bench connects: a loopback `ws://` or `wss://` URL, resolved once.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    authority: String,
    pub path: String,
    /// The clients' TLS config (each client clones it with its own session cache).
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl Target {
    /// Parses the URL; only loopback hosts are accepted (the bench never leaves the machine).
    pub fn new(url: &str, ca_pem: Option<&str>) -> anyhow::Result<Target> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("bad url {url:?}"))?;
        let tls = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => anyhow::bail!("--url must be ws:// or wss://"),
        };
        let authority = uri.authority().context("--url has no host")?;
        let host = authority.host().trim_matches(['[', ']']).to_string();
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addrs: Vec<SocketAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host}"))?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .with_context(|| format!("{host} has no address"))?;
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "the bench only drives servers on this machine: {host} is not a loopback address"
        );
        let tls = if tls {
            let pem = ca_pem.context("wss:// needs the dev CA (--state-dir or --ca)")?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(cert.context("bad CA certificate")?)?;
            }
            // Browsers' suite order, as the server's real clients offer it.
            let config = rustls::ClientConfig::builder_with_provider(switchyard_tls::provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from(host.clone())?;
            Some((Arc::new(config), name))
        } else {
            None
        };
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| p.starts_with('/'))
            .unwrap_or_else(|| "/ws".into());
        Ok(Target {
            addr,
            authority: authority.as_str().to_string(),
            path,
            tls,
        })
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// The loopback source address for connection `n`: `per_ip` connections share one, so
/// no address runs out of ports or meets the gateway's per-address upgrade limit.
pub fn source_ip(n: u64, per_ip: u64, target: &SocketAddr) -> Option<IpAddr> {
    if !target.is_ipv4() {
        return None;
    }
    let i = (n / per_ip.max(1)) % SOURCE_ADDRESSES;
    // 250 per /24, skipping .0 and the top of each block.
    let offset = (i / 250) * 256 + i % 250 + 1;
    Some(IpAddr::V4(Ipv4Addr::from(
        u32::from(SOURCE_BASE) + offset as u32,
    )))
}

/// Why a connection failed, as counted in the results.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("tcp connect: {0}")]
    Connect(std::io::Error),
    #[error("tls: {0}")]
    Tls(std::io::Error),
    #[error("upgrade answered {0}")]
    Refused(u16),
    #[error("upgrade: {0}")]
    Upgrade(std::io::Error),
    #[error("{0} timed out")]
    Timeout(&'static str),
}

impl ConnError {
    pub fn kind(&self) -> String {
        match self {
            ConnError::Connect(e) => format!("connect:{:?}", e.kind()),
            ConnError::Tls(_) => "tls".into(),
            ConnError::Refused(status) => format!("http:{status}"),
            ConnError::Upgrade(_) => "upgrade".into(),
            ConnError::Timeout(phase) => format!("timeout:{phase}"),
        }
    }
}

/// One virtual client's TLS sessions. Like a browser, a client keeps the tickets the
/// server gave it: its reconnects resume (no certificate signed or checked), while a new
/// client's first handshake is full. (A cache shared by all of an agent's clients would
/// resume nearly every handshake from its last few tickets.)
#[derive(Default)]
pub struct TlsSessions(Option<Arc<rustls::ClientConfig>>);

impl TlsSessions {
    fn connector(&mut self, shared: &Arc<rustls::ClientConfig>) -> TlsConnector {
        let own = self.0.get_or_insert_with(|| {
            let mut config = (**shared).clone();
            config.resumption = rustls::client::Resumption::in_memory_sessions(1);
            Arc::new(config)
        });
        TlsConnector::from(own.clone())
    }
}

/// Dials and upgrades, over TLS with the client's own `sessions`.
pub async fn connect(
    target: &Target,
    source: Option<IpAddr>,
    token: &str,
    sessions: &mut TlsSessions,
) -> Result<Ws, ConnError> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(ConnError::Connect)?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(ConnError::Connect)?;
    }
    let tcp = timeout(PHASE_TIMEOUT, socket.connect(target.addr))
        .await
        .map_err(|_| ConnError::Timeout("tcp connect"))?
        .map_err(ConnError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let mut stream: Stream = match &target.tls {
        Some((config, name)) => Either::Left(
            timeout(
                PHASE_TIMEOUT,
                sessions.connector(config).connect(name.clone(), tcp),
            )
            .await
            .map_err(|_| ConnError::Timeout("tls"))?
            .map_err(ConnError::Tls)?,
        ),
        None => Either::Right(tcp),
    };
    timeout(PHASE_TIMEOUT, upgrade(&mut stream, target, token))
        .await
        .map_err(|_| ConnError::Timeout("upgrade"))??;
    let mut ws = WebSocket::after_handshake(stream, Role::Client);
    ws.set_max_message_size(MAX_MESSAGE_BYTES);
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    Ok(ws)
}

/// Writes the upgrade request and reads the answer's head byte by byte, so that no
/// byte of the first WebSocket frame (the `welcome`) is read ahead and lost.
async fn upgrade(stream: &mut Stream, target: &Target, token: &str) -> Result<(), ConnError> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n",
        target.path,
        target.authority,
        fastwebsockets::handshake::generate_key(),
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(ConnError::Upgrade)?;
    stream.flush().await.map_err(ConnError::Upgrade)?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD_BYTES {
            return Err(ConnError::Upgrade(std::io::Error::other("answer too long")));
        }
        let n = stream.read(&mut byte).await.map_err(ConnError::Upgrade)?;
        if n == 0 {
            return Err(ConnError::Upgrade(std::io::ErrorKind::UnexpectedEof.into()));
        }
        head.push(byte[0]);
    }
    // "HTTP/1.1 101 Switching Protocols"
    let status = head
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    if status != 101 {
        return Err(ConnError::Refused(status));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_over_loopback() {
        let target: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let a = source_ip(0, 50, &target).unwrap();
        assert_eq!(a, source_ip(49, 50, &target).unwrap());
        assert_ne!(a, source_ip(50, 50, &target).unwrap());
        for n in [0, 12_499, 12_500, 1_000_000, u64::MAX / 2] {
            match source_ip(n, 50, &target).unwrap() {
                IpAddr::V4(ip) => {
                    assert!(ip.is_loopback());
                    assert!(ip.octets()[3] >= 1 && ip.octets()[3] <= 250);
                }
                IpAddr::V6(_) => panic!("v4 target"),
            }
        }
        assert!(source_ip(0, 50, &"[::1]:1".parse().unwrap()).is_none());
    }
}
