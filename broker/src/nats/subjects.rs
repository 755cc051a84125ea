//! Subjects and keys the NATS engine uses (DESIGN "The path of a message"). Room names are
//! validated tokens (PROTOCOL §2), so none of these can widen a subscription.

use switchyard_protocol::{RoomName, UserId};

/// Stored messages: `sy.room.<room>`, captured by the room stream.
pub(super) const STORED_WILDCARD: &str = "sy.room.>";
/// The stream republishes each stored message here with its seq.
pub(super) const LIVE_WILDCARD: &str = "sy.live.room.>";
/// A room's live messages: `sy.live.room.<room>`.
const LIVE_MESSAGES: &str = "sy.live.room.";
/// A room's join and leave events: `sy.live.presence.<room>`.
const LIVE_PRESENCE: &str = "sy.live.presence.";
/// Mesh-wide control events.
pub(super) const CONTROL: &str = "sy.control";

pub(super) fn stored(room: &RoomName) -> String {
    format!("sy.room.{}", room.subject_suffix())
}

pub(super) fn live(room: &RoomName) -> String {
    format!("{LIVE_MESSAGES}{}", room.subject_suffix())
}

pub(super) fn presence_events(room: &RoomName) -> String {
    presence_events_of(&room.subject_suffix())
}

/// [`presence_events`] of a room in its subject form, as presence keys hold it.
pub(super) fn presence_events_of(room_suffix: &str) -> String {
    format!("{LIVE_PRESENCE}{room_suffix}")
}

/// A room's messages and presence events, for one subscription per room: `*` takes
/// exactly the kind, so room `a.b` never matches room `b`.
pub(super) fn live_any(room: &RoomName) -> String {
    format!("sy.live.*.{}", room.subject_suffix())
}

/// What a subject of [`live_any`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LiveKind {
    Message,
    Presence,
}

pub(super) fn live_kind(subject: &str) -> Option<LiveKind> {
    if subject.starts_with(LIVE_MESSAGES) {
        Some(LiveKind::Message)
    } else if subject.starts_with(LIVE_PRESENCE) {
        Some(LiveKind::Presence)
    } else {
        None
    }
}

/// Presence key of a user in a room: `<room>.<user>`, two tokens or more.
pub(super) fn presence_key(room: &RoomName, user: &UserId) -> String {
    format!("{}.{user}", room.subject_suffix())
}

/// Every presence entry of a room. `*` takes exactly a user, so the entries of room
/// `a.b` never match room `a`.
pub(super) fn presence_filter(bucket: &str, room: &RoomName) -> String {
    format!("$KV.{bucket}.{}.*", room.subject_suffix())
}

/// The key a process holding presence entries keeps fresh while it lives. One token, so
/// it is never a presence key.
pub(super) fn holder_alive_key(holder: &str) -> String {
    format!("_alive_{holder}")
}

/// Leader elections of a stream: the live feed may have lost messages across one.
pub(super) fn leader_elected(stream: &str) -> String {
    format!("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{stream}")
}

pub(super) mod headers {
    pub(crate) const MSG_ID: &str = "Nats-Msg-Id";
    pub(crate) const SEQUENCE: &str = "Nats-Sequence";
    pub(crate) const LAST_SEQUENCE: &str = "Nats-Last-Sequence";
    pub(crate) const FROM: &str = "Sy-From";
    pub(crate) const TS: &str = "Sy-Ts";
    pub(crate) const TRACEPARENT: &str = "traceparent";
    pub(crate) const KV_OPERATION: &str = "KV-Operation";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_of_plain_and_inbox_rooms() {
        let room = RoomName::parse("chat.1").unwrap();
        let inbox = RoomName::parse("@bob").unwrap();
        let bob = UserId::parse("bob").unwrap();
        assert_eq!(stored(&room), "sy.room.chat.1");
        assert_eq!(live(&inbox), "sy.live.room._inbox.bob");
        assert_eq!(presence_events(&room), "sy.live.presence.chat.1");
        assert_eq!(live_any(&room), "sy.live.*.chat.1");
        assert_eq!(live_kind(&live(&room)), Some(LiveKind::Message));
        assert_eq!(live_kind(&presence_events(&room)), Some(LiveKind::Presence));
        assert_eq!(live_kind("sy.live.other.chat.1"), None);
        assert_eq!(presence_key(&room, &bob), "chat.1.bob");
        assert_eq!(presence_key(&inbox, &bob), "_inbox.bob.bob");
        assert_eq!(presence_filter("b", &room), "$KV.b.chat.1.*");
        assert_eq!(holder_alive_key("h1"), "_alive_h1");
    }
}
