//! The server side of the handshake.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::task::{ready, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::records::{Progress, Records};
use crate::stream::{tls_error, Filled, TlsStream};

/// Runs the server side of a TLS handshake over `io`. rustls' errors (a refused client
/// certificate, say) come as `InvalidData` with the [`rustls::Error`] inside. Not
/// bounded in time: the caller decides how long a handshake may take.
pub async fn accept<IO>(config: Arc<ServerConfig>, io: IO) -> io::Result<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    let mut stream = TlsStream::new(io, Records::new(conn));
    let mut open = false;
    poll_fn(|cx| loop {
        // What rustls queued (our flight of the handshake) goes out before we wait for
        // the peer's answer to it.
        ready!(stream.poll_send_queued(cx))?;
        if open {
            return Poll::Ready(Ok(()));
        }
        match ready!(stream.poll_fill(cx))? {
            Filled::Read(Progress::Handshaking) => {}
            Filled::Read(Progress::Open { .. }) => open = true,
            Filled::Read(Progress::Closed) | Filled::Eof => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the connection during the TLS handshake",
                )))
            }
        }
    })
    .await?;
    Ok(stream)
}
