//! The writer half: the only task that writes to the socket. It drains the outbox,
//! batching whatever is queued into one newline-delimited text frame; keeps each room's
//! cursor so that no seq is written twice or skipped (a gap is filled from the store);
//! sends heartbeats and token-expiry notices; and writes every close.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketWrite};
use rand::RngExt;
use switchyard_broker::BrokerError;
use switchyard_protocol::frame::{encode_msg, ServerFrame};
use switchyard_protocol::limits::REFRESH_NOTICE;
use switchyard_protocol::{CloseCode, ErrorCode, RoomName};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::connection::Ctl;
use super::outbox::OutItem;
use super::reader::Liveness;
use super::{lock, Session, WriterState};
use crate::Shared;

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The socket died or went silent: detach the session.
    Lost,
    /// A resume took the session over: detach it for the new socket.
    TakenOver,
    /// The client closed: end the session.
    ClientClosed,
    /// The server closed with this code: end the session.
    Closed(CloseCode),
}

/// Where a subscription starts, as the reader registered it.
struct Start {
    head: u64,
    store_epoch: Arc<str>,
    since: Option<u64>,
    epoch: Option<String>,
}

/// A failed write means the socket is gone.
struct Gone;

/// A frame of batched lines, written when full or when nothing more is queued.
struct Batch {
    buf: Vec<u8>,
    max: usize,
}

impl Batch {
    fn push(&mut self, line: &[u8]) {
        if !self.buf.is_empty() {
            self.buf.push(b'\n');
        }
        self.buf.extend_from_slice(line);
    }

    fn is_full(&self) -> bool {
        self.buf.len() >= self.max
    }
}

struct Writer<'a, W> {
    shared: &'a Arc<Shared>,
    session: &'a Arc<Session>,
    ws: &'a mut WebSocketWrite<W>,
    state: &'a mut WriterState,
    batch: Batch,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run<W: AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    ws: &mut WebSocketWrite<W>,
    state: &mut WriterState,
    ctl: &mut mpsc::Receiver<Ctl>,
    liveness: &Liveness,
    stop: CancellationToken,
) -> End {
    let config = &shared.config;
    let mut w = Writer {
        shared,
        session,
        ws,
        state,
        batch: Batch {
            buf: Vec::new(),
            max: config.max_batch_bytes,
        },
    };
    let mut heartbeat =
        tokio::time::interval_at(Instant::now() + config.heartbeat, config.heartbeat);
    let mut close = session.close.subscribe();
    let mut grant = session.grant.subscribe();
    let mut ping_id = 0u64;
    let (mut notice_at, mut expire_at) = expiry_times(grant.borrow_and_update().exp, config.leeway);
    let mut noticed = false;
    // A resumed session may have lag to fill right away.
    session.wake.notify_one();
    let result: Result<End, Gone> = async {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(End::TakenOver),
                Some(item) = ctl.recv() => match item {
                    Ctl::Pong(payload) => w.write(Frame::pong(Payload::Owned(payload))).await?,
                    Ctl::CloseEcho(payload) => {
                        w.write(Frame::close_raw(Payload::Owned(payload))).await?;
                        return Ok(End::ClientClosed);
                    }
                    Ctl::Close(code) => return w.close(code).await,
                    Ctl::Confirmed(id) => w.state.cursors.confirm(id),
                },
                Ok(()) = close.changed() => {
                    let code = *close.borrow_and_update();
                    if let Some(code) = code {
                        return w.close(code).await;
                    }
                }
                _ = heartbeat.tick() => {
                    if liveness.silent_for() > config.heartbeat * 2 {
                        debug!("no frame for two heartbeats: dropping the connection");
                        return Ok(End::Lost);
                    }
                    ping_id += 1;
                    w.state.cursors.probe(ping_id);
                    w.write(Frame::new(true, OpCode::Ping, None, Payload::Owned(ping_id.to_be_bytes().to_vec()))).await?;
                    // Retries catch-ups that failed while the broker was away.
                    if let Some(end) = w.catch_up_lagged().await? {
                        return Ok(end);
                    }
                }
                Ok(()) = grant.changed() => {
                    (notice_at, expire_at) = expiry_times(grant.borrow_and_update().exp, config.leeway);
                    noticed = false;
                }
                _ = sleep_until(notice_at), if !noticed => {
                    noticed = true;
                    let left = expire_at.saturating_duration_since(Instant::now()).saturating_sub(config.leeway);
                    let line = ServerFrame::RefreshRequired { expires_in_ms: left.as_millis() as u64 }.encode();
                    w.batch.push(&line);
                    w.flush().await?;
                }
                _ = sleep_until(expire_at) => {
                    debug!("token expired and was not refreshed: closing with 1008");
                    return w.close(CloseCode::Policy).await;
                }
                _ = session.wake.notified() => {
                    if let Some(end) = w.catch_up_lagged().await? {
                        return Ok(end);
                    }
                }
                item = w.state.outbox.recv() => {
                    let Some(item) = item else { return Ok(End::Closed(CloseCode::Internal)) };
                    if let Some(end) = w.item(item).await? {
                        return Ok(end);
                    }
                    // Batch whatever else is queued into the same frame.
                    while !w.batch.is_full() {
                        let Ok(item) = w.state.outbox.try_recv() else { break };
                        if let Some(end) = w.item(item).await? {
                            return Ok(end);
                        }
                    }
                    w.flush().await?;
                }
            }
        }
    }
    .await;
    result.unwrap_or(End::Lost)
}

