//! The fan-out of one room's live feed to the worker's local members.
//!
//! Each message is encoded once into a [`RoomFrame`] and the same `Arc` is offered to
//! every member's outbox with `try_send`. A full outbox never blocks the room: the
//! member is marked lagged and catches up from the store at its own pace (PROTOCOL §4).
//!
//! The room keeps the last seq it forwarded. A message whose `prev` is past it, or a
//! [`LiveEvent::Lagged`] from the feed, means the feed lost something (a NATS
//! reconnect, a leader change): the room reads the missing messages from the store once
//! and forwards them before going on, so its members see one unbroken chain instead of
//! each reading the store itself (DESIGN "The path of a message", step 4).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use futures_util::StreamExt;
use switchyard_broker::{LiveEvent, LiveFeed, Message};
use switchyard_protocol::frame::{encode_msg, ServerFrame};
use switchyard_protocol::RoomName;
use switchyard_telemetry::histogram::now_ms;
use switchyard_telemetry::trace;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::metrics::Metrics;
use crate::room::{lock, LocalRoom, Member, RoomSettings};
use crate::session::outbox::{OutItem, RoomEvent, RoomFrame};
use crate::session::queue::TrySendError;
use crate::stats::Stats;
use crate::store::Store;

pub(crate) struct FanOut {
    worker: Arc<str>,
    room: RoomName,
    local: Weak<LocalRoom>,
    store: Store,
    stats: Arc<Stats>,
    metrics: Arc<Metrics>,
    page: usize,
    /// The last seq forwarded (the room's head when the feed started).
    last: u64,
    /// Fault injection: forward past gaps (chaos tests only).
    skip_gap_fill: bool,
    head_check: std::time::Duration,
}

/// Head checks soon after a feed starts: in a NATS cluster a new subscription's interest
/// reaches the stream leader's server a moment later, and a message republished before
/// that is lost to this feed.
const EARLY_HEAD_CHECKS: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(200),
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(3),
];

