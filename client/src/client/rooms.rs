//! The subscription table: which rooms the user wants, what the server holds for this
//! session, and per room the last seq seen and its epoch, which make resubscribing with
//! `since` and dropping duplicates possible (PROTOCOL §3, §5).

use std::collections::BTreeMap;

use switchyard_protocol::{ClientFrame, RoomName};

/// Where a room's subscription stands on the current session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubState {
    /// A `sub` must be sent when the session is ready.
    Unsent,
    /// A `sub` was sent; `subscribed` has not come back yet.
    Sent,
    /// The server holds the subscription.
    Confirmed,
}

#[derive(Debug, Clone)]
pub(crate) struct RoomState {
    name: RoomName,
    /// False after `unsubscribe`, until the server has been told.
    wanted: bool,
    state: SubState,
    /// The highest seq delivered to the user, or the room's seq at a live-only `sub`.
    last_seq: Option<u64>,
    epoch: Option<String>,
    /// The `since` of the `sub` in flight (`None`: live only).
    sent_since: Option<u64>,
    /// An `unsub` + `sub` pair renews a subscription whose answer was lost; the
    /// `unsubscribed` it brings back is not the user's.
    renewing: bool,
}

/// What to do with a `msg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Deliver,
    /// Its seq is not above the last one seen: already delivered.
    Duplicate,
    /// A room the user does not (or no longer) want.
    Unwanted,
    /// Sent under a subscription being renewed live-only: at or below the point the
    /// renewed `subscribed` will give, so before the user's subscription.
    BeforePoint,
}

/// What to do with an `already_subscribed` for a room.
#[derive(Debug, PartialEq)]
pub(crate) enum AlreadyHeld {
    /// Confirmed already: nothing to tell the user.
    Known,
    /// The answer to our `sub` was lost with a socket, so the subscription's point is
    /// unknown: these frames (`unsub`, then `sub` from the last seq seen) renew it and
    /// bring a `subscribed` for the user.
    Renew(Vec<ClientFrame>),
    /// Not a room of ours: pass the error on.
    Unknown,
}

#[derive(Debug, Default)]
pub(crate) struct Rooms {
    map: BTreeMap<String, RoomState>,
    duplicates: u64,
}

impl Rooms {
    /// Records that the user wants `room`, optionally from `since` (the last seq the
    /// user already has) in `epoch`. Returns the `sub` to send when the session is
    /// ready and the room is not already subscribed there.
    pub(crate) fn want(
        &mut self,
        room: RoomName,
        since: Option<u64>,
        epoch: Option<String>,
        online: bool,
    ) -> Option<ClientFrame> {
        let entry = self
            .map
            .entry(room.as_str().to_string())
            .or_insert_with(|| RoomState {
                name: room,
                wanted: true,
                state: SubState::Unsent,
                last_seq: None,
                epoch: None,
                sent_since: None,
                renewing: false,
            });
        entry.wanted = true;
        if since.is_some() {
            entry.last_seq = since;
            entry.epoch = epoch;
        }
        let name = entry.name.as_str().to_string();
        match (online, entry.state) {
            (true, SubState::Unsent) => Some(self.sub_frame(&name)),
            _ => None,
        }
    }

    /// Records that the user no longer wants `room`. Returns the `unsub` to send now.
    pub(crate) fn unwant(&mut self, room: &str, online: bool) -> Option<ClientFrame> {
        let entry = self.map.get_mut(room)?;
        entry.wanted = false;
        if entry.state == SubState::Unsent {
            self.map.remove(room);
            return None;
        }
        if !online {
            return None;
        }
        let name = entry.name.clone();
        self.map.remove(room);
        Some(ClientFrame::Unsub {
            room: name,
            reference: None,
        })
    }

    /// The `sub` for a room, with `since` = the last seq seen and its epoch.
    fn sub_frame(&mut self, room: &str) -> ClientFrame {
        // Callers pass a key they just found in the map.
        let entry = self.map.get_mut(room).expect("room is in the table");
        entry.state = SubState::Sent;
        entry.sent_since = entry.last_seq;
        ClientFrame::Sub {
            room: entry.name.clone(),
            since: entry.last_seq,
            epoch: entry.last_seq.and(entry.epoch.clone()),
            reference: None,
        }
    }

