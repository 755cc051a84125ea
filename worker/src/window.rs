//! A room's recent history as this worker forwarded it: the last frames of the room, one
//! unbroken chain, already encoded. It answers replays and catch-ups for any `since` it
//! covers without reading the store, and a backfill from the store extends it for the
//! next readers, so a crowd resuming the same room reads the store once (DESIGN
//! "Durability": "one read, many readers").

use std::collections::VecDeque;
use std::sync::Arc;

use crate::session::outbox::RoomFrame;

pub(crate) struct Window {
    /// Oldest first; each frame's seq is past the one before it, with nothing between.
    frames: VecDeque<Arc<RoomFrame>>,
    /// The window answers any `since` in `[base, last]`: nothing of the room after
    /// `base` is missing from it.
    base: u64,
    last: u64,
    epoch: Arc<str>,
    /// Frames kept as messages flow; a fresh backfill may hold more (`backfill_cap`).
    cap: usize,
    /// While a backfill is fresh the window may hold `backfill_cap()` frames:
    /// new messages must not trim away at once what a resuming crowd is still reading.
    backfilled_until: Option<std::time::Instant>,
}

/// How long a backfilled window keeps its size after the last backfill.
const BACKFILL_LINGER: std::time::Duration = std::time::Duration::from_secs(30);

/// How far past `cap` a backfill may grow the window (it shrinks back as messages flow).
pub(crate) const BACKFILL_FACTOR: usize = 8;

/// Frames after `since`, at most a page of them.
pub(crate) struct Read {
    pub(crate) frames: Vec<Arc<RoomFrame>>,
    pub(crate) more: bool,
    /// The seq the read went through: `since` to continue from next.
    pub(crate) scanned: u64,
}

impl Window {
    /// An empty window at the room's head: it covers exactly `since == head`.
    pub(crate) fn new(head: u64, epoch: Arc<str>, cap: usize) -> Window {
        Window {
            frames: VecDeque::new(),
            base: head,
            last: head,
            epoch,
            cap,
            backfilled_until: None,
        }
    }

    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    pub(crate) fn epoch(&self) -> &Arc<str> {
        &self.epoch
    }

    /// Appends a forwarded stored frame. A frame that does not continue the chain (a
    /// gap the room could not fill) starts the window afresh from it.
    pub(crate) fn push(&mut self, frame: Arc<RoomFrame>) {
        let Some(seq) = frame.seq else { return };
        if seq <= self.last {
            return;
        }
        if frame.prev.is_some_and(|prev| prev != self.last) {
            self.frames.clear();
            self.base = frame.prev.unwrap_or(seq);
        }
        self.last = seq;
        self.frames.push_back(frame);
        let fresh = self
            .backfilled_until
            .is_some_and(|until| std::time::Instant::now() < until);
        self.trim(if fresh { self.backfill_cap() } else { self.cap });
    }

    /// The room's chain moved past seqs that carry nothing to deliver (a backend's
    /// payload that is not JSON): the window still covers through `to`.
    pub(crate) fn advance(&mut self, to: u64) {
        self.last = self.last.max(to);
    }

    pub(crate) fn read(&self, since: u64, limit: usize) -> Option<Read> {
        if since < self.base || since > self.last {
            return None;
        }
        let start = self.frames.partition_point(|f| f.seq.unwrap_or(0) <= since);
        let frames: Vec<_> = self
            .frames
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect();
        let more = self.frames.len() - start > frames.len();
        let scanned = match (more, frames.last()) {
            (true, Some(last)) => last.seq.unwrap_or(since),
            _ => self.last,
        };
        Some(Read {
            frames,
            more,
            scanned,
        })
    }

    /// A backfill is being read: keep what the window holds (up to
    /// `backfill_cap()`) so that it still begins where the backfill ends.
    pub(crate) fn keep_for_backfill(&mut self) {
        self.backfilled_until = Some(std::time::Instant::now() + BACKFILL_LINGER);
    }

    /// Puts frames read from the store in front: they must end exactly where the window
    /// begins (their last seq is `base`) and start right after `since`.
    pub(crate) fn prepend(&mut self, since: u64, older: Vec<Arc<RoomFrame>>) -> bool {
        if since >= self.base {
            return true;
        }
        let ends_at_base = older.last().and_then(|f| f.seq).unwrap_or(since) == self.base;
        if !ends_at_base {
            return false;
        }
        for frame in older.into_iter().rev() {
            self.frames.push_front(frame);
        }
        self.base = since;
        self.backfilled_until = Some(std::time::Instant::now() + BACKFILL_LINGER);
        self.trim(self.backfill_cap());
        true
    }

    /// What a window holds while a backfill is fresh: a backfill (at most
    /// `cap * BACKFILL_FACTOR` frames, see `Rooms::read_store`) in front of as much again
    /// that flowed or was backfilled before it. Trimming at the backfill's size alone
    /// would drop the frames just put in front for the crowd about to read them.
    fn backfill_cap(&self) -> usize {
        self.cap * BACKFILL_FACTOR * 2
    }

