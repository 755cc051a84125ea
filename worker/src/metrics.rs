//! A worker's metrics: counters owned here as plain atomics (the older [`Stats`] beside
//! them), bumped on the paths they count, and rendered at scrape time by
//! [`render`] with a `worker` label (several workers share one `dev` process).
//!
//! The fan-out latency histogram measures, for every live message written to a socket,
//! the time from the message's acceptance by the store (`ts`, wall-clock milliseconds
//! stamped by the publishing process) to the end of the socket write. The clock is the
//! wall clock because the two ends are often different processes; within one machine
//! it is exact to the millisecond, across machines it is as good as NTP (a few ms).
//! Each write of a batch takes the clock once and records every live message in it.

use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_telemetry::{Exposition, Histogram};

use crate::stats::Stats;

/// Client frame ops, as counted; `invalid` is a frame that did not parse.
pub(crate) const OPS_IN: [&str; 7] = [
    "sub", "unsub", "pub", "presence", "refresh", "ping", "invalid",
];
pub(crate) const OP_IN_INVALID: usize = 6;

/// Server frame ops, as counted; `other` should stay 0.
pub(crate) const OPS_OUT: [&str; 14] = [
    "msg",
    "welcome",
    "subscribed",
    "unsubscribed",
    "ack",
    "presence",
    "join",
    "leave",
    "refreshed",
    "pong",
    "refresh_required",
    "reconnect",
    "error",
    "other",
];

