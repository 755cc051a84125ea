//! One WebSocket connection, low level: what protocol tests and the bench drive.
//!
//! [`Connection::connect`] dials and upgrades (`handshake`). The socket is then split:
//! a reader task reads whole messages and hands them to a bounded channel, a writer task
//! owns the write half and drains a bounded outbox. The reader passes the frames
//! fastwebsockets obliges it to send (pongs, the close echo) to that same outbox, so
//! only the writer ever writes. [`Connection::recv`] reads the channel, so it is
//! cancel-safe and can sit in a `select!` or under a timeout; it splits each text frame
//! into its newline-delimited pieces and returns them one at a time.

mod handshake;
mod options;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError};
use http::HeaderMap;
use switchyard_protocol::frame::split_pieces;
use switchyard_protocol::{ClientFrame, ServerFrame};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, trace};

pub(crate) use handshake::{append_query, tls_config, Target};
pub use handshake::{ConnectError, Phase};
pub use options::{
    ConnectOptions, TlsTrust, TokenVia, DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_UPGRADE_TIMEOUT,
};

/// Messages read ahead of the caller; when full, the reader stops reading the socket.
const INBOX_CAPACITY: usize = 64;
/// Frames queued for the writer; when full, senders wait.
const OUTBOX_CAPACITY: usize = 64;

/// One piece of server output, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Frame(ServerFrame<'static>),
    /// The server's close frame; `code` is `None` when it carried no code.
    Closed {
        code: Option<u16>,
        reason: String,
    },
}