    fn trim(&mut self, cap: usize) {
        while self.frames.len() > cap {
            if let Some(oldest) = self.frames.pop_front() {
                self.base = oldest.seq.unwrap_or(self.base);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use switchyard_protocol::RoomName;

    use super::*;

    fn frame(seq: u64, prev: u64) -> Arc<RoomFrame> {
        Arc::new(RoomFrame {
            room: RoomName::parse("r").unwrap(),
            seq: Some(seq),
            prev: Some(prev),
            line: Bytes::from(seq.to_string()),
            ts: 0,
            trace: None,
        })
    }

    fn seqs(read: &Read) -> Vec<u64> {
        read.frames.iter().map(|f| f.seq.unwrap()).collect()
    }

    #[test]
    fn covers_exactly_from_its_base() {
        let mut w = Window::new(10, Arc::from("e"), 3);
        assert!(w
            .read(10, 10)
            .is_some_and(|r| r.frames.is_empty() && r.scanned == 10));
        assert!(w.read(9, 10).is_none());
        w.push(frame(12, 10));
        w.push(frame(15, 12));
        let r = w.read(10, 10).unwrap();
        assert_eq!((seqs(&r), r.more, r.scanned), (vec![12, 15], false, 15));
        let r = w.read(12, 1).unwrap();
        assert_eq!((seqs(&r), r.more, r.scanned), (vec![15], false, 15));
        let r = w.read(10, 1).unwrap();
        assert_eq!((seqs(&r), r.more, r.scanned), (vec![12], true, 12));
        assert!(w.read(16, 10).is_none(), "past the window's last");
    }

    #[test]
    fn trimming_moves_the_base_and_a_broken_chain_restarts_it() {
        let mut w = Window::new(0, Arc::from("e"), 2);
        w.push(frame(1, 0));
        w.push(frame(2, 1));
        w.push(frame(3, 2));
        assert_eq!((w.base(), w.last()), (1, 3));
        assert!(w.read(0, 10).is_none());
        w.push(frame(9, 7)); // 4..=7 were never forwarded
        assert_eq!((w.base(), w.last()), (7, 9));
        assert!(w.read(3, 10).is_none());
        w.push(frame(9, 7)); // a repeat is ignored
        assert_eq!(seqs(&w.read(7, 10).unwrap()), vec![9]);
    }

    #[test]
    fn a_backfill_is_not_trimmed_away_by_the_next_messages() {
        let mut w = Window::new(20, Arc::from("e"), 2);
        w.push(frame(25, 20));
        assert!(w.prepend(5, vec![frame(8, 5), frame(12, 8), frame(20, 12)]));
        w.push(frame(30, 25));
        w.push(frame(31, 30));
        assert_eq!(
            w.base(),
            5,
            "the window keeps its backfill while it is fresh"
        );
        let all: Vec<u64> = w
            .read(5, 10)
            .unwrap()
            .frames
            .iter()
            .map(|f| f.seq.unwrap())
            .collect();
        assert_eq!(all, vec![8, 12, 20, 25, 30, 31]);
    }

    #[test]
    fn messages_during_a_backfill_read_do_not_move_the_base() {
        let mut w = Window::new(20, Arc::from("e"), 1);
        w.push(frame(25, 20));
        let base = w.base();
        w.keep_for_backfill();
        w.push(frame(30, 25));
        w.push(frame(31, 30));
        assert_eq!(w.base(), base);
        assert!(w.prepend(5, vec![frame(8, 5), frame(20, 8)]));
        assert_eq!(seqs(&w.read(5, 10).unwrap()), vec![8, 20, 25, 30, 31]);
    }

    #[test]
    fn a_second_backfill_does_not_trim_away_the_first_or_itself() {
        // cap 1: a backfill holds up to 8 frames, the fresh window 16.
        let mut w = Window::new(100, Arc::from("e"), 1);
        w.push(frame(101, 100));
        let first: Vec<_> = (95..=100).map(|seq| frame(seq, seq - 1)).collect();
        assert!(w.prepend(94, first));
        let second: Vec<_> = (88..=94).map(|seq| frame(seq, seq - 1)).collect();
        assert!(w.prepend(87, second));
        assert_eq!(w.base(), 87, "both backfills are kept");
        assert_eq!(w.read(87, 100).unwrap().frames.len(), 14);
    }

    #[test]
    fn backfill_must_join_the_chain() {
        let mut w = Window::new(20, Arc::from("e"), 4);
        w.push(frame(25, 20));
        assert!(
            !w.prepend(5, vec![frame(8, 5), frame(19, 8)]),
            "ends before base"
        );
        assert!(w.prepend(5, vec![frame(8, 5), frame(20, 8)]));
        assert_eq!(w.base(), 5);
        assert_eq!(seqs(&w.read(5, 10).unwrap()), vec![8, 20, 25]);
        assert!(w.prepend(7, vec![]), "already covered");
    }

    #[test]
    fn advance_covers_seqs_with_nothing_to_deliver() {
        let mut w = Window::new(3, Arc::from("e"), 4);
        w.advance(6);
        assert!(w.read(6, 10).unwrap().frames.is_empty());
        w.push(frame(8, 6));
        assert_eq!(seqs(&w.read(3, 10).unwrap()), vec![8]);
    }
}