impl FanOut {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        worker: Arc<str>,
        room: RoomName,
        local: Weak<LocalRoom>,
        store: Store,
        stats: Arc<Stats>,
        metrics: Arc<Metrics>,
        settings: RoomSettings,
        head: u64,
    ) -> FanOut {
        FanOut {
            worker,
            room,
            local,
            store,
            stats,
            metrics,
            page: settings.page,
            last: head,
            skip_gap_fill: settings.skip_gap_fill,
            head_check: settings.head_check,
        }
    }

    pub(crate) async fn run(mut self, mut feed: LiveFeed, stop: CancellationToken) {
        debug!(room = %self.room, "live feed started");
        let started = tokio::time::Instant::now();
        let mut checks = EARLY_HEAD_CHECKS.into_iter().map(|after| started + after);
        let mut next_check = checks.next().unwrap_or(started + self.head_check);
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(next_check) => {
                    self.check_head().await;
                    next_check = checks.next().unwrap_or_else(|| tokio::time::Instant::now() + self.head_check);
                    continue;
                }
                event = feed.next() => match event {
                    Some(event) => event,
                    None => break,
                },
            };
            if self.local.strong_count() == 0 {
                break;
            }
            match event {
                LiveEvent::Msg(msg) => self.on_msg(&msg).await,
                LiveEvent::Join { user, .. } => {
                    let line = ServerFrame::Join {
                        room: self.room.as_str().into(),
                        user: user.as_str().into(),
                    };
                    self.offer_event(line.encode());
                }
                LiveEvent::Leave { user, .. } => {
                    let line = ServerFrame::Leave {
                        room: self.room.as_str().into(),
                        user: user.as_str().into(),
                    };
                    self.offer_event(line.encode());
                }
                LiveEvent::Lagged => self.fill(None).await,
            }
        }
        debug!(room = %self.room, "live feed stopped");
    }

    /// A message the live feed lost shows as a gap only when a later one arrives: the
    /// store's head says so at once, and the room fills up to it.
    async fn check_head(&mut self) {
        match self.store.history(&self.room, 0, 0).await {
            Ok(history) if history.head > self.last => {
                debug!(room = %self.room, head = history.head, last = self.last, "live feed lost its last messages");
                self.fill(Some(history.head)).await;
            }
            Ok(_) => {}
            Err(err) => debug!(room = %self.room, error = %err, "head check failed; next period"),
        }
    }

    async fn on_msg(&mut self, msg: &Message) {
        let Some(seq) = msg.seq else {
            return self.forward(msg, None);
        };
        if seq <= self.last {
            return; // forwarded already, or from before the feed started
        }
        if msg.prev.is_some_and(|prev| prev > self.last) {
            self.fill(msg.prev).await;
        }
        // The chain as the members saw it: after a fill, `last` is this message's prev.
        let prev = msg.prev.or(Some(self.last));
        self.forward(msg, prev);
        self.last = seq;
    }

    /// Reads the store from `last` (through `until`, or to the head) and forwards what
    /// the feed lost. On failure every member checks the room itself.
    async fn fill(&mut self, until: Option<u64>) {
        if self.skip_gap_fill {
            return;
        }
        let mut last = self.last;
        self.stats.room_fills.fetch_add(1, Ordering::Relaxed);
        loop {
            let page = match self.store.history(&self.room, last, self.page).await {
                Ok(page) => page,
                Err(err) => {
                    debug!(room = %self.room, error = %err, "gap fill failed: members catch up themselves");
                    return self.mark_all_lagged();
                }
            };
            for msg in &page.messages {
                let Some(seq) = msg.seq else { continue };
                self.forward(msg, Some(last));
                last = seq;
            }
            last = last.max(page.scanned);
            self.last = last;
            if let Some(local) = self.local.upgrade() {
                if let Some(window) = lock(&local.window).as_mut() {
                    window.advance(last);
                }
            }
            if !page.more || until.is_some_and(|until| last >= until) {
                return;
            }
        }
    }

    fn forward(&self, msg: &Message, prev: Option<u64>) {
        let Some(local) = self.local.upgrade() else {
            return;
        };
        // One span per message per worker (while traces are exported), in the
        // publisher's trace through the message's `traceparent`.
        let span = trace::span(|| {
            tracing::info_span!(
                "fanout",
                worker.id = %self.worker,
                room = %self.room,
                seq = msg.seq.map(|seq| seq as i64),
                deliveries = tracing::field::Empty,
                queue_ms = tracing::field::Empty,
            )
        });
        trace::set_parent(&span, msg.traceparent.as_deref());
        let frame = Arc::new(RoomFrame {
            room: self.room.clone(),
            seq: msg.seq,
            prev,
            line: encode_msg(self.room.as_str(), msg.seq, &msg.from, msg.ts, &msg.data),
            ts: msg.ts,
            trace: trace::sampled_trace_id(&span),
        });
        if frame.seq.is_some() {
            // Into the window before any member can see it: a member that takes its
            // subscription point from the window then never misses it (see `Rooms::point`).
            if let Some(window) = lock(&local.window).as_mut() {
                window.push(frame.clone());
            }
        }
        let members = local.members.read().unwrap_or_else(|e| e.into_inner());
        tracing::trace!(room = %self.room, seq = ?msg.seq, members = members.len(), "fan-out");
        self.metrics.fanout_messages.fetch_add(1, Ordering::Relaxed);
        let mut offered = 0u64;
        for member in members.values() {
            match member.outbox.try_send(OutItem::Msg(frame.clone())) {
                Ok(()) => offered += 1,
                Err(TrySendError::Full(_)) if frame.seq.is_some() => {
                    self.stats
                        .slow_consumer_drops
                        .fetch_add(1, Ordering::Relaxed);
                    member.lagged.store(true, Ordering::Release);
                    member.outbox.wake();
                }
                Err(TrySendError::Full(_)) => {
                    self.stats.ephemeral_drops.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Closed(_)) => {}
            }
        }
        self.metrics
            .fanout_offers
            .fetch_add(offered, Ordering::Relaxed);
        if !span.is_none() {
            span.record("deliveries", offered as i64);
            // Store accepted → here: the time the message spent in NATS and the feed.
            span.record("queue_ms", now_ms().saturating_sub(msg.ts) as i64);
        }
    }

    fn members(&self) -> Option<Arc<LocalRoom>> {
        self.local.upgrade()
    }

    fn mark_all_lagged(&self) {
        let Some(local) = self.members() else { return };
        for member in local
            .members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            member.lagged.store(true, Ordering::Release);
            member.outbox.wake();
        }
    }

    /// Presence events are not stored: a full outbox loses them, as it loses ephemerals.
    fn offer_event(&self, line: bytes::Bytes) {
        let Some(local) = self.members() else { return };
        let members: &HashMap<Arc<str>, Member> =
            &local.members.read().unwrap_or_else(|e| e.into_inner());
        let event = Arc::new(RoomEvent {
            room: self.room.clone(),
            line,
        });
        for member in members.values() {
            let _ = member.outbox.try_send(OutItem::RoomEvent(event.clone()));
        }
    }
}
