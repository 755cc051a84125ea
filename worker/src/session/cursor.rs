//! Delivery cursors: per room, the last seq written to the socket and the last seq the
//! client has provably read. A WebSocket pong proves the client read every byte written
//! before its ping, so each ping snapshots the cursors and its pong confirms them. A
//! resumed session rewinds to the confirmed cursors and fills from the store: bytes
//! written into a socket that died may never have arrived (the client drops the
//! duplicates this can cause, PROTOCOL §3).

use std::collections::VecDeque;

use switchyard_protocol::RoomName;

use super::room_map::RoomMap;

pub(crate) struct Cursor {
    /// Last seq written to the socket.
    pub(crate) last: u64,
    /// Last seq the client has provably read.
    pub(crate) confirmed: u64,
    /// A catch-up from the store is owed: the room's fan-out dropped a message for this
    /// session (told through [`crate::room::Rooms::take_lagged`]), a resume rewound the
    /// cursor, or a catch-up failed and is retried.
    pub(crate) lagged: bool,
}

/// Pings whose pongs are awaited with a snapshot. While this many are outstanding, new
/// pings carry none: the oldest are kept, so that a client whose pongs come back late
/// (busy reading a catch-up) still confirms its cursors, later than it might, rather
/// than never, which would rewind a resume to the start of its subscription.
const MAX_PROBES: usize = 4;

#[derive(Default)]
pub(crate) struct Cursors {
    rooms: RoomMap<Cursor>,
    /// Empty (unallocated) unless a ping awaits its pong.
    probes: VecDeque<(u64, Vec<(RoomName, u64)>)>,
}

impl Cursors {
    pub(crate) fn get_mut(&mut self, room: &RoomName) -> Option<&mut Cursor> {
        self.rooms.get_mut(room)
    }

    pub(crate) fn insert(&mut self, room: RoomName, start: u64) {
        let cursor = Cursor {
            last: start,
            confirmed: start,
            lagged: false,
        };
        self.rooms.insert(room, cursor);
    }

    pub(crate) fn remove(&mut self, room: &RoomName) {
        self.rooms.remove(room);
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&RoomName, &mut Cursor)> {
        self.rooms.iter_mut()
    }

    /// Records the cursors as of a ping with this id (unless `MAX_PROBES` await their
    /// pongs already).
    pub(crate) fn probe(&mut self, ping_id: u64) {
        if self.probes.len() == MAX_PROBES {
            return;
        }
        let snapshot = self
            .rooms
            .iter()
            .map(|(room, c)| (room.clone(), c.last))
            .collect();
        self.probes.push_back((ping_id, snapshot));
    }

    /// The pong of ping `ping_id` arrived: everything written before it was read,
    /// before every earlier ping too.
    pub(crate) fn confirm(&mut self, ping_id: u64) {
        while self.probes.front().is_some_and(|(id, _)| *id <= ping_id) {
            let Some((_, snapshot)) = self.probes.pop_front() else {
                break;
            };
            for (room, seq) in snapshot {
                if let Some(cursor) = self.get_mut(&room) {
                    cursor.confirmed = cursor.confirmed.max(seq);
                }
            }
        }
        if self.probes.is_empty() {
            // Every idle socket is probed once a heartbeat: it keeps no queue between.
            self.probes = VecDeque::new();
        }
    }

    /// Whether something was written that no pong has confirmed yet.
    pub(crate) fn unconfirmed(&self) -> bool {
        self.rooms.iter().any(|(_, c)| c.last > c.confirmed)
    }

    /// After a socket was lost: deliver again from what the client provably has.
    pub(crate) fn rewind(&mut self) {
        self.probes = VecDeque::new();
        for (_, cursor) in self.rooms.iter_mut() {
            if cursor.last != cursor.confirmed {
                cursor.last = cursor.confirmed;
                cursor.lagged = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pong_confirms_only_what_was_written_before_its_ping() {
        let room = RoomName::parse("r").unwrap();
        let mut cursors = Cursors::default();
        cursors.insert(room.clone(), 10);
        cursors.get_mut(&room).unwrap().last = 15;
        cursors.probe(1);
        cursors.get_mut(&room).unwrap().last = 20;
        cursors.probe(2);
        cursors.get_mut(&room).unwrap().last = 30;
        cursors.confirm(1);
        assert_eq!(cursors.get_mut(&room).unwrap().confirmed, 15);
        cursors.rewind();
        let cursor = cursors.get_mut(&room).unwrap();
        assert_eq!((cursor.last, cursor.confirmed), (15, 15));
        assert!(cursor.lagged);
    }

    #[test]
    fn late_pongs_still_confirm() {
        let room = RoomName::parse("r").unwrap();
        let mut cursors = Cursors::default();
        cursors.insert(room.clone(), 0);
        // Ten heartbeats go by before the first pong comes back.
        for ping in 1..=10 {
            cursors.get_mut(&room).unwrap().last = ping * 100;
            cursors.probe(ping);
        }
        assert!(cursors.unconfirmed());
        cursors.confirm(1);
        assert_eq!(cursors.get_mut(&room).unwrap().confirmed, 100);
        // A later pong proves the earlier pings' snapshots too.
        cursors.confirm(9);
        assert_eq!(cursors.get_mut(&room).unwrap().confirmed, 400);
        cursors.get_mut(&room).unwrap().last = 1100;
        cursors.probe(11);
        cursors.confirm(11);
        assert_eq!(cursors.get_mut(&room).unwrap().confirmed, 1100);
        assert!(!cursors.unconfirmed());
    }

    #[test]
    fn unknown_or_stale_pongs_change_nothing() {
        let room = RoomName::parse("r").unwrap();
        let mut cursors = Cursors::default();
        cursors.insert(room.clone(), 5);
        cursors.get_mut(&room).unwrap().last = 9;
        cursors.confirm(7);
        assert_eq!(cursors.get_mut(&room).unwrap().confirmed, 5);
        cursors.probe(8);
        cursors.confirm(7);
        cursors.confirm(8);
        assert_eq!(cursors.get_mut(&room).unwrap().confirmed, 9);
    }
}
