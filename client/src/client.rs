//! The reconnecting client (PROTOCOL §5).
//!
//! [`Client`] is a cheap handle; one task (`task`) owns the current [`Connection`] and
//! the state that outlives it: the subscription table (`rooms`: last seq and epoch per
//! room, dedupe), requests waiting for an answer by `ref`, the resume path and token,
//! and the reconnect `backoff`. Handles send commands to the task over a bounded
//! channel; the task sends [`Event`]s to the bounded channel returned by
//! [`Client::start`], and waits when it is full (so a slow reader slows the socket, and
//! the server's slow-consumer handling takes over).
//!
//! Delivery: each stored message reaches the user once, in seq order per room, across
//! resumes and fresh reconnects (the client resubscribes with `since`). Publishing is
//! at-least-once: a `pub` not acknowledged when the connection drops is sent again,
//! with the same `ref`, after reconnecting. The server dedupes a `ref` only within one
//! session, so after a resume it is stored once, but after a fresh reconnect it may be
//! stored twice.

mod backoff;
mod presence;
mod resume;
mod rooms;
mod task;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;
use switchyard_protocol::error::ErrorCode;
use switchyard_protocol::frame::{minify_newlines, Member};
use switchyard_protocol::limits::{RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN};
use switchyard_protocol::RoomName;
use tokio::sync::{mpsc, oneshot};

use crate::connection::{ConnectError, ConnectOptions};
use rooms::Rooms;

/// Events buffered for the user before the client waits.
pub const DEFAULT_EVENTS_CAPACITY: usize = 1024;
/// Commands buffered for the client task before callers wait.
pub const DEFAULT_COMMANDS_CAPACITY: usize = 256;
/// How long the first frame (`welcome`) may take after the upgrade.
pub const DEFAULT_WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// Gives the token for each connection attempt and for `refresh_required`.
pub type TokenProvider = Arc<dyn Fn() -> String + Send + Sync>;

/// How a [`Client`] connects and reconnects.
#[derive(Clone)]
pub struct ClientOptions {
    /// The first URL (`wss://host/ws`), the token and how it travels, TLS trust,
    /// timeouts. Reconnects keep all of it but the path.
    pub connect: ConnectOptions,
    /// Called before every connection attempt, and on `refresh_required`. Without it
    /// `connect.token` is used, replaced by each [`Client::refresh`].
    pub token_provider: Option<TokenProvider>,
    pub events_capacity: usize,
    pub commands_capacity: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub welcome_timeout: Duration,
}

impl ClientOptions {
    pub fn new(connect: ConnectOptions) -> ClientOptions {
        ClientOptions {
            connect,
            token_provider: None,
            events_capacity: DEFAULT_EVENTS_CAPACITY,
            commands_capacity: DEFAULT_COMMANDS_CAPACITY,
            backoff_min: RECONNECT_BACKOFF_MIN,
            backoff_max: RECONNECT_BACKOFF_MAX,
            welcome_timeout: DEFAULT_WELCOME_TIMEOUT,
        }
    }

    pub fn token_provider(mut self, provider: TokenProvider) -> ClientOptions {
        self.token_provider = Some(provider);
        self
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("connect", &self.connect)
            .field("token_provider", &self.token_provider.is_some())
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .finish_non_exhaustive()
    }
}