    /// A `welcome` with `resumed: false`: the server holds nothing. Every wanted room is
    /// subscribed again from its last seq.
    pub(crate) fn on_fresh_session(&mut self) -> Vec<ClientFrame> {
        self.map.retain(|_, r| r.wanted);
        for room in self.map.values_mut() {
            room.renewing = false;
        }
        let names: Vec<String> = self.map.keys().cloned().collect();
        names.iter().map(|name| self.sub_frame(name)).collect()
    }

    /// A `welcome` with `resumed: true`: the server restored what it held. Rooms given up
    /// while away are unsubscribed; rooms wanted but not confirmed are (re)sent, and an
    /// `already_subscribed` answer then confirms them.
    pub(crate) fn on_resumed_session(&mut self) -> Vec<ClientFrame> {
        let mut frames = Vec::new();
        self.map.retain(|_, r| {
            if r.wanted {
                return true;
            }
            frames.push(ClientFrame::Unsub {
                room: r.name.clone(),
                reference: None,
            });
            false
        });
        let names: Vec<String> = self
            .map
            .iter()
            .filter(|(_, r)| r.state != SubState::Confirmed)
            .map(|(name, _)| name.clone())
            .collect();
        frames.extend(names.iter().map(|name| self.sub_frame(name)));
        frames
    }

    /// `subscribed`: the server holds the room; `seq` is its latest, `epoch` its store's.
    /// Returns whether the user still wants the room.
    pub(crate) fn on_subscribed(&mut self, room: &str, seq: u64, epoch: &str) -> bool {
        let Some(entry) = self.map.get_mut(room) else {
            return false;
        };
        entry.state = SubState::Confirmed;
        entry.renewing = false;
        let reset = entry.epoch.as_deref().is_some_and(|e| e != epoch)
            || entry.last_seq.is_some_and(|last| last > seq);
        if reset {
            // The store lost its history: old seqs say nothing about new ones.
            entry.last_seq = None;
        }
        if entry.sent_since.is_none() {
            // Live only: nothing at or below `seq` will come, and a later `since` must
            // start here so that a reconnect misses nothing.
            entry.last_seq = Some(entry.last_seq.map_or(seq, |last| last.max(seq)));
        }
        entry.epoch = Some(epoch.to_string());
        entry.wanted
    }

    /// `already_subscribed`: the server held the room all along (a `sub` resent on
    /// resume). When our `sub` was never answered, the server took it before the socket
    /// died and its `subscribed` was lost: the user still needs that answer, and a
    /// live-only `sub` its point, so the subscription is renewed.
    pub(crate) fn on_already_subscribed(&mut self, room: &str) -> AlreadyHeld {
        let Some(entry) = self.map.get_mut(room) else {
            return AlreadyHeld::Unknown;
        };
        if entry.state != SubState::Sent {
            return AlreadyHeld::Known;
        }
        entry.renewing = true;
        let unsub = ClientFrame::Unsub {
            room: entry.name.clone(),
            reference: None,
        };
        let sub = self.sub_frame(room);
        AlreadyHeld::Renew(vec![unsub, sub])
    }

    /// `unsubscribed`: returns whether it is the user's (not a renewal's).
    pub(crate) fn on_unsubscribed(&self, room: &str) -> bool {
        !self.map.get(room).is_some_and(|entry| entry.renewing)
    }

    /// `unavailable` for a `sub`: the server holds nothing and asks for the `sub` again
    /// later. The room stays wanted and unsent, for [`Rooms::unsent`] after a backoff, a
    /// `subscribe`, or the next session. Returns whether it was ours.
    pub(crate) fn on_unavailable(&mut self, room: &str) -> bool {
        match self.map.get_mut(room).filter(|r| r.state == SubState::Sent) {
            Some(entry) => {
                entry.state = SubState::Unsent;
                entry.renewing = false;
                true
            }
            None => false,
        }
    }

    /// The `sub`s of wanted rooms not sent on this session (refused as `unavailable`).
    pub(crate) fn unsent(&mut self) -> Vec<ClientFrame> {
        let names: Vec<String> = self
            .map
            .iter()
            .filter(|(_, r)| r.wanted && r.state == SubState::Unsent)
            .map(|(name, _)| name.clone())
            .collect();
        names.iter().map(|name| self.sub_frame(name)).collect()
    }

    pub(crate) fn has_unsent(&self) -> bool {
        self.map
            .values()
            .any(|r| r.wanted && r.state == SubState::Unsent)
    }

