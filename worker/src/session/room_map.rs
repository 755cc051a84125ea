//! A map keyed by room for what every session keeps per room (its subscriptions, its
//! cursors). A session is in a room or a few: a sorted `Vec` found by binary search
//! holds one room in 40 bytes or less, where a `HashMap`'s table takes about 120–180.

use switchyard_protocol::RoomName;

pub(crate) struct RoomMap<V> {
    entries: Vec<(RoomName, V)>,
}

impl<V> Default for RoomMap<V> {
    fn default() -> Self {
        RoomMap {
            entries: Vec::new(),
        }
    }
}

impl<V> RoomMap<V> {
    fn find(&self, room: &RoomName) -> Result<usize, usize> {
        self.entries.binary_search_by(|(r, _)| r.cmp(room))
    }

    pub(crate) fn contains(&self, room: &RoomName) -> bool {
        self.find(room).is_ok()
    }

    pub(crate) fn get_mut(&mut self, room: &RoomName) -> Option<&mut V> {
        let i = self.find(room).ok()?;
        Some(&mut self.entries[i].1)
    }

    /// Inserts or replaces the room's value.
    pub(crate) fn insert(&mut self, room: RoomName, value: V) {
        match self.find(&room) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => {
                // One slot at a time: `Vec` would make room for four.
                self.entries.reserve_exact(1);
                self.entries.insert(i, (room, value));
            }
        }
    }

    pub(crate) fn remove(&mut self, room: &RoomName) -> Option<V> {
        let i = self.find(room).ok()?;
        let (_, value) = self.entries.remove(i);
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
        Some(value)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&RoomName, &V)> {
        self.entries.iter().map(|(room, value)| (room, value))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&RoomName, &mut V)> {
        self.entries.iter_mut().map(|(room, value)| (&*room, value))
    }

    pub(crate) fn into_rooms(self) -> impl Iterator<Item = RoomName> {
        self.entries.into_iter().map(|(room, _)| room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_found_whatever_order_they_came_in() {
        let rooms: Vec<RoomName> = ["m", "a", "z", "b"]
            .iter()
            .map(|r| RoomName::parse(r).unwrap())
            .collect();
        let mut map = RoomMap::default();
        for (value, room) in rooms.iter().enumerate() {
            map.insert(room.clone(), value);
        }
        map.insert(rooms[2].clone(), 7);
        assert_eq!(map.remove(&rooms[1]), Some(1));
        assert_eq!(map.remove(&rooms[1]), None);
        assert!(!map.contains(&rooms[1]));
        let values: Vec<usize> = [0, 2, 3]
            .iter()
            .map(|&i| *map.get_mut(&rooms[i]).unwrap())
            .collect();
        assert_eq!(values, [0, 7, 3]);
        let names: Vec<&str> = map.iter().map(|(room, _)| room.as_str()).collect();
        assert_eq!(names, ["b", "m", "z"]);
        for room in &rooms {
            map.remove(room);
        }
        assert_eq!(map.iter_mut().count(), 0);
    }
}
