//! Copies bytes both ways between a client and its worker without a buffer per
//! connection while it is idle.
//!
//! `tokio::io::copy_bidirectional` owns a buffer per direction for the life of the
//! splice (8 KiB a connection with 4 KiB buffers), though a spliced WebSocket is idle
//! almost all the time. Here reads go into a buffer of the thread that polls, and the
//! bytes are written on at once; only what the other side does not take right away
//! (backpressure) is kept, in a buffer of this connection that is freed once written.
//! Semantics are those of `copy_bidirectional`: an EOF on one side shuts down writing
//! on the other, the other direction goes on, and the first error ends both.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read at once: one TLS record's worth of plaintext.
const READ_BYTES: usize = 16 * 1024;

thread_local! {
    /// Lent to one read at a time; whatever is left in it after the read is copied out.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BYTES].into_boxed_slice());
}

/// Two streams copied into each other: a plain struct polled by its owner, so that a
/// splice's task holds its streams and their two directions once, and nothing else.
pub(crate) struct Splice<A, B> {
    a: A,
    b: B,
    a_to_b: Direction,
    b_to_a: Direction,
}

impl<A, B> Splice<A, B>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    pub(crate) fn new(a: A, b: B) -> Splice<A, B> {
        Splice {
            a,
            b,
            a_to_b: Direction::default(),
            b_to_a: Direction::default(),
        }
    }

    /// Copies until both directions have seen EOF, then gives the bytes copied from `a`
    /// to `b` and from `b` to `a`.
    pub(crate) fn poll_copy(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(u64, u64)>> {
        let up = self.a_to_b.poll(cx, &mut self.a, &mut self.b)?;
        let down = self.b_to_a.poll(cx, &mut self.b, &mut self.a)?;
        match (up, down) {
            (Poll::Ready(()), Poll::Ready(())) => {
                Poll::Ready(Ok((self.a_to_b.copied, self.b_to_a.copied)))
            }
            _ => Poll::Pending,
        }
    }
}

#[derive(Default)]
struct Direction {
    /// Read but not yet taken by the writer; empty (unallocated) unless it pushes back.
    held: Vec<u8>,
    /// How much of `held` is written.
    written: usize,
    /// Something was written since the last flush (a TLS writer buffers records).
    unflushed: bool,
    state: State,
    copied: u64,
}

#[derive(Default, PartialEq)]
enum State {
    #[default]
    Copying,
    /// The reader reached EOF: shut the writer down.
    ShuttingDown,
    Done,
}

impl Direction {
    fn poll<R, W>(&mut self, cx: &mut Context<'_>, from: &mut R, to: &mut W) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        loop {
            match self.state {
                State::Done => return Poll::Ready(Ok(())),
                State::ShuttingDown => {
                    ready!(Pin::new(&mut *to).poll_shutdown(cx))?;
                    self.state = State::Done;
                }
                State::Copying => {
                    ready!(self.write_held(cx, to))?;
                    match self.read_and_pass_on(cx, from, to) {
                        Poll::Ready(Ok(true)) => {}
                        Poll::Ready(Ok(false)) => self.state = State::ShuttingDown,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {
                            if self.unflushed {
                                ready!(Pin::new(&mut *to).poll_flush(cx))?;
                                self.unflushed = false;
                            }
                            return Poll::Pending;
                        }
                    }
                }
            }
        }
    }

    /// Writes what the writer pushed back before; frees it once all is written.
    fn write_held<W>(&mut self, cx: &mut Context<'_>, to: &mut W) -> Poll<io::Result<()>>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        while self.written < self.held.len() {
            let n = ready!(Pin::new(&mut *to).poll_write(cx, &self.held[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
            self.copied += n as u64;
            self.unflushed = true;
        }
        if !self.held.is_empty() {
            self.held = Vec::new();
            self.written = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads into the thread's buffer and writes on at once; keeps what the writer does
    /// not take. `Ok(false)` is EOF.
    fn read_and_pass_on<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
    ) -> Poll<io::Result<bool>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut buf = ReadBuf::new(scratch);
            ready!(Pin::new(&mut *from).poll_read(cx, &mut buf))?;
            let read = buf.filled();
            if read.is_empty() {
                return Poll::Ready(Ok(false));
            }
            let mut written = 0;
            while written < read.len() {
                match Pin::new(&mut *to).poll_write(cx, &read[written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    // The writer pushes back: keep the rest; `write_held` goes on with it
                    // when the writer wakes this task.
                    Poll::Pending => break,
                }
            }
            self.copied += written as u64;
            self.unflushed |= written > 0;
            if written < read.len() {
                self.held = read[written..].to_vec();
                self.written = 0;
            }
            Poll::Ready(Ok(true))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn copy_both_ways<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
    where
        A: AsyncRead + AsyncWrite + Unpin,
        B: AsyncRead + AsyncWrite + Unpin,
    {
        let mut splice = Splice::new(a, b);
        poll_fn(|cx| splice.poll_copy(cx)).await
    }

    #[tokio::test]
    async fn copies_both_ways_and_passes_eof_on() {
        let (mut client, mut client_side) = duplex(64);
        let (mut worker_side, mut worker) = duplex(64);
        let splice =
            tokio::spawn(async move { copy_both_ways(&mut client_side, &mut worker_side).await });

        client.write_all(b"hello worker").await.unwrap();
        let mut got = [0u8; 12];
        worker.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello worker");

        worker.write_all(b"hello client").await.unwrap();
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello client");

        // Half-close: the client's EOF reaches the worker, the worker can still answer.
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        worker.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        worker.write_all(b"bye").await.unwrap();
        worker.shutdown().await.unwrap();
        let mut tail = Vec::new();
        client.read_to_end(&mut tail).await.unwrap();
        assert_eq!(tail, b"bye");

        assert_eq!(splice.await.unwrap().unwrap(), (12, 15));
    }

    #[tokio::test]
    async fn a_slow_reader_gets_everything_in_order() {
        // A 16-byte pipe to the worker pushes back on every write.
        let (mut client, mut client_side) = duplex(1 << 20);
        let (mut worker_side, mut worker) = duplex(16);
        let splice =
            tokio::spawn(async move { copy_both_ways(&mut client_side, &mut worker_side).await });
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        worker.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "bytes arrived out of order or changed");
        drop(worker);
        drop(client);
        let (up, _) = splice.await.unwrap().unwrap();
        assert_eq!(up, sent.len() as u64);
    }

    #[tokio::test]
    async fn an_idle_splice_holds_no_buffer() {
        let (mut client, mut client_side) = duplex(64);
        let (mut worker_side, mut worker) = duplex(64);
        let mut up = Direction::default();
        client.write_all(b"x").await.unwrap();
        let polled =
            poll_fn(|cx| Poll::Ready(up.poll(cx, &mut client_side, &mut worker_side))).await;
        assert!(polled.is_pending());
        assert_eq!(up.held.capacity(), 0);
        let mut got = [0u8; 1];
        worker.read_exact(&mut got).await.unwrap();
        assert_eq!(up.copied, 1);
    }
}
