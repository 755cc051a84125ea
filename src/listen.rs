//! The public listeners: bound with an accept backlog of our choosing. tokio's `bind`
//! asks for 128, too few for a reconnect storm of thousands of clients at once; by
//! default we ask for as many as the kernel gives (it caps the backlog at
//! `net.core.somaxconn`; docs/TUNING.md), as Go's and Envoy's listeners do.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The accept backlog unless `listen_backlog` says otherwise: its largest value, so that
/// `net.core.somaxconn` decides (the kernel takes the smaller). A storm of 10,000 reconnects overflowed a
/// backlog of 1024 27,664 times (each overflow a client's 1 s SYN retry); BENCHMARKS.md.
pub const DEFAULT_BACKLOG: u32 = 65535;

/// A listener on `addr` with room for `backlog` connections waiting to be accepted.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As tokio's own `bind` does: a restarted server can take its port back at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_and_accepts() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 4096).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_server, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(bind(addr, 16).is_err(), "the port is taken");
    }
}