    /// The server refused a `sub` (forbidden, bad room): stop asking for it.
    pub(crate) fn on_refused(&mut self, room: &str) {
        if self
            .map
            .get(room)
            .is_some_and(|r| r.state == SubState::Sent)
        {
            self.map.remove(room);
        }
    }

    /// Dedupe: a stored message is delivered once, the first time its seq is seen.
    pub(crate) fn on_msg(&mut self, room: &str, seq: Option<u64>) -> Verdict {
        let Some(entry) = self.map.get_mut(room).filter(|r| r.wanted) else {
            return Verdict::Unwanted;
        };
        if entry.renewing && entry.sent_since.is_none() {
            return Verdict::BeforePoint;
        }
        let Some(seq) = seq else {
            return Verdict::Deliver;
        };
        if entry.last_seq.is_some_and(|last| seq <= last) {
            self.duplicates += 1;
            return Verdict::Duplicate;
        }
        entry.last_seq = Some(seq);
        Verdict::Deliver
    }

    pub(crate) fn last_seq(&self, room: &str) -> Option<u64> {
        self.map.get(room)?.last_seq
    }

    pub(crate) fn epoch(&self, room: &str) -> Option<&str> {
        self.map.get(room)?.epoch.as_deref()
    }

    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates
    }

    pub(crate) fn rooms(&self) -> Vec<String> {
        self.map
            .iter()
            .filter(|(_, r)| r.wanted)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    fn since_of(frame: &ClientFrame) -> (Option<u64>, Option<String>) {
        match frame {
            ClientFrame::Sub { since, epoch, .. } => (*since, epoch.clone()),
            other => panic!("not a sub: {other:?}"),
        }
    }

    #[test]
    fn duplicates_and_old_seqs_are_dropped() {
        let mut rooms = Rooms::default();
        let sub = rooms.want(room("lobby"), None, None, true).unwrap();
        assert_eq!(since_of(&sub), (None, None));
        assert!(rooms.on_subscribed("lobby", 57, "e1"));
        assert_eq!(rooms.last_seq("lobby"), Some(57));
        assert_eq!(rooms.on_msg("lobby", Some(58)), Verdict::Deliver);
        assert_eq!(rooms.on_msg("lobby", Some(58)), Verdict::Duplicate);
        assert_eq!(rooms.on_msg("lobby", Some(40)), Verdict::Duplicate);
        // Seqs may skip numbers.
        assert_eq!(rooms.on_msg("lobby", Some(61)), Verdict::Deliver);
        assert_eq!(rooms.on_msg("lobby", None), Verdict::Deliver);
        assert_eq!(rooms.on_msg("other", Some(1)), Verdict::Unwanted);
        assert_eq!(rooms.duplicates(), 2);
        assert_eq!(rooms.last_seq("lobby"), Some(61));
    }

    #[test]
    fn replay_after_since_is_not_taken_for_duplicates() {
        let mut rooms = Rooms::default();
        let sub = rooms
            .want(room("lobby"), Some(41), Some("e1".into()), true)
            .unwrap();
        assert_eq!(since_of(&sub), (Some(41), Some("e1".into())));
        rooms.on_subscribed("lobby", 57, "e1");
        assert_eq!(rooms.last_seq("lobby"), Some(41));
        assert_eq!(rooms.on_msg("lobby", Some(42)), Verdict::Deliver);
    }

    #[test]
    fn fresh_session_resubscribes_from_last_seq() {
        let mut rooms = Rooms::default();
        rooms.want(room("a"), None, None, true);
        rooms.want(room("b"), None, None, true);
        rooms.on_subscribed("a", 10, "e1");
        rooms.on_subscribed("b", 0, "e1");
        rooms.on_msg("a", Some(12));
        rooms.unwant("b", false);
        let frames = rooms.on_fresh_session();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].room().unwrap().as_str(), "a");
        assert_eq!(since_of(&frames[0]), (Some(12), Some("e1".into())));
        // A replay of what was seen is dropped; new seqs pass.
        rooms.on_subscribed("a", 14, "e1");
        assert_eq!(rooms.on_msg("a", Some(12)), Verdict::Duplicate);
        assert_eq!(rooms.on_msg("a", Some(13)), Verdict::Deliver);
    }

    #[test]
    fn resumed_session_keeps_confirmed_rooms() {
        let mut rooms = Rooms::default();
        rooms.want(room("a"), None, None, true);
        rooms.on_subscribed("a", 3, "e1");
        rooms.want(room("b"), None, None, false);
        rooms.want(room("c"), None, None, true);
        rooms.on_subscribed("c", 0, "e1");
        rooms.unwant("c", false);
        let frames = rooms.on_resumed_session();
        let ops: Vec<(&str, &str)> = frames
            .iter()
            .map(|f| (f.op(), f.room().unwrap().as_str()))
            .collect();
        assert_eq!(ops, [("unsub", "c"), ("sub", "b")]);
        assert_eq!(rooms.rooms(), ["a", "b"]);
    }

    #[test]
    fn new_epoch_resets_the_sequence() {
        let mut rooms = Rooms::default();
        rooms.want(room("a"), Some(100), Some("e1".into()), true);
        rooms.on_subscribed("a", 5, "e2");
        assert_eq!(rooms.epoch("a"), Some("e2"));
        assert_eq!(rooms.on_msg("a", Some(1)), Verdict::Deliver);
        // `since` above the room's latest seq in the same epoch: also reset.
        let mut rooms = Rooms::default();
        rooms.want(room("a"), Some(100), Some("e1".into()), true);
        rooms.on_subscribed("a", 5, "e1");
        assert_eq!(rooms.on_msg("a", Some(3)), Verdict::Deliver);
    }

    #[test]
    fn an_unanswered_sub_held_by_the_server_is_renewed_from_the_last_seq() {
        let mut rooms = Rooms::default();
        rooms.want(room("a"), None, None, true);
        // The socket died before `subscribed`; the resumed session resends the `sub`.
        let resent = rooms.on_resumed_session();
        assert_eq!(since_of(&resent[0]), (None, None));
        let AlreadyHeld::Renew(frames) = rooms.on_already_subscribed("a") else {
            panic!("not renewed");
        };
        let ops: Vec<&str> = frames.iter().map(|f| f.op()).collect();
        assert_eq!(ops, ["unsub", "sub"]);
        assert_eq!(since_of(&frames[1]), (None, None));
        // The old subscription's last messages precede the renewed point.
        assert_eq!(rooms.on_msg("a", Some(3)), Verdict::BeforePoint);
        assert!(!rooms.on_unsubscribed("a"));
        rooms.on_subscribed("a", 4, "e1");
        assert!(rooms.on_unsubscribed("a"));
        assert_eq!(rooms.on_msg("a", Some(5)), Verdict::Deliver);
        assert_eq!(rooms.on_already_subscribed("a"), AlreadyHeld::Known);
        assert_eq!(rooms.on_already_subscribed("b"), AlreadyHeld::Unknown);

        // With messages seen, the renewed `sub` replays from there: nothing is skipped.
        let mut rooms = Rooms::default();
        rooms.want(room("a"), None, None, true);
        assert_eq!(rooms.on_msg("a", Some(7)), Verdict::Deliver);
        let AlreadyHeld::Renew(frames) = rooms.on_already_subscribed("a") else {
            panic!("not renewed");
        };
        assert_eq!(since_of(&frames[1]), (Some(7), None));
        assert_eq!(rooms.on_msg("a", Some(8)), Verdict::Deliver);
        assert_eq!(rooms.on_msg("a", Some(8)), Verdict::Duplicate);
    }

    #[test]
    fn a_sub_refused_as_unavailable_can_be_sent_again() {
        let mut rooms = Rooms::default();
        assert!(rooms.want(room("a"), None, None, true).is_some());
        assert!(rooms.want(room("a"), None, None, true).is_none());
        assert!(rooms.on_unavailable("a"));
        assert!(!rooms.on_unavailable("a"), "not in flight any more");
        assert_eq!(rooms.rooms(), ["a"]);
        assert!(rooms.has_unsent());
        assert!(rooms.want(room("a"), None, None, true).is_some());
        // Or the retry after a backoff sends it.
        rooms.on_unavailable("a");
        assert_eq!(rooms.unsent().len(), 1);
        assert!(!rooms.has_unsent());
    }

    #[test]
    fn refused_sub_is_forgotten() {
        let mut rooms = Rooms::default();
        rooms.want(room("secret"), None, None, true);
        rooms.on_refused("secret");
        assert!(rooms.rooms().is_empty());
        assert!(rooms.on_fresh_session().is_empty());
    }
}
