//! What flows to a session's writer. Fan-out sends shared [`RoomFrame`]s with
//! `try_send` and never waits; the session's own reader sends everything else and may.

use std::sync::Arc;

use bytes::Bytes;
use switchyard_protocol::RoomName;
use switchyard_telemetry::TraceId;

/// A message of a room, encoded once per worker and shared by every local subscriber.
#[derive(Debug)]
pub(crate) struct RoomFrame {
    pub(crate) room: RoomName,
    /// `None` for ephemeral messages.
    pub(crate) seq: Option<u64>,
    /// The room's previous seq, to detect a gap.
    pub(crate) prev: Option<u64>,
    /// The `msg` line, without its newline.
    pub(crate) line: Bytes,
    /// When the store accepted it (milliseconds since the epoch): the start of the
    /// fan-out latency measured when the line is written to a socket.
    pub(crate) ts: u64,
    /// The trace of its `fanout` span when that was sampled: the latency's exemplar.
    pub(crate) trace: Option<TraceId>,
}

/// A `sub` the reader has taken, for the writer to answer.
#[derive(Debug)]
pub(crate) struct SubscribeItem {
    pub(crate) room: RoomName,
    pub(crate) since: Option<u64>,
    pub(crate) epoch: Option<String>,
    pub(crate) reference: Option<String>,
    /// The room's latest seq and the store's epoch when the member joined: a
    /// live-only subscription starts here.
    pub(crate) head: u64,
    pub(crate) store_epoch: Arc<str>,
}

/// A presence event of a room, made once and shared by the room's local members.
#[derive(Debug)]
pub(crate) struct RoomEvent {
    pub(crate) room: RoomName,
    /// The event's line, without its newline.
    pub(crate) line: Bytes,
}

/// What a socket stops delivering, and the `ref` to answer with.
#[derive(Debug)]
pub(crate) struct UnsubscribeItem {
    pub(crate) room: RoomName,
    pub(crate) reference: Option<String>,
}

/// One slot of an outbox. Every variant is a pointer: each slot of every outbox is the
/// size of the largest item (it was 56 bytes with the others inline), and deliveries,
/// 8 bytes, are nearly all of them.
#[derive(Debug)]
pub(crate) enum OutItem {
    Msg(Arc<RoomFrame>),
    /// Delivered only while subscribed to its room.
    RoomEvent(Arc<RoomEvent>),
    /// A complete line (ack, error, pong, presence, refreshed...).
    Line(Box<Bytes>),
    /// Start delivering a room: answer `subscribed`, replay `since`, then go live.
    Subscribe(Box<SubscribeItem>),
    /// Stop delivering a room and answer `unsubscribed`.
    Unsubscribe(Box<UnsubscribeItem>),
}

impl OutItem {
    pub(crate) fn line(line: Bytes) -> OutItem {
        OutItem::Line(Box::new(line))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_outbox_slot_is_a_pointer_and_its_tag() {
        assert_eq!(std::mem::size_of::<super::OutItem>(), 16);
    }
}
