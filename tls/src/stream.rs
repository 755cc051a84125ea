//! The TLS stream: `AsyncRead` and `AsyncWrite` over [`Records`], reading ciphertext into
//! and sealing it in the polling thread's scratch buffer ([`crate::scratch`]).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use rustls::server::UnbufferedServerConnection;
use rustls::HandshakeKind;

use crate::records::{Connection, Progress, Records, Seal};
use crate::scratch;

/// The most ciphertext one read takes from the socket: a largest TLS 1.3 record and
/// its header fit.
const READ_SIZE: usize = 16 * 1024 + 512;
/// The most plaintext one write seals: four full records, written with one call (as
/// much as `tokio-rustls` buffers by default). It is also the most ciphertext a
/// connection keeps while its socket pushes back.
const MAX_SEAL: usize = 64 * 1024;

/// Scratch room for sealing `len` bytes: each record (16 KiB of plaintext at most)
/// adds a header, a nonce and a tag, well under 64 bytes.
fn sealed_room(len: usize) -> usize {
    len + (len / (16 * 1024) + 1) * 64
}

/// A TLS connection over `IO`, its handshake done: the server side ([`crate::accept`])
/// or the client side ([`crate::connect`]).
///
/// While idle it holds no buffer: ciphertext is read into the polling thread's scratch
/// buffer and decrypted there, and sealed there before it is written. Bytes are kept
/// per connection only while they wait: a record that arrived in part, plaintext the
/// reader has not taken, ciphertext the socket has not taken. A write is not sealed
/// while ciphertext waits, so that last is at most one write's ([`MAX_SEAL`]).
pub struct TlsStream<IO, C = UnbufferedServerConnection> {
    io: IO,
    records: Records<C>,
    /// The peer's ciphertext that rustls is not done with: a partial record, or a
    /// handshake message spread over records. rustls bounds both (a record is at most
    /// about 18 KiB, a handshake message 64 KiB), so this does not grow past that.
    incoming: Vec<u8>,
}

