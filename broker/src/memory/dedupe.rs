//! Publish dedupe for the memory engine: `msg_id`s seen within the window, bounded in
//! count so that a flood of unique ids cannot grow memory without end.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use switchyard_protocol::RoomName;

use crate::Stored;

/// Most ids remembered at once; the oldest go first past it.
const MAX_IDS: usize = 100_000;

pub(super) struct Dedupe {
    window: Duration,
    seen: HashMap<(RoomName, String), Stored>,
    order: VecDeque<(Instant, RoomName, String)>,
}

impl Dedupe {
    pub(super) fn new(window: Duration) -> Dedupe {
        Dedupe {
            window,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(super) fn get(&mut self, room: &RoomName, id: &str) -> Option<Stored> {
        self.expire(Instant::now());
        self.seen.get(&(room.clone(), id.to_string())).copied()
    }

    pub(super) fn insert(&mut self, room: &RoomName, id: String, stored: Stored) {
        let now = Instant::now();
        self.expire(now);
        if self.order.len() >= MAX_IDS {
            if let Some((_, r, i)) = self.order.pop_front() {
                self.seen.remove(&(r, i));
            }
        }
        self.seen.insert((room.clone(), id.clone()), stored);
        self.order.push_back((now, room.clone(), id));
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.order.front() {
            if now.duration_since(*at) <= self.window {
                break;
            }
            if let Some((_, r, i)) = self.order.pop_front() {
                self.seen.remove(&(r, i));
            }
        }
    }
}
