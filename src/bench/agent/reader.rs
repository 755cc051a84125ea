//! The hot path: what a subscriber does with each text frame. One clock read per frame;
//! each piece is split on `\n` and a `msg` is read without a JSON parse: its seq by
//! `peek_msg_seq`, the publisher's stamps from the tail of `data`. Counts go to one of a
//! few shards under a lock taken once per frame.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use switchyard_protocol::frame::{leading_u64, peek_msg_seq, split_pieces};
use switchyard_protocol::ServerFrame;

use crate::bench::conn::TlsSessions;
use crate::bench::stats::Histogram;

/// Shards of counters: connections pick one by index, so two threads rarely meet.
pub(crate) const SHARDS: usize = 16;

/// Nanoseconds since `epoch_ns` (CLOCK_REALTIME, shared by every process of the run).
pub(crate) fn now_ns(epoch_ns: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    now.saturating_sub(epoch_ns)
}

/// Reads `{"s":<scheduled>,"t":<sent>` at the start of a bench message's `data`, the
/// last field of a `msg` line.
pub(crate) fn peek_stamps(piece: &[u8]) -> Option<(u64, u64)> {
    const MARK: &[u8] = b"\"data\":{\"s\":";
    // `data` is short and last: look only at the tail.
    let from = piece.len().saturating_sub(96);
    let at = memchr::memmem::find(&piece[from..], MARK)? + from + MARK.len();
    let (s, rest) = leading_u64(&piece[at..])?;
    let rest = rest.strip_prefix(b",\"t\":")?;
    let (t, _) = leading_u64(rest)?;
    Some((s, t))
}

#[derive(Default)]
pub(crate) struct Shard {
    pub(crate) deliveries: u64,
    pub(crate) dups: u64,
    pub(crate) lat: Histogram,
    pub(crate) lat_sched: Histogram,
    /// Since the last tick.
    pub(crate) tick_deliveries: u64,
    pub(crate) tick_dups: u64,
    pub(crate) tick_lat: Histogram,
    /// Storms: catch-up times and messages replayed.
    pub(crate) from_storm: Histogram,
    pub(crate) from_attempt: Histogram,
    pub(crate) replayed: u64,
    pub(crate) caught_up: u64,
    /// Connect (to `subscribed`) times.
    pub(crate) connect: Histogram,
}

pub(crate) struct Shards {
    pub(crate) shards: Vec<Mutex<Shard>>,
    pub(crate) epoch_ns: u64,
}

impl Shards {
    pub(crate) fn new(epoch_ns: u64) -> Shards {
        Shards {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            epoch_ns,
        }
    }

    pub(crate) fn get(&self, n: u64) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding a shard ends the agent anyway: take the data as it is.
        self.shards[n as usize % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// A storm reconnect waiting to catch up.
pub(crate) struct Catching {
    pub(crate) storm_ns: u64,
    pub(crate) attempt_ns: u64,
    /// The room's seq at the subscription point, once `subscribed` arrived.
    pub(crate) target: Option<u64>,
}

/// One connection's view of its room.
#[derive(Default)]
pub(crate) struct ConnState {
    pub(crate) last_seq: u64,
    pub(crate) epoch: Option<String>,
    pub(crate) subscribed: bool,
    pub(crate) refused: bool,
    /// Reconnected after a storm and not yet counted as done.
    pub(crate) storm_pending: bool,
    pub(crate) catching: Option<Catching>,
    /// Kept across a storm's reconnect, as a browser keeps its TLS tickets.
    pub(crate) tls: TlsSessions,
}

impl ConnState {
    /// Handles one text frame.
    pub(crate) fn on_text(&mut self, payload: &[u8], n: u64, shards: &Shards) {
        let now = now_ns(shards.epoch_ns);
        let mut shard = shards.get(n);
        for piece in split_pieces(payload) {
            if !piece.starts_with(b"{\"op\":\"msg\"") {
                self.on_other(piece, now, &mut shard);
                continue;
            }
            let Some(seq) = peek_msg_seq(piece) else {
                continue;
            };
            if seq <= self.last_seq {
                shard.dups += 1;
                shard.tick_dups += 1;
                continue;
            }
            self.last_seq = seq;
            shard.deliveries += 1;
            shard.tick_deliveries += 1;
            if let Some((s, t)) = peek_stamps(piece) {
                let lat = now.saturating_sub(t);
                shard.lat.record(lat);
                shard.tick_lat.record(lat);
                shard.lat_sched.record(now.saturating_sub(s));
            }
            self.check_caught_up(now, &mut shard);
        }
    }

    fn on_other(&mut self, piece: &[u8], now: u64, shard: &mut Shard) {
        if piece.starts_with(b"{\"op\":\"subscribed\"") {
            if let Ok(ServerFrame::Subscribed {
                seq,
                epoch,
                replayed,
                ..
            }) = ServerFrame::parse(piece)
            {
                self.subscribed = true;
                self.epoch = Some(epoch.into_owned());
                if let Some(catching) = &mut self.catching {
                    catching.target = Some(seq);
                    shard.replayed += replayed;
                }
                self.check_caught_up(now, shard);
            }
        } else if piece.starts_with(b"{\"op\":\"error\"") && !self.subscribed {
            self.refused = true;
        }
    }

    fn check_caught_up(&mut self, now: u64, shard: &mut Shard) {
        let done =
            matches!(&self.catching, Some(Catching { target: Some(t), .. }) if self.last_seq >= *t);
        if done {
            if let Some(c) = self.catching.take() {
                shard.from_storm.record(now.saturating_sub(c.storm_ns));
                shard.from_attempt.record(now.saturating_sub(c.attempt_ns));
                shard.caught_up += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_protocol::frame::encode_msg;

    #[test]
    fn stamps_and_seq_are_read_from_encoded_lines() {
        let line = encode_msg(
            "bench.r1",
            Some(58),
            "pub0",
            1,
            br#"{"s":1200,"t":1250,"k":7}"#,
        );
        assert_eq!(peek_stamps(&line), Some((1200, 1250)));
        assert_eq!(peek_msg_seq(&line), Some(58));
        assert_eq!(peek_stamps(br#"{"op":"msg","data":{"x":1}}"#), None);
    }

    #[test]
    fn batched_frames_count_once_and_spot_duplicates() {
        let shards = Shards::new(0);
        let mut state = ConnState::default();
        let a = encode_msg("r", Some(1), "p", 1, br#"{"s":1,"t":2}"#);
        let b = encode_msg("r", Some(2), "p", 1, br#"{"s":1,"t":2}"#);
        let mut frame = Vec::new();
        for piece in [&a, &b, &a] {
            frame.extend_from_slice(piece);
            frame.push(b'\n');
        }
        state.on_text(&frame, 0, &shards);
        let shard = shards.get(0);
        assert_eq!((shard.deliveries, shard.dups), (2, 1));
        assert_eq!(shard.lat.count(), 2);
    }
}
