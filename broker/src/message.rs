//! The values that move through a broker.

use std::sync::Arc;

use bytes::Bytes;
use switchyard_protocol::{RoomName, UserId};

/// A message to publish. `data` is raw JSON without raw newlines.
#[derive(Debug, Clone)]
pub struct Publish {
    pub room: RoomName,
    /// A user id, or `$server`.
    pub from: Arc<str>,
    pub data: Bytes,
    /// Dedupe key: the same id within the window is stored once.
    pub msg_id: Option<String>,
    /// W3C trace context of the publisher, carried to every receiving worker.
    pub traceparent: Option<String>,
}

/// What the store answered for a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    /// Milliseconds since the epoch when it was accepted.
    pub ts: u64,
    /// The `msg_id` was seen before: nothing new was stored.
    pub duplicate: bool,
}

/// A message as the live feed and history deliver it.
#[derive(Debug, Clone)]
pub struct Message {
    pub room: RoomName,
    /// `None` for ephemeral messages.
    pub seq: Option<u64>,
    /// The previous seq of the same room (0 for its first), when the engine knows it.
    pub prev: Option<u64>,
    pub from: Arc<str>,
    pub ts: u64,
    pub data: Bytes,
    pub traceparent: Option<String>,
}

/// What a room's live feed carries. A feed is for one room, so presence events do not
/// repeat it: 24 bytes an event, which is what a feed's buffer holds per slot.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Msg(Arc<Message>),
    Join {
        user: UserId,
    },
    Leave {
        user: UserId,
    },
    /// The feed dropped events: every reader must check the room against the store.
    Lagged,
}

/// A page of a room's history.
#[derive(Debug, Clone)]
pub struct History {
    /// The room's latest seq (0 for a room that never had a message).
    pub head: u64,
    pub epoch: Arc<str>,
    /// Every message after `since` is retained (and `since` is not past the head).
    pub recovered: bool,
    /// Oldest first, all with `seq > since`.
    pub messages: Vec<Arc<Message>>,
    /// The page was cut at its limit: more may follow after `scanned`.
    pub more: bool,
    /// The highest seq this page read through (≥ the last message's seq: messages the
    /// engine could not deliver, such as a backend's non-JSON payload, are passed over).
    /// The next page starts after it; `since` when nothing was read.
    pub scanned: u64,
}

/// A worker as the registry knows it (KV `sy_workers` on NATS).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    /// Where gateways hand connections over (`host:port` of the worker's listener);
    /// empty for a worker that only takes in-process hand-offs.
    pub address: String,
    pub conns: u64,
    pub capacity: u64,
    pub draining: bool,
}

/// A change in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEvent {
    /// A worker announced itself or changed (load, draining).
    Up(WorkerInfo),
    /// A worker withdrew or stopped refreshing its entry.
    Gone(String),
}

/// Mesh-wide commands every worker acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Close every connection of `user` with 4009; with `until`, also refuse their tokens
    /// issued before that time (seconds since the epoch) until then.
    Disconnect { user: UserId, until: Option<u64> },
}