/// What the client tells its user, in order.
#[derive(Debug)]
pub enum Event {
    /// A `welcome`: with `resumed` the server restored the session's subscriptions.
    Connected {
        resumed: bool,
        conn: String,
        worker: String,
        user: String,
    },
    /// The connection ended; the client reconnects unless a [`Event::Closed`] follows.
    /// `code` is the close code, `None` when the connection was lost without one.
    Disconnected {
        code: Option<u16>,
        reason: String,
    },
    /// A connection attempt failed; the next one starts after `retry_in`.
    ConnectFailed {
        error: ConnectError,
        retry_in: Option<Duration>,
    },
    Subscribed {
        room: String,
        seq: u64,
        epoch: String,
        recovered: bool,
        replayed: u64,
    },
    Unsubscribed {
        room: String,
    },
    /// A message; `seq` is `None` for ephemeral ones. Never repeats a seq.
    Message {
        room: String,
        seq: Option<u64>,
        from: String,
        ts: u64,
        data: Box<RawValue>,
    },
    Join {
        room: String,
        user: String,
    },
    Leave {
        room: String,
        user: String,
    },
    /// The token expires soon and no token provider is set: call [`Client::refresh`].
    RefreshRequired {
        expires_in: Duration,
    },
    /// An `error` frame that answers no request of this handle (a refused `sub`).
    Error {
        code: ErrorCode,
        message: String,
        reference: Option<String>,
        room: Option<String>,
    },
    /// The client stopped for good: `close()`, a close code that forbids reconnecting
    /// (1000, 1008, 4009), or a connection refusal that cannot heal.
    Closed {
        code: Option<u16>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("room name is not valid")]
    BadRoom,
    #[error("data is not valid JSON")]
    BadData,
    /// The server answered with an `error` frame.
    #[error("server refused: {code:?}: {message}")]
    Server { code: ErrorCode, message: String },
    /// The connection dropped before the answer, for a request that is not retried
    /// (ephemeral publish, presence, refresh).
    #[error("connection dropped before the answer")]
    Disconnected,
    #[error("client is closed")]
    Closed,
    #[error("server answered without a seq")]
    MissingSeq,
}

/// Answers to requests, matched by `ref`.
#[derive(Debug)]
pub(crate) enum Reply {
    Ack(Option<u64>),
    Presence(Vec<Member>),
    Refreshed(u64),
}

#[derive(Debug)]
pub(crate) enum RequestKind {
    Publish {
        room: RoomName,
        data: Bytes,
        ephemeral: bool,
    },
    Presence {
        room: RoomName,
    },
    Refresh {
        token: String,
    },
}

pub(crate) enum Command {
    Subscribe {
        room: RoomName,
        since: Option<u64>,
        epoch: Option<String>,
    },
    Unsubscribe {
        room: String,
    },
    Request {
        kind: RequestKind,
        reply: oneshot::Sender<Result<Reply, ClientError>>,
    },
    SetToken(TokenProvider),
    Close {
        done: oneshot::Sender<()>,
    },
}

/// State the task shares with handles, for the stats accessors.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) rooms: Mutex<Rooms>,
    pub(crate) reconnects: std::sync::atomic::AtomicU64,
}

impl Shared {
    pub(crate) fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        // A panic while holding the lock is a bug in this crate; the table is still
        // consistent enough to read.
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A handle to the reconnecting client. Clones share one connection; when every handle
/// is dropped the client closes.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// Starts the client task (on the current tokio runtime) and returns its handle and
    /// the receiver of its events.
    pub fn start(opts: ClientOptions) -> (Client, mpsc::Receiver<Event>) {
        let (cmd_tx, cmd_rx) = mpsc::channel(opts.commands_capacity.max(1));
        let (ev_tx, ev_rx) = mpsc::channel(opts.events_capacity.max(1));
        let shared = Arc::new(Shared::default());
        tokio::spawn(task::run(opts, cmd_rx, ev_tx, shared.clone()));
        (
            Client {
                commands: cmd_tx,
                shared,
            },
            ev_rx,
        )
    }

