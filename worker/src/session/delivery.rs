//! Delivery of stored messages to one session: the `subscribed` answer with its replay
//! from `since`, and catch-up when the session lagged or saw a gap. Pages come from the
//! room's window when it covers them (shared by every session of the room on this
//! worker), else from the store.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use switchyard_broker::BrokerError;
use switchyard_protocol::frame::{encode_msg, ServerFrame};
use switchyard_protocol::{CloseCode, ErrorCode, RoomName};
use tokio::io::AsyncWrite;
use tracing::debug;

use super::lock;
use super::writer::{End, Gone, Writer};
use crate::Shared;

/// Where a subscription starts, as the reader registered it.
pub(super) struct Start {
    pub(super) head: u64,
    pub(super) store_epoch: Arc<str>,
    pub(super) since: Option<u64>,
    pub(super) epoch: Option<String>,
}

impl<W: AsyncWrite + Unpin> Writer<'_, W> {
    /// Answers `subscribed`, replays `since`, and starts the room's cursor.
    pub(super) async fn subscribe(
        &mut self,
        room: RoomName,
        start: Start,
        reference: Option<String>,
    ) -> Result<(), Gone> {
        let Start {
            head,
            store_epoch,
            since,
            epoch,
        } = start;
        let (start, recovered, replay) = match since {
            None => (head, true, Vec::new()),
            Some(n) => {
                let same_epoch = epoch.as_deref().is_none_or(|e| e == &*store_epoch);
                // A since from another history means nothing here: replay all that is retained.
                let from = if same_epoch && n <= head { n } else { 0 };
                let mut replay = Vec::new();
                let mut cursor = from;
                let mut recovered = same_epoch && n <= head;
                let mut first = true;
                loop {
                    let page = match page(self.shared, &room, cursor).await {
                        Ok(page) => page,
                        Err(err) => return self.subscribe_failed(&room, reference, err).await,
                    };
                    if first {
                        recovered &= page.recovered;
                        first = false;
                    }
                    cursor = cursor.max(page.scanned);
                    replay.extend(page.lines);
                    if !page.more {
                        break;
                    }
                }
                (cursor.max(from), recovered, replay)
            }
        };
        let line = ServerFrame::Subscribed {
            room: room.as_str().into(),
            reference: reference.map(Into::into),
            seq: head,
            epoch: (&*store_epoch).into(),
            recovered,
            replayed: replay.len() as u64,
        }
        .encode();
        self.push(&line).await?;
        self.shared
            .stats
            .replayed
            .fetch_add(replay.len() as u64, Ordering::Relaxed);
        for line in &replay {
            self.push(line).await?;
        }
        self.state.cursors.insert(room, start);
        self.flush().await
    }

    /// The store could not be read: undo the subscription and say so.
    async fn subscribe_failed(
        &mut self,
        room: &RoomName,
        reference: Option<String>,
        err: BrokerError,
    ) -> Result<(), Gone> {
        debug!(error = %err, room = %room, "subscribe: store unavailable");
        let session = self.session;
        if lock(&session.subs).remove(room).is_some() {
            super::leave_room(self.shared, session, room).await;
        }
        let line = ServerFrame::Error {
            reference: reference.map(Into::into),
            room: Some(room.as_str().into()),
            code: ErrorCode::Unavailable,
            message: "the store is unavailable: subscribe again".into(),
        }
        .encode();
        self.push(&line).await
    }

    pub(super) async fn catch_up_lagged(&mut self) -> Result<Option<End>, Gone> {
        let (rooms, conn) = (&self.shared.rooms, &self.session.conn);
        let lagging: Vec<RoomName> = self
            .state
            .cursors
            .iter_mut()
            .filter_map(|(room, cursor)| {
                cursor.lagged |= rooms.take_lagged(room, conn);
                cursor.lagged.then(|| room.clone())
            })
            .collect();
        for room in lagging {
            if let Some(end) = self.catch_up(&room).await? {
                return Ok(Some(end));
            }
        }
        Ok(None)
    }

    /// Feeds a room from its window or the store at the client's pace until it reaches
    /// the head; its size and time go to the catch-up histograms.
    pub(super) async fn catch_up(&mut self, room: &RoomName) -> Result<Option<End>, Gone> {
        if self.shared.config.fault_injection.skip_gap_fill {
            self.shared.rooms.take_lagged(room, &self.session.conn);
            if let Some(cursor) = self.state.cursors.get_mut(room) {
                cursor.lagged = false;
            }
            return Ok(None);
        }
        self.shared.stats.catch_ups.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let mut delivered = 0u64;
        let result = self.catch_up_pages(room, &mut delivered).await;
        let metrics = &self.shared.metrics;
        metrics.catch_up_messages.observe(delivered);
        metrics
            .catch_up_time
            .observe(started.elapsed().as_micros() as u64);
        result
    }

    async fn catch_up_pages(
        &mut self,
        room: &RoomName,
        delivered: &mut u64,
    ) -> Result<Option<End>, Gone> {
        loop {
            let Some(cursor) = self.state.cursors.get_mut(room) else {
                return Ok(None);
            };
            // Cleared before the read: a drop after it sets it again and we go round.
            cursor.lagged = false;
            let since = cursor.last;
            self.shared.rooms.take_lagged(room, &self.session.conn);
            let page = match page(self.shared, room, since).await {
                Ok(page) => page,
                Err(err) => {
                    debug!(error = %err, room = %room, "catch-up: store unavailable, retrying later");
                    if let Some(cursor) = self.state.cursors.get_mut(room) {
                        cursor.lagged = true;
                    }
                    return Ok(None);
                }
            };
            if !page.recovered {
                debug!(room = %room, since, "fell behind the retained history: closing with 4008");
                self.shared
                    .stats
                    .slow_consumer_closes
                    .fetch_add(1, Ordering::Relaxed);
                return self.close(CloseCode::SlowConsumer).await.map(Some);
            }
            self.shared
                .stats
                .replayed
                .fetch_add(page.lines.len() as u64, Ordering::Relaxed);
            *delivered += page.lines.len() as u64;
            for line in &page.lines {
                self.push(line).await?;
            }
            self.flush().await?;
            let Some(cursor) = self.state.cursors.get_mut(room) else {
                return Ok(None);
            };
            cursor.last = cursor.last.max(page.scanned);
            if !page.more && !self.shared.rooms.take_lagged(room, &self.session.conn) {
                return Ok(None);
            }
        }
    }
}

/// The `msg` lines of a room after `since`, a page at a time: from the room's window
/// when it covers `since` (shared with every session of the room on this worker),
/// else from the store.
async fn page(shared: &Shared, room: &RoomName, since: u64) -> Result<Page, BrokerError> {
    let limit = shared.config.catch_up_page;
    if let Some(read) = shared.rooms.read_since(room, since, limit).await? {
        return Ok(Page {
            lines: read.frames.iter().map(|f| f.line.clone()).collect(),
            more: read.more,
            scanned: read.scanned,
            recovered: true,
        });
    }
    let history = shared.store.history(room, since, limit).await?;
    Ok(Page {
        lines: history
            .messages
            .iter()
            .map(|m| encode_msg(room.as_str(), m.seq, &m.from, m.ts, &m.data))
            .collect(),
        more: history.more,
        scanned: history.scanned,
        recovered: history.recovered,
    })
}

/// A page of a room's messages, encoded, with where it ends.
struct Page {
    lines: Vec<Bytes>,
    more: bool,
    /// The seq this page went through.
    scanned: u64,
    /// Nothing after `since` was lost.
    recovered: bool,
}