/// What a read from the socket came to.
enum Filled {
    /// The socket is at its end.
    Eof,
    Read(Progress),
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Connection> TlsStream<IO, C> {
    pub(crate) fn new(io: IO, conn: C) -> TlsStream<IO, C> {
        TlsStream {
            io,
            records: Records::new(conn),
            incoming: Vec::new(),
        }
    }

    /// Runs the handshake to its end. rustls may have to speak first (a client's hello),
    /// so it is asked before anything is read.
    pub(crate) async fn handshake(&mut self) -> io::Result<()> {
        let (consumed, progress) = self.records.process(&mut self.incoming, Seal::Nothing);
        self.incoming.drain(..consumed);
        let mut open = matches!(progress.map_err(tls_error)?, Progress::Open { .. });
        std::future::poll_fn(|cx| loop {
            // What rustls queued (our flight) goes out before we wait for the answer.
            ready!(self.poll_send_queued(cx))?;
            if open {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.poll_fill(cx))? {
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
        .await
    }

    /// Whether the handshake resumed an earlier session (a TLS 1.3 ticket or a TLS 1.2
    /// session id): no certificate was signed or checked for it.
    pub fn resumed(&self) -> bool {
        self.records.connection().handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// Bytes this connection holds in buffers of its own (not rustls' state): zero
    /// while it is idle.
    pub fn buffered(&self) -> usize {
        self.incoming.capacity()
            + self.records.plaintext.capacity()
            + self.records.outgoing.capacity()
    }

    /// Reads what the socket has, behind the partial record kept, and runs rustls over
    /// it. What rustls is not done with is kept; what it queued to send waits in
    /// `outgoing`.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Filled>> {
        let kept = self.incoming.len();
        let (io, records, incoming) = (&mut self.io, &mut self.records, &mut self.incoming);
        let processed = scratch::with(kept + READ_SIZE, |buf| -> Poll<io::Result<_>> {
            buf[..kept].copy_from_slice(incoming);
            let mut read = ReadBuf::new(&mut buf[kept..]);
            ready!(Pin::new(&mut *io).poll_read(cx, &mut read))?;
            let got = read.filled().len();
            if got == 0 {
                return Poll::Ready(Ok(None));
            }
            let end = kept + got;
            let (consumed, progress) = records.process(&mut buf[..end], Seal::Nothing);
            *incoming = buf[consumed..end].to_vec();
            Poll::Ready(Ok(Some(progress)))
        });
        match ready!(processed)? {
            None => Poll::Ready(Ok(Filled::Eof)),
            Some(Ok(progress)) => Poll::Ready(Ok(Filled::Read(progress))),
            Some(Err(err)) => {
                // The alert rustls queued goes out if the socket takes it now.
                let _ = self.poll_send_queued(cx);
                Poll::Ready(Err(tls_error(err)))
            }
        }
    }

    /// Writes the ciphertext waiting in `outgoing`; ready once none is left.
    fn poll_send_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outgoing = &mut self.records.outgoing;
        if outgoing.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let written = write_now(&mut self.io, cx, outgoing)?;
        outgoing.drain(..written);
        if outgoing.is_empty() {
            *outgoing = Vec::new();
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    /// Hands out plaintext already decrypted.
    fn take_plaintext(&mut self, buf: &mut ReadBuf<'_>) {
        let plaintext = &mut self.records.plaintext;
        let n = plaintext.len().min(buf.remaining());
        buf.put_slice(&plaintext[..n]);
        plaintext.drain(..n);
        if plaintext.is_empty() {
            *plaintext = Vec::new();
        }
    }
}

/// Writes as much of `bytes` as the socket takes now; how much that was. A socket that
/// would block has registered the task to be woken.
fn write_now<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    cx: &mut Context<'_>,
    bytes: &[u8],
) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match Pin::new(&mut *io).poll_write(cx, &bytes[written..]) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => written += n,
            Poll::Ready(Err(err)) => return Err(err),
            Poll::Pending => break,
        }
    }
    Ok(written)
}

/// rustls' errors travel as `InvalidData`, as with `tokio-rustls`, so callers can tell
/// a refused certificate from a reset.
pub(crate) fn tls_error(err: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Connection> AsyncRead for TlsStream<IO, C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.records.plaintext.is_empty() {
                this.take_plaintext(buf);
                return Poll::Ready(Ok(()));
            }
            if this.records.peer_closed || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // What rustls queued while reading (the answer to a key update, an alert)
            // goes out as the socket takes it; what it does not take waits for a write.
            if let Poll::Ready(Err(err)) = this.poll_send_queued(cx) {
                return Poll::Ready(Err(err));
            }
            match ready!(this.poll_fill(cx))? {
                Filled::Read(_) => continue,
                Filled::Eof => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed the connection without sending TLS close_notify",
                    )))
                }
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Connection> TlsStream<IO, C> {
    /// Seals `data` (at most [`MAX_SEAL`]) into `buf` and writes what the socket takes;
    /// the rest waits in `outgoing`.
    fn seal(&mut self, cx: &mut Context<'_>, data: &[u8], buf: &mut [u8]) -> io::Result<usize> {
        let (io, records, incoming) = (&mut self.io, &mut self.records, &mut self.incoming);
        let (consumed, progress) = records.process(incoming, Seal::Data(data, &mut *buf));
        incoming.drain(..consumed);
        match progress.map_err(tls_error)? {
            Progress::Open { sealed } => {
                let written = write_now(io, cx, &buf[..sealed])?;
                records.outgoing.extend_from_slice(&buf[written..sealed]);
                Ok(data.len())
            }
            Progress::Handshaking => Err(io::Error::other("TLS handshake not complete")),
            Progress::Closed => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Whether a write may go ahead: nothing waits to be sent, nothing was closed.
    fn poll_may_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing new is sealed while ciphertext waits: that is the backpressure.
        ready!(self.poll_send_queued(cx))?;
        if self.records.closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS close_notify already sent",
            )));
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Connection> AsyncWrite for TlsStream<IO, C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_may_write(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let data = &data[..data.len().min(MAX_SEAL)];
        let result = scratch::with(sealed_room(data.len()), |buf| this.seal(cx, data, buf));
        Poll::Ready(result)
    }

    /// A frame's header and payload go out as one record in one write, not two.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_may_write(cx))?;
        let take = bufs.iter().map(|b| b.len()).sum::<usize>().min(MAX_SEAL);
        if take == 0 {
            return Poll::Ready(Ok(0));
        }
        let result = scratch::with(take + sealed_room(take), |buf| {
            let (plain, sealed) = buf.split_at_mut(take);
            let mut at = 0;
            for slice in bufs {
                let n = slice.len().min(take - at);
                plain[at..at + n].copy_from_slice(&slice[..n]);
                at += n;
            }
            this.seal(cx, plain, sealed)
        });
        Poll::Ready(result)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_queued(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.records.closed {
            let (consumed, progress) = this.records.process(&mut this.incoming, Seal::CloseNotify);
            this.incoming.drain(..consumed);
            // A connection rustls has failed cannot say goodbye; the socket still closes.
            this.records.closed = true;
            drop(progress);
        }
        ready!(this.poll_send_queued(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
