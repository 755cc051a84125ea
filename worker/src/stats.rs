//! Counters of a worker, read by metrics and tests.

use std::sync::atomic::AtomicU64;

#[derive(Debug, Default)]
pub struct Stats {
    /// Stored messages a full outbox could not take (the session caught up instead).
    pub slow_consumer_drops: AtomicU64,
    /// Ephemeral messages lost to a full outbox.
    pub ephemeral_drops: AtomicU64,
    /// Reads of the broker's stored history (subscription points, replays, catch-ups).
    pub store_reads: AtomicU64,
    /// Gaps in a room's live feed filled from the store, once per worker.
    pub room_fills: AtomicU64,
    /// Catch-ups from the store by one session (lag, gap or resume).
    pub catch_ups: AtomicU64,
    /// Messages delivered from the store during catch-up and replay.
    pub replayed: AtomicU64,
    pub sessions_resumed: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    /// Sockets given up because a write made no progress for `write_timeout`.
    pub write_timeouts: AtomicU64,
}