pub(crate) struct Metrics {
    pub(crate) frames_in: [AtomicU64; OPS_IN.len()],
    pub(crate) frames_out: [AtomicU64; OPS_OUT.len()],
    /// WebSocket payload bytes read and written.
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    /// `pub` frames taken to the broker, and their outcomes.
    pub(crate) publishes: AtomicU64,
    pub(crate) publish_acks: AtomicU64,
    pub(crate) publish_failures: AtomicU64,
    /// Messages the room feeds brought to this worker (once per message per worker).
    pub(crate) fanout_messages: AtomicU64,
    /// Live messages offered to local outboxes (once per message per subscriber).
    pub(crate) fanout_offers: AtomicU64,
    /// Live messages written to sockets: the fan-out latency histogram's count.
    pub(crate) deliveries: AtomicU64,
    pub(crate) fanout_latency: Histogram,
    pub(crate) catch_up_messages: Histogram,
    pub(crate) catch_up_time: Histogram,
    pub(crate) drains: AtomicU64,
    pub(crate) connections_accepted: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            frames_in: Default::default(),
            frames_out: Default::default(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            publishes: AtomicU64::new(0),
            publish_acks: AtomicU64::new(0),
            publish_failures: AtomicU64::new(0),
            fanout_messages: AtomicU64::new(0),
            fanout_offers: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            fanout_latency: Histogram::new(),
            catch_up_messages: Histogram::sizes(),
            catch_up_time: Histogram::new(),
            drains: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    #[inline]
    pub(crate) fn frame_in(&self, op: &str) {
        let i = OPS_IN
            .iter()
            .position(|o| *o == op)
            .unwrap_or(OP_IN_INVALID);
        self.frames_in[i].fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn frame_in_invalid(&self) {
        self.frames_in[OP_IN_INVALID].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one server line by its op, read from the line's first bytes (every line
    /// starts `{"op":"<op>"`): no parse, no allocation.
    #[inline]
    pub(crate) fn frame_out(&self, line: &[u8]) {
        self.frames_out[op_out(line)].fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn msg_out(&self) {
        self.frames_out[0].fetch_add(1, Ordering::Relaxed);
    }
}

fn op_out(line: &[u8]) -> usize {
    let Some(rest) = line.strip_prefix(b"{\"op\":\"") else {
        return OPS_OUT.len() - 1;
    };
    let end = rest.iter().position(|b| *b == b'"').unwrap_or(0);
    let op = &rest[..end];
    OPS_OUT
        .iter()
        .position(|o| o.as_bytes() == op)
        .unwrap_or(OPS_OUT.len() - 1)
}

/// What [`render`] reads besides the counters: gauges sampled at scrape time.
pub(crate) struct Gauges {
    pub(crate) connections: u64,
    pub(crate) capacity: u64,
    pub(crate) sessions: u64,
    pub(crate) rooms: u64,
    pub(crate) draining: bool,
    /// Messages queued in outboxes: the sum over sessions and the largest.
    pub(crate) outbox_queued: u64,
    pub(crate) outbox_queued_max: u64,
}

pub(crate) fn render(out: &mut Exposition, worker: &str, m: &Metrics, stats: &Stats, g: &Gauges) {
    let w = [("worker", worker)];
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    out.gauge(
        "switchyard_worker_connections",
        "WebSocket connections this worker holds.",
        &w,
        g.connections as f64,
    );
    out.gauge(
        "switchyard_worker_capacity_connections",
        "Connections this worker takes at most (worker.max_connections).",
        &w,
        g.capacity as f64,
    );
    out.counter(
        "switchyard_worker_connections_accepted_total",
        "WebSocket connections handed to this worker.",
        &w,
        load(&m.connections_accepted),
    );
    out.gauge(
        "switchyard_worker_sessions",
        "Sessions held, attached or detached (waiting to be resumed).",
        &w,
        g.sessions as f64,
    );
    out.gauge(
        "switchyard_worker_rooms",
        "Rooms with local members (one live feed each).",
        &w,
        g.rooms as f64,
    );
    out.gauge(
        "switchyard_worker_draining",
        "1 while the worker drains.",
        &w,
        if g.draining { 1.0 } else { 0.0 },
    );
    out.counter(
        "switchyard_worker_drains_total",
        "Drains started.",
        &w,
        load(&m.drains),
    );
    for (op, n) in OPS_IN.iter().zip(&m.frames_in) {
        out.counter(
            "switchyard_worker_frames_in_total",
            "Client protocol frames (lines) received, by op.",
            &[("worker", worker), ("op", op)],
            load(n),
        );
    }
    for (op, n) in OPS_OUT.iter().zip(&m.frames_out) {
        out.counter(
            "switchyard_worker_frames_out_total",
            "Server protocol frames (lines) written, by op.",
            &[("worker", worker), ("op", op)],
            load(n),
        );
    }
    out.counter(
        "switchyard_worker_received_bytes_total",
        "WebSocket payload bytes received from clients.",
        &w,
        load(&m.bytes_in),
    );
    out.counter(
        "switchyard_worker_sent_bytes_total",
        "WebSocket payload bytes written to clients.",
        &w,
        load(&m.bytes_out),
    );
    out.counter(
        "switchyard_worker_publishes_total",
        "pub frames taken to the broker.",
        &w,
        load(&m.publishes),
    );
    out.counter(
        "switchyard_worker_publish_acks_total",
        "pub frames acknowledged (stored, or sent when ephemeral).",
        &w,
        load(&m.publish_acks),
    );
    out.counter(
        "switchyard_worker_publish_failures_total",
        "pub frames the broker could not take.",
        &w,
        load(&m.publish_failures),
    );
    out.counter(
        "switchyard_worker_fanout_messages_total",
        "Messages the room feeds brought to this worker (once per message per worker).",
        &w,
        load(&m.fanout_messages),
    );
    out.counter(
        "switchyard_worker_fanout_offers_total",
        "Live messages offered to local outboxes (once per message per subscriber).",
        &w,
        load(&m.fanout_offers),
    );
    out.counter(
        "switchyard_worker_deliveries_total",
        "Live messages written to sockets.",
        &w,
        load(&m.deliveries),
    );
    out.histogram(
        "switchyard_fanout_latency_seconds",
        "Publish accepted by the store to the message written to a socket, per delivery.",
        &w,
        &m.fanout_latency.snapshot(),
    );
    out.gauge(
        "switchyard_worker_outbox_queued_messages",
        "Frames queued in session outboxes, summed over sessions (sampled at scrape).",
        &w,
        g.outbox_queued as f64,
    );
    out.gauge(
        "switchyard_worker_outbox_queued_max_messages",
        "Frames queued in the fullest session outbox (sampled at scrape).",
        &w,
        g.outbox_queued_max as f64,
    );
    out.counter(
        "switchyard_worker_slow_consumer_drops_total",
        "Stored messages a full outbox could not take: the session catches up from the store.",
        &w,
        load(&stats.slow_consumer_drops),
    );
    out.counter(
        "switchyard_worker_slow_consumer_closes_total",
        "Sessions closed with 4008: they fell behind the retained history.",
        &w,
        load(&stats.slow_consumer_closes),
    );
    out.counter(
        "switchyard_worker_write_timeouts_total",
        "Sockets given up because a write made no progress for write_timeout (the session is kept for a resume).",
        &w,
        load(&stats.write_timeouts),
    );
    out.counter(
        "switchyard_worker_ephemeral_drops_total",
        "Ephemeral messages lost to a full outbox.",
        &w,
        load(&stats.ephemeral_drops),
    );
    out.counter(
        "switchyard_worker_catch_ups_total",
        "Catch-ups from the window or the store by one session (lag, gap or resume).",
        &w,
        load(&stats.catch_ups),
    );
    out.counter(
        "switchyard_worker_replayed_messages_total",
        "Messages delivered from history (replays and catch-ups).",
        &w,
        load(&stats.replayed),
    );
    out.histogram(
        "switchyard_worker_catch_up_messages",
        "Messages delivered by one catch-up.",
        &w,
        &m.catch_up_messages.snapshot(),
    );
    out.histogram(
        "switchyard_worker_catch_up_duration_seconds",
        "Time one catch-up took, until the session was back at the head.",
        &w,
        &m.catch_up_time.snapshot(),
    );
    out.counter(
        "switchyard_worker_store_reads_total",
        "Reads of the broker's stored history.",
        &w,
        load(&stats.store_reads),
    );
    out.counter(
        "switchyard_worker_room_fills_total",
        "Gaps in a room's live feed filled from the store (once per worker).",
        &w,
        load(&stats.room_fills),
    );
    out.counter(
        "switchyard_worker_sessions_resumed_total",
        "Sessions taken back by a sticky reconnect.",
        &w,
        load(&stats.sessions_resumed),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_ops_come_from_the_line_prefix() {
        assert_eq!(OPS_OUT[op_out(br#"{"op":"msg","room":"a"}"#)], "msg");
        assert_eq!(
            OPS_OUT[op_out(br#"{"op":"refresh_required","x":1}"#)],
            "refresh_required"
        );
        assert_eq!(OPS_OUT[op_out(br#"{"op":"nope"}"#)], "other");
        assert_eq!(OPS_OUT[op_out(b"garbage")], "other");
        for op in OPS_OUT {
            let line = format!(r#"{{"op":"{op}"}}"#);
            assert_eq!(OPS_OUT[op_out(line.as_bytes())], op);
        }
    }
}