/// When to send `refresh_required` (min(30 s, half the token's life) before `exp`) and
/// when to close for expiry (`exp` plus leeway).
fn expiry_times(exp: f64, leeway: Duration) -> (Instant, Instant) {
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let left = Duration::from_secs_f64((exp - now_secs).clamp(0.0, 1e9));
    let notice = REFRESH_NOTICE.min(left / 2);
    let now = Instant::now();
    (now + left.saturating_sub(notice), now + left + leeway)
}

impl<W: AsyncWrite + Unpin> Writer<'_, W> {
    async fn write(&mut self, frame: Frame<'_>) -> Result<(), Gone> {
        match tokio::time::timeout(
            self.shared.config.write_timeout(),
            self.ws.write_frame(frame),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                debug!(error = %err, "write failed");
                Err(Gone)
            }
            Err(_) => {
                debug!("write timed out");
                Err(Gone)
            }
        }
    }

    async fn flush(&mut self) -> Result<(), Gone> {
        if self.batch.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.batch.buf);
        let result = self.write(Frame::text(Payload::Borrowed(&buf))).await;
        self.batch.buf = buf;
        self.batch.buf.clear();
        result
    }

    async fn push(&mut self, line: &[u8]) -> Result<(), Gone> {
        self.batch.push(line);
        if self.batch.is_full() {
            self.flush().await?;
        }
        Ok(())
    }

    async fn close(&mut self, code: CloseCode) -> Result<End, Gone> {
        if code == CloseCode::Drained {
            let after_ms = rand::rng()
                .random_range(0..self.shared.config.drain_window.as_millis().max(1) as u64);
            let line = ServerFrame::Reconnect {
                reason: "draining".into(),
                after_ms,
            }
            .encode();
            self.batch.push(&line);
        }
        self.flush().await?;
        self.write(Frame::close(code.code(), code.reason().as_bytes()))
            .await?;
        Ok(End::Closed(code))
    }

    async fn item(&mut self, item: OutItem) -> Result<Option<End>, Gone> {
        match item {
            OutItem::Msg(frame) => {
                let Some(cursor) = self.state.cursors.get_mut(&frame.room) else {
                    return Ok(None);
                };
                let Some(seq) = frame.seq else {
                    self.push(&frame.line).await?;
                    return Ok(None);
                };
                if seq <= cursor.last {
                    return Ok(None);
                }
                let skip_gaps = self.shared.config.fault_injection.skip_gap_fill;
                if skip_gaps || frame.prev.is_none_or(|prev| prev == cursor.last) {
                    cursor.last = seq;
                    self.push(&frame.line).await?;
                    return Ok(None);
                }
                // A gap: what came between is in the store (this message too).
                self.flush().await?;
                return self.catch_up(&frame.room).await;
            }
            OutItem::RoomEvent { room, line } => {
                if self.state.cursors.get_mut(&room).is_some() {
                    self.push(&line).await?;
                }
            }
            OutItem::Line(line) => self.push(&line).await?,
            OutItem::Subscribe {
                room,
                since,
                epoch,
                reference,
                head,
                store_epoch,
                lagged,
            } => {
                self.flush().await?;
                let start = Start {
                    head,
                    store_epoch,
                    since,
                    epoch,
                };
                self.subscribe(room, start, reference, lagged).await?;
            }
            OutItem::Unsubscribe { room, reference } => {
                self.state.cursors.remove(&room);
                let line = ServerFrame::Unsubscribed {
                    room: room.as_str().into(),
                    reference: reference.map(Into::into),
                }
                .encode();
                self.push(&line).await?;
            }
        }
        Ok(None)
    }

    /// Answers `subscribed`, replays `since`, and starts the room's cursor.
    async fn subscribe(
        &mut self,
        room: RoomName,
        start: Start,
        reference: Option<String>,
        lagged: Arc<std::sync::atomic::AtomicBool>,
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
        self.state.cursors.insert(room, start, lagged);
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

    async fn catch_up_lagged(&mut self) -> Result<Option<End>, Gone> {
        let lagging: Vec<RoomName> = self
            .state
            .cursors
            .iter_mut()
            .filter(|(_, c)| c.lagged.load(Ordering::Acquire))
            .map(|(room, _)| room.clone())
            .collect();
        for room in lagging {
            if let Some(end) = self.catch_up(&room).await? {
                return Ok(Some(end));
            }
        }
        Ok(None)
    }

    /// Feeds a room from its window or the store at the client's pace until it reaches
    /// the head.
    async fn catch_up(&mut self, room: &RoomName) -> Result<Option<End>, Gone> {
        if self.shared.config.fault_injection.skip_gap_fill {
            if let Some(cursor) = self.state.cursors.get_mut(room) {
                cursor.lagged.store(false, Ordering::Release);
            }
            return Ok(None);
        }
        self.shared.stats.catch_ups.fetch_add(1, Ordering::Relaxed);
        loop {
            let Some(cursor) = self.state.cursors.get_mut(room) else {
                return Ok(None);
            };
            // Cleared before the read: a drop after it sets it again and we go round.
            cursor.lagged.store(false, Ordering::Release);
            let since = cursor.last;
            let page = match page(self.shared, room, since).await {
                Ok(page) => page,
                Err(err) => {
                    debug!(error = %err, room = %room, "catch-up: store unavailable, retrying later");
                    if let Some(cursor) = self.state.cursors.get_mut(room) {
                        cursor.lagged.store(true, Ordering::Release);
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
            for line in &page.lines {
                self.push(line).await?;
            }
            self.flush().await?;
            let Some(cursor) = self.state.cursors.get_mut(room) else {
                return Ok(None);
            };
            cursor.last = cursor.last.max(page.scanned);
            if !page.more && !cursor.lagged.load(Ordering::Acquire) {
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
