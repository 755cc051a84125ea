//! A loopback TCP proxy whose connections a test can cut at once: the client sees its
//! socket die with no close frame, as on a network failure.
//!
//! [`Proxy::hold`] cuts every connection and then holds new ones (accepted, not yet
//! forwarded) until [`Proxy::release`], so that every client that reconnects meanwhile
//! reaches the server at the same moment: a reconnect storm. With
//! [`ProxyOptions::spread_sources`] each forwarded connection leaves from its own
//! loopback address (`127.a.0.c`), so that a server limiting upgrades per IP sees many
//! clients, as it would in production, instead of one.
//!
//! [`Proxy::hold_replies`] stops forwarding what servers send (it waits in the
//! sockets) until [`Proxy::pass_replies`]; a [`Proxy::cut`] meanwhile loses it, as when
//! a connection dies with the server's answer in flight.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How a [`Proxy`] forwards.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyOptions {
    /// Connect upstream from a different loopback address per connection.
    pub spread_sources: bool,
}

pub struct Proxy {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// `true` while new connections are forwarded; `false` while they are held.
    open: watch::Sender<bool>,
    /// `true` while servers' bytes are forwarded to clients.
    replies: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        Proxy::start_with(upstream, ProxyOptions::default()).await
    }

    pub async fn start_with(upstream: SocketAddr, options: ProxyOptions) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (open, gate) = watch::channel(true);
        let (replies, replies_gate) = watch::channel(true);
        let tracked = conns.clone();
        let counter = Arc::new(AtomicU32::new(0));
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut gate = gate.clone();
                let replies = replies_gate.clone();
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let task = tokio::spawn(async move {
                    // Held until released; a dropped proxy ends the wait too.
                    if gate.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    let source = options.spread_sources.then(|| source_addr(n));
                    if let Ok(server) = connect(upstream, source).await {
                        pipe(client, server, replies).await;
                    }
                });
                let mut conns = tracked.lock().unwrap_or_else(|e| e.into_inner());
                conns.retain(|task| !task.is_finished());
                conns.push(task);
            }
        });
        Proxy {
            addr,
            conns,
            open,
            replies,
            accept,
        }
    }

    /// Cuts every connection open now (held ones too); new ones go through, unless
    /// the proxy holds them.
    pub fn cut(&self) {
        for task in self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    /// Cuts every connection and holds new ones until [`release`](Self::release).
    pub fn hold(&self) {
        self.open.send_replace(false);
        self.cut();
    }

    /// Forwards the held connections, all at once, and new ones from now on.
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    /// Stops forwarding servers' bytes to clients (on every connection, new ones
    /// too) until [`pass_replies`](Self::pass_replies).
    pub fn hold_replies(&self) {
        self.replies.send_replace(false);
    }

    pub fn pass_replies(&self) {
        self.replies.send_replace(true);
    }

    /// Connections accepted and not yet ended (held ones included).
    pub fn connections(&self) -> usize {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|task| !task.is_finished());
        conns.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Copies both ways until both are done, each direction shut down after its EOF (as
/// `copy_bidirectional`); the server's bytes only while `replies` is `true`.
async fn pipe(client: TcpStream, server: TcpStream, mut replies: watch::Receiver<bool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Held bytes wait here; a cut loses them.
            if replies.wait_for(|pass| *pass).await.is_err() {
                break;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, down);
}

/// The `n`th source address: `127.a.0.c` with `a` in 1..=254 and `c` in 1..=254.
fn source_addr(n: u32) -> IpAddr {
    let c = (n % 254) as u8 + 1;
    let a = (n / 254 % 254) as u8 + 1;
    IpAddr::V4(Ipv4Addr::new(127, a, 0, c))
}

/// Connects to `upstream`, from `source` when given (falling back to the default
/// source where binding it fails).
async fn connect(upstream: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    if let Some(source) = source {
        let socket = TcpSocket::new_v4()?;
        if socket.bind(SocketAddr::new(source, 0)).is_ok() {
            return socket.connect(upstream).await;
        }
    }
    TcpStream::connect(upstream).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An echo server that answers with the peer's address.
    async fn who_is_it() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, peer)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut byte = [0u8; 1];
                    while conn.read_exact(&mut byte).await.is_ok() {
                        let _ = conn.write_all(format!("{}\n", peer.ip()).as_bytes()).await;
                    }
                });
            }
        });
        addr
    }

    async fn ask(conn: &mut TcpStream) -> std::io::Result<String> {
        conn.write_all(b"?").await?;
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            let n = conn.read(&mut byte).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if byte[0] == b'\n' {
                return Ok(String::from_utf8(out).unwrap());
            }
            out.push(byte[0]);
        }
    }

    #[tokio::test]
    async fn sources_spread_and_held_connections_pass_on_release() {
        let server = who_is_it().await;
        let proxy = Proxy::start_with(
            server,
            ProxyOptions {
                spread_sources: true,
            },
        )
        .await;
        let mut a = TcpStream::connect(proxy.addr).await.unwrap();
        let mut b = TcpStream::connect(proxy.addr).await.unwrap();
        let (from_a, from_b) = (ask(&mut a).await.unwrap(), ask(&mut b).await.unwrap());
        assert!(
            from_a.starts_with("127.") && from_a != from_b,
            "{from_a} {from_b}"
        );

        proxy.hold();
        assert!(ask(&mut a).await.is_err(), "held: open connections are cut");
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        c.write_all(b"?").await.unwrap();
        let mut byte = [0u8; 1];
        let held = tokio::time::timeout(std::time::Duration::from_millis(200), c.read(&mut byte));
        assert!(held.await.is_err(), "a new connection waits while held");
        assert_eq!(proxy.connections(), 1);
        proxy.release();
        // The `?` sent while held is answered now.
        let mut line = Vec::new();
        while c.read_exact(&mut byte).await.is_ok() && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        assert!(String::from_utf8(line).unwrap().starts_with("127."));

        // Replies held: the question gets through, the answer waits, a cut loses it.
        proxy.hold_replies();
        c.write_all(b"?").await.unwrap();
        let held = tokio::time::timeout(std::time::Duration::from_millis(200), c.read(&mut byte));
        assert!(held.await.is_err(), "the answer is held");
        proxy.cut();
        proxy.pass_replies();
        assert!(ask(&mut c).await.is_err(), "cut: the held answer is lost");
        let mut d = TcpStream::connect(proxy.addr).await.unwrap();
        assert!(ask(&mut d).await.unwrap().starts_with("127."));
    }
}