    async fn command(&self, command: Command) -> Result<(), ClientError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| ClientError::Closed)
    }

    async fn request(&self, kind: RequestKind) -> Result<Reply, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Request { kind, reply }).await?;
        answer.await.map_err(|_| ClientError::Closed)?
    }

    /// Subscribes to live messages of `room`, now and after every reconnect. The answer
    /// comes as [`Event::Subscribed`] or [`Event::Error`].
    pub async fn subscribe(&self, room: &str) -> Result<(), ClientError> {
        let room = RoomName::parse(room).map_err(|_| ClientError::BadRoom)?;
        self.command(Command::Subscribe {
            room,
            since: None,
            epoch: None,
        })
        .await
    }

    /// Subscribes with history: every retained message after `since` (the last seq the
    /// caller already has; 0 for all), in the store `epoch` it was seen in.
    pub async fn subscribe_since(
        &self,
        room: &str,
        since: u64,
        epoch: Option<String>,
    ) -> Result<(), ClientError> {
        let room = RoomName::parse(room).map_err(|_| ClientError::BadRoom)?;
        self.command(Command::Subscribe {
            room,
            since: Some(since),
            epoch,
        })
        .await
    }

    pub async fn unsubscribe(&self, room: &str) -> Result<(), ClientError> {
        self.command(Command::Unsubscribe {
            room: room.to_string(),
        })
        .await
    }

    /// Publishes a stored message and waits for its `ack`; returns its seq.
    /// At-least-once across reconnects (see the module docs).
    pub async fn publish(&self, room: &str, data: &serde_json::Value) -> Result<u64, ClientError> {
        // A Value always serializes.
        let bytes = serde_json::to_vec(data).map_err(|_| ClientError::BadData)?;
        self.publish_raw(room, bytes).await
    }

    /// [`Client::publish`] with raw JSON bytes, passed through (newlines minified).
    pub async fn publish_raw(
        &self,
        room: &str,
        data: impl AsRef<[u8]>,
    ) -> Result<u64, ClientError> {
        match self.publish_inner(room, data.as_ref(), false).await? {
            Some(seq) => Ok(seq),
            None => Err(ClientError::MissingSeq),
        }
    }

    /// Publishes a live-only message and waits for the server to take it. Not retried
    /// after a disconnect: [`ClientError::Disconnected`].
    pub async fn publish_ephemeral(
        &self,
        room: &str,
        data: &serde_json::Value,
    ) -> Result<(), ClientError> {
        let bytes = serde_json::to_vec(data).map_err(|_| ClientError::BadData)?;
        self.publish_inner(room, &bytes, true).await.map(|_| ())
    }

    async fn publish_inner(
        &self,
        room: &str,
        data: &[u8],
        ephemeral: bool,
    ) -> Result<Option<u64>, ClientError> {
        let room = RoomName::parse(room).map_err(|_| ClientError::BadRoom)?;
        serde_json::from_slice::<&RawValue>(data).map_err(|_| ClientError::BadData)?;
        let kind = RequestKind::Publish {
            room,
            data: minify_newlines(data),
            ephemeral,
        };
        match self.request(kind).await? {
            Reply::Ack(seq) => Ok(seq),
            _ => Err(ClientError::MissingSeq),
        }
    }

    /// The members of a room. A `join` or `leave` of the room that arrives while the
    /// answer is on its way is applied over it, so the list agrees with the
    /// [`Event::Join`] and [`Event::Leave`] already delivered.
    pub async fn presence(&self, room: &str) -> Result<Vec<Member>, ClientError> {
        let room = RoomName::parse(room).map_err(|_| ClientError::BadRoom)?;
        match self.request(RequestKind::Presence { room }).await? {
            Reply::Presence(members) => Ok(members),
            _ => Err(ClientError::Disconnected),
        }
    }

    /// Extends the connection with a new token; returns its `exp`. Without a token
    /// provider, the token is also used for later reconnects.
    pub async fn refresh(&self, token: impl Into<String>) -> Result<u64, ClientError> {
        let token = token.into();
        match self.request(RequestKind::Refresh { token }).await? {
            Reply::Refreshed(exp) => Ok(exp),
            _ => Err(ClientError::Disconnected),
        }
    }

    /// Replaces the token provider used for reconnects and `refresh_required`.
    pub async fn set_token(&self, provider: TokenProvider) -> Result<(), ClientError> {
        self.command(Command::SetToken(provider)).await
    }

    /// Closes with 1000 and stops reconnecting; returns when the client has stopped.
    pub async fn close(&self) -> Result<(), ClientError> {
        let (done, stopped) = oneshot::channel();
        self.command(Command::Close { done }).await?;
        // A dropped sender also means the task has ended.
        let _ = stopped.await;
        Ok(())
    }

    /// The last seq seen in `room` (or its seq when a live-only subscription began).
    pub fn last_seq(&self, room: &str) -> Option<u64> {
        self.shared.rooms().last_seq(room)
    }

    /// The store epoch of `room`, from its last `subscribed`.
    pub fn epoch(&self, room: &str) -> Option<String> {
        self.shared.rooms().epoch(room).map(str::to_string)
    }

    /// How many `msg`s were dropped because their seq had been seen.
    pub fn duplicates_dropped(&self) -> u64 {
        self.shared.rooms().duplicates()
    }

    /// How many times the client connected again after its first `welcome`.
    pub fn reconnects(&self) -> u64 {
        self.shared
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The rooms the client keeps subscribed.
    pub fn rooms(&self) -> Vec<String> {
        self.shared.rooms().rooms()
    }
}