/// One piece of server output, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawIncoming {
    /// One newline-delimited piece of a text frame, byte for byte.
    Piece(Bytes),
    Closed {
        code: Option<u16>,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    #[error("nothing arrived in time")]
    Timeout,
    /// The connection ended earlier (its close was already returned, or it was lost).
    #[error("connection is closed")]
    Closed,
    /// The socket failed or ended without a close frame (EOF, reset, bad framing).
    #[error("connection lost: {0}")]
    Lost(#[source] WebSocketError),
    #[error("server sent a binary frame")]
    UnexpectedBinary(Bytes),
    #[error("server piece is not a frame: {error}")]
    BadPiece {
        piece: Bytes,
        #[source]
        error: serde_json::Error,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("connection is closed")]
pub struct SendError;

/// What the reader task hands over.
enum ReadItem {
    Text(Bytes),
    Binary(Bytes),
    Close { code: Option<u16>, reason: String },
    Failed(WebSocketError),
}

type Socket = hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>;

/// One WebSocket connection to a Switchyard server.
pub struct Connection {
    inbox: mpsc::Receiver<ReadItem>,
    outbox: mpsc::Sender<Frame<'static>>,
    pending: VecDeque<Bytes>,
    last_piece: Bytes,
    headers: HeaderMap,
    subprotocol: Option<String>,
    close_timeout: Duration,
    /// Set once a close frame was queued, so the reader does not echo the server's.
    close_sent: Arc<AtomicBool>,
    /// Stops the reader and writer when the connection is dropped.
    _stop: DropGuard,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("subprotocol", &self.subprotocol)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Dials, upgrades and starts the reader and writer tasks.
    pub async fn connect(opts: &ConnectOptions) -> Result<Connection, ConnectError> {
        let target = Target::parse(&opts.url)?;
        let key = fastwebsockets::handshake::generate_key();
        let (request, offered) = handshake::build_request(opts, &target, &key)?;
        let io = handshake::dial(opts, &target).await?;
        let upgrade = tokio::time::timeout(
            opts.upgrade_timeout,
            handshake::upgrade(io, request, &key, &offered),
        )
        .await
        .map_err(|_| ConnectError::Timeout(Phase::Upgrade))??;
        let mut ws = upgrade.ws;
        ws.set_max_message_size(opts.max_message_bytes);
        ws.set_auto_pong(true);
        ws.set_auto_close(true);
        let (read, write) = ws.split(tokio::io::split);
        let stop = CancellationToken::new();
        let (out_tx, out_rx) = mpsc::channel(OUTBOX_CAPACITY);
        let (in_tx, in_rx) = mpsc::channel(INBOX_CAPACITY);
        let close_sent = Arc::new(AtomicBool::new(false));
        tokio::spawn(write_loop(write, out_rx, stop.clone()));
        tokio::spawn(read_loop(
            FragmentCollectorRead::new(read),
            in_tx,
            out_tx.clone(),
            close_sent.clone(),
            stop.clone(),
        ));
        Ok(Connection {
            inbox: in_rx,
            outbox: out_tx,
            pending: VecDeque::new(),
            last_piece: Bytes::new(),
            headers: upgrade.headers,
            subprotocol: upgrade.subprotocol,
            close_timeout: opts.close_timeout,
            close_sent,
            _stop: stop.drop_guard(),
        })
    }

    /// The headers of the `101` answer.
    pub fn response_headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The subprotocol the server chose, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    pub async fn send_frame(&self, frame: &ClientFrame) -> Result<(), SendError> {
        self.send_text(&frame.encode()).await
    }

    /// Sends any bytes as one text frame, valid UTF-8 or not (for bad-frame tests).
    pub async fn send_text(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.send_raw_frame(Frame::text(Payload::Owned(bytes.to_vec())))
            .await
    }

    pub async fn send_binary(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.send_raw_frame(Frame::binary(Payload::Owned(bytes.to_vec())))
            .await
    }

    /// Sends a frame as built (a ping, a fragment, a close with any code); it is masked
    /// on the way out. Returns once the writer has it queued.
    pub async fn send_raw_frame(&self, frame: Frame<'static>) -> Result<(), SendError> {
        if frame.opcode == OpCode::Close {
            self.close_sent.store(true, Ordering::Relaxed);
        }
        self.outbox.send(frame).await.map_err(|_| SendError)
    }

    /// The next piece, parsed. A piece that is not a server frame is an error carrying
    /// its bytes; the pieces after it are still returned by later calls.
    pub async fn recv(&mut self) -> Result<Incoming, RecvError> {
        parse(self.recv_raw().await?)
    }

    /// What has already been read from the socket (and answered at the WebSocket
    /// level: its pings were ponged, which tells the server it was read), without
    /// waiting; `None` when nothing is there yet.
    pub fn try_recv(&mut self) -> Option<Result<Incoming, RecvError>> {
        loop {
            if let Some(piece) = self.next_piece() {
                return Some(parse(piece));
            }
            let item = self.inbox.try_recv().ok()?;
            if let Some(end) = self.take(item) {
                return Some(end.and_then(parse));
            }
        }
    }

    /// [`Connection::recv`] with a deadline; [`RecvError::Timeout`] when it passes.
    pub async fn recv_timeout(&mut self, wait: Duration) -> Result<Incoming, RecvError> {
        tokio::time::timeout(wait, self.recv())
            .await
            .map_err(|_| RecvError::Timeout)?
    }

    /// The next piece as the server sent it, for byte-exact checks of `data`.
    pub async fn recv_raw(&mut self) -> Result<RawIncoming, RecvError> {
        loop {
            if let Some(piece) = self.next_piece() {
                return Ok(piece);
            }
            // Cancel-safe: nothing is taken from the channel unless it is handled here,
            // without another await.
            let Some(item) = self.inbox.recv().await else {
                return Err(RecvError::Closed);
            };
            if let Some(end) = self.take(item) {
                return end;
            }
        }
    }

    /// The next piece of a text frame already split, if any.
    fn next_piece(&mut self) -> Option<RawIncoming> {
        let piece = self.pending.pop_front()?;
        self.last_piece = piece.clone();
        Some(RawIncoming::Piece(piece))
    }

    /// Splits a text frame into `pending`; anything else is what the reader returns.
    fn take(&mut self, item: ReadItem) -> Option<Result<RawIncoming, RecvError>> {
        match item {
            ReadItem::Text(payload) => {
                // Slices of one shared buffer, no copy per piece.
                self.pending
                    .extend(split_pieces(&payload).map(|piece| payload.slice_ref(piece)));
                None
            }
            ReadItem::Binary(payload) => Some(Err(RecvError::UnexpectedBinary(payload))),
            ReadItem::Close { code, reason } => Some(Ok(RawIncoming::Closed { code, reason })),
            ReadItem::Failed(error) => Some(Err(RecvError::Lost(error))),
        }
    }

    /// [`Connection::recv_raw`] with a deadline.
    pub async fn recv_raw_timeout(&mut self, wait: Duration) -> Result<RawIncoming, RecvError> {
        tokio::time::timeout(wait, self.recv_raw())
            .await
            .map_err(|_| RecvError::Timeout)?
    }

    /// The bytes of the piece most recently returned by a `recv`.
    pub fn last_piece(&self) -> &[u8] {
        &self.last_piece
    }

    /// Sends a close frame with `code` and waits (up to the close timeout) for the
    /// server's close, skipping whatever arrives before it. Returns the server's code.
    pub async fn close(mut self, code: u16) -> Result<Option<u16>, RecvError> {
        self.send_raw_frame(Frame::close(code, b""))
            .await
            .map_err(|_| RecvError::Closed)?;
        let deadline = tokio::time::Instant::now() + self.close_timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.recv_raw()).await {
                Err(_) => return Err(RecvError::Timeout),
                Ok(Ok(RawIncoming::Closed { code, .. })) => return Ok(code),
                Ok(Ok(RawIncoming::Piece(_))) | Ok(Err(RecvError::UnexpectedBinary(_))) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

/// Owns the write half: writes each queued frame, flushing when the queue runs dry
/// (TLS buffers). Ends when every sender is gone, on a write error, or on stop.
async fn write_loop(
    mut write: fastwebsockets::WebSocketWrite<tokio::io::WriteHalf<Socket>>,
    mut outbox: mpsc::Receiver<Frame<'static>>,
    stop: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => return,
            frame = outbox.recv() => match frame {
                Some(frame) => frame,
                None => return,
            },
        };
        let result = async {
            write.write_frame(frame).await?;
            if outbox.is_empty() {
                write.flush().await?;
            }
            Ok::<_, WebSocketError>(())
        }
        .await;
        if let Err(error) = result {
            debug!(%error, "websocket write failed");
            return;
        }
    }
}

/// Reads whole messages and hands them over; ends after a close frame or an error.
async fn read_loop(
    mut read: FragmentCollectorRead<tokio::io::ReadHalf<Socket>>,
    inbox: mpsc::Sender<ReadItem>,
    outbox: mpsc::Sender<Frame<'static>>,
    close_sent: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut obligated = |frame: Frame<'static>| {
        let outbox = outbox.clone();
        // The server's close answering ours needs no answer of its own.
        let skip = frame.opcode == OpCode::Close && close_sent.load(Ordering::Relaxed);
        async move {
            if skip {
                return Ok(());
            }
            outbox
                .send(frame)
                .await
                .map_err(|_| std::io::Error::other("writer is gone"))
        }
    };
    loop {
        // Dropping `read_frame` mid-frame is fine only because the socket is then
        // abandoned: stop means the connection was dropped.
        let frame = tokio::select! {
            _ = stop.cancelled() => return,
            frame = read.read_frame(&mut obligated) => frame,
        };
        let item = match frame {
            Ok(frame) => match frame.opcode {
                OpCode::Text => ReadItem::Text(Bytes::from(Vec::from(frame.payload))),
                OpCode::Binary => ReadItem::Binary(Bytes::from(Vec::from(frame.payload))),
                OpCode::Close => {
                    let payload = &frame.payload[..];
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    let reason = payload
                        .get(2..)
                        .map(|r| String::from_utf8_lossy(r).into_owned())
                        .unwrap_or_default();
                    trace!(close.code = ?code, "close frame received");
                    ReadItem::Close { code, reason }
                }
                // Pings are answered by fastwebsockets; pongs need nothing.
                _ => continue,
            },
            Err(error) => {
                debug!(%error, "websocket read ended");
                ReadItem::Failed(error)
            }
        };
        let last = matches!(item, ReadItem::Close { .. } | ReadItem::Failed(_));
        if inbox.send(item).await.is_err() || last {
            return;
        }
    }
}

/// A raw piece as a server frame (an error carrying the bytes when it is not one).
fn parse(raw: RawIncoming) -> Result<Incoming, RecvError> {
    match raw {
        RawIncoming::Piece(piece) => ServerFrame::parse(&piece)
            .map(Incoming::Frame)
            .map_err(|error| RecvError::BadPiece { piece, error }),
        RawIncoming::Closed { code, reason } => Ok(Incoming::Closed { code, reason }),
    }
}
