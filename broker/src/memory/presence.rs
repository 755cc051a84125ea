//! Who is in which room, by connection, for the memory engine.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use switchyard_protocol::frame::Member;
use switchyard_protocol::{RoomName, UserId};

use crate::conns::Conns;

#[derive(Default)]
pub(super) struct PresenceTable {
    rooms: HashMap<RoomName, BTreeMap<UserId, Conns>>,
}

impl PresenceTable {
    /// Returns true when this is the user's first connection in the room.
    pub(super) fn join(&mut self, room: &RoomName, user: &UserId, conn: &Arc<str>) -> bool {
        let conns = self
            .rooms
            .entry(room.clone())
            .or_default()
            .entry(user.clone())
            .or_default();
        conns.insert(conn) && conns.len() == 1
    }

    /// Returns true when this was the user's last connection in the room.
    pub(super) fn leave(&mut self, room: &RoomName, user: &UserId, conn: &str) -> bool {
        let Some(users) = self.rooms.get_mut(room) else {
            return false;
        };
        let Some(conns) = users.get_mut(user) else {
            return false;
        };
        if !conns.remove(conn) || !conns.is_empty() {
            return false;
        }
        users.remove(user);
        if users.is_empty() {
            self.rooms.remove(room);
        }
        true
    }

    pub(super) fn members(&self, room: &RoomName) -> Vec<Member> {
        self.rooms
            .get(room)
            .map(|users| {
                users
                    .iter()
                    .map(|(user, conns)| Member {
                        user: user.to_string(),
                        conns: conns.len() as u32,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
