//! The writer half: the only task that writes to the socket. It drains the outbox,
//! batching whatever is queued into one newline-delimited text frame; keeps each room's
//! cursor so that no seq is written twice or skipped (a gap is filled through
//! [`super::delivery`]); sends heartbeats and token-expiry notices; and writes every
//! close.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fastwebsockets::{Frame, OpCode, Payload, WebSocketWrite};
use rand::RngExt;
use switchyard_protocol::frame::ServerFrame;
use switchyard_protocol::limits::REFRESH_NOTICE;
use switchyard_protocol::CloseCode;
use switchyard_telemetry::TraceId;
use tokio::io::AsyncWrite;
use tokio::time::Sleep;
use tracing::debug;

use super::millis::Millis;
use super::outbox::{OutItem, RoomFrame, SubscribeItem, UnsubscribeItem};
use super::queue::Next;
use super::reader::Liveness;
use super::{Owed, Session, WriterState};
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

/// A failed write means the socket is gone.
pub(super) struct Gone;

/// A frame of batched lines, written when full or when nothing more is queued. Made for
/// each event the writer handles and dropped with it: an idle socket keeps no buffer
/// (keeping what an ordinary frame needs cost every idle socket its last frame's size,
/// to save an allocation per write that is tens of nanoseconds beside the write's
/// microseconds).
pub(super) struct Batch {
    buf: Vec<u8>,
    max: usize,
    /// The live messages in `buf`: their accept time (ms) and trace, recorded in the
    /// fan-out latency histogram once the frame is written.
    live: Vec<(u64, Option<TraceId>)>,
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

pub(super) struct Writer<'a, W> {
    pub(super) shared: &'a Arc<Shared>,
    pub(super) session: &'a Arc<Session>,
    pub(super) ws: &'a mut WebSocketWrite<W>,
    pub(super) state: &'a mut WriterState,
    pub(super) batch: Batch,
}

/// What woke the writer.
enum Event {
    /// The session's wake-up: a takeover, the reader's requests, a close, a refreshed
    /// grant, lagged rooms; or its alarm (the heartbeat or the token is due).
    Wake,
    /// The outbox's next item; `None` once the session has ended.
    Out(Option<OutItem>),
}

/// The writer's clocks and counters, carried from one event to the next. The worker's
/// [`Alarms`] wake the writer when the next is due.
///
/// [`Alarms`]: super::alarms::Alarms
struct Clock {
    /// The grant's expiry (seconds since the epoch) the token's times come from.
    exp: f64,
    beat_at: Millis,
    /// When the token next needs the writer: its `refresh_required` notice, then, once
    /// `noticed`, its expiry.
    token_at: Millis,
    expire_at: Millis,
    noticed: bool,
    /// The last ping's id, from 1 (its pong's payload: `Terms::pong_id`).
    ping_id: u32,
    /// Pongs confirm what the client has read (`super::cursor`): while messages flow, a
    /// probe goes out at least every [`PROBE_EVERY`], not just every heartbeat, so that
    /// a resume rewinds seconds, not to the start of the subscription.
    last_probe: Millis,
}

impl Clock {
    /// One alarm serves the heartbeat and the token: whichever is due first.
    fn next(&self) -> Millis {
        self.beat_at.min(self.token_at)
    }
}

/// Runs the writer until the connection ends; `Err(Gone)` when a write failed (the
/// socket is lost).
///
/// Not an `async fn`: one keeps its arguments for its whole life beside what the body
/// makes of them, and this future is held by every connection. For the same reason the
/// [`Writer`] (with its batch) is made for each event, inside that event's boxed future.
pub(super) fn run<'a, W: AsyncWrite + Unpin>(
    shared: &'a Arc<Shared>,
    session: &'a Arc<Session>,
    ws: &'a mut WebSocketWrite<W>,
    state: &'a mut WriterState,
    liveness: &'a Liveness,
) -> impl Future<Output = Result<End, Gone>> + 'a {
    let config = &shared.config;
    let (close_first, exp) = session.close_and_expiry();
    let (token_at, expire_at) = expiry_times(exp, config.leeway);
    let now = Millis::now();
    let mut clock = Clock {
        exp,
        beat_at: now + config.heartbeat,
        token_at,
        expire_at,
        noticed: false,
        ping_id: 0,
        last_probe: now,
    };
    async move {
        shared.alarms.set(clock.next(), session.outbox.clone());
        // What the reader of a socket that held the session before asked is not for
        // this socket: its pong ids would confirm this socket's pings.
        session.take_requests();
        // A resumed session may have lag to fill right away.
        session.outbox.wake();
        // A close asked for just as the last socket went away still stands: the socket
        // that resumes the session sends it first.
        if let Some(code) = close_first {
            // The writer made in the boxed future: a temporary here would size the task.
            let writer = async { Writer::new(shared, session, ws, state).close(code).await };
            return Box::pin(writer).await;
        }
        loop {
            // The wake-up first, then the outbox, under the outbox's one lock.
            let event = match poll_fn(|cx| state.outbox.poll_next(cx)).await {
                Next::Woken => Event::Wake,
                Next::Item(item) => Event::Out(item),
            };
            let due = clock.next();
            // Handled boxed: this loop is every connection's task, sized by what it
            // holds while it waits, which is nearly always; an event's handling (the
            // writes, with fastwebsockets' frame write inside) would make it twice that.
            let writer = Writer::new(shared, session, &mut *ws, &mut *state);
            if let Some(end) = Box::pin(writer.event(event, &mut clock, liveness)).await? {
                return Ok(end);
            }
            if clock.next() != due {
                shared.alarms.set(clock.next(), session.outbox.clone());
            }
        }
    }
}

/// How often, at most, messages written are followed by a cursor probe (a ping).
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Microseconds since the epoch: the fan-out latency's clock (see `crate::metrics`).
fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// When to send `refresh_required` (min(30 s, half the token's life) before `exp`) and
/// when to close for expiry (`exp` plus leeway).
fn expiry_times(exp: f64, leeway: Duration) -> (Millis, Millis) {
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let left = Duration::from_secs_f64((exp - now_secs).clamp(0.0, 1e9));
    let notice = REFRESH_NOTICE.min(left / 2);
    let now = Millis::now();
    (now + left.saturating_sub(notice), now + left + leeway)
}

impl<'a, W: AsyncWrite + Unpin> Writer<'a, W> {
    fn new(
        shared: &'a Arc<Shared>,
        session: &'a Arc<Session>,
        ws: &'a mut WebSocketWrite<W>,
        state: &'a mut WriterState,
    ) -> Self {
        Writer {
            shared,
            session,
            ws,
            state,
            batch: Batch {
                buf: Vec::new(),
                max: shared.config.max_batch_bytes,
                live: Vec::new(),
            },
        }
    }

    /// Handles one event with this writer, which goes with it: nothing pushed stays
    /// unwritten in its batch.
    async fn event(
        mut self,
        event: Event,
        clock: &mut Clock,
        liveness: &Liveness,
    ) -> Result<Option<End>, Gone> {
        let end = self.handle(event, clock, liveness).await?;
        if end.is_none() {
            self.flush().await?;
        }
        Ok(end)
    }

    /// Acts on one event; `Some(end)` when the connection ends with it. Rare paths are
    /// boxed, so that a delivery's handling stays small.
    async fn handle(
        &mut self,
        event: Event,
        clock: &mut Clock,
        liveness: &Liveness,
    ) -> Result<Option<End>, Gone> {
        match event {
            Event::Out(Some(item)) => {
                self.drain(item, &mut clock.ping_id, &mut clock.last_probe)
                    .await
            }
            Event::Out(None) => Ok(Some(End::Closed(CloseCode::Internal))),
            Event::Wake => {
                if let Some(end) = Box::pin(self.woken(clock)).await? {
                    return Ok(Some(end));
                }
                if Millis::now() < clock.next() {
                    return Ok(None);
                }
                Box::pin(self.due(clock, liveness)).await
            }
        }
    }

    /// The session's wake-up, looked at in turn: a takeover, the reader's pongs and
    /// owed pong, a close, the client's close to echo, a refreshed grant, lagged rooms.
    async fn woken(&mut self, clock: &mut Clock) -> Result<Option<End>, Gone> {
        let session = self.session;
        if session.release_requested() {
            return Ok(Some(End::TakenOver));
        }
        let requests = session.take_requests();
        if requests.pong_id > 0 {
            self.state.cursors.confirm(u64::from(requests.pong_id));
        }
        let Owed { pong, close_echo } = requests.owed.map(|owed| *owed).unwrap_or_default();
        if let Some(payload) = pong {
            self.write(Frame::pong(Payload::Owned(payload))).await?;
        }
        let (close, exp) = session.close_and_expiry();
        if let Some(code) = close {
            return self.close(code).await.map(Some);
        }
        if let Some(payload) = close_echo {
            self.write(Frame::close_raw(Payload::Owned(payload)))
                .await?;
            return Ok(Some(End::ClientClosed));
        }
        if exp != clock.exp {
            // A refreshed grant: the token's times start over from its expiry.
            clock.exp = exp;
            (clock.token_at, clock.expire_at) = expiry_times(exp, self.shared.config.leeway);
            clock.noticed = false;
        }
        self.catch_up_lagged().await
    }

    /// The timer fired: the token's notice or expiry, the heartbeat, or both.
    async fn due(&mut self, clock: &mut Clock, liveness: &Liveness) -> Result<Option<End>, Gone> {
        let config = &self.shared.config;
        let now = Millis::now();
        if now >= clock.token_at {
            if clock.noticed {
                debug!("token expired and was not refreshed: closing with 1008");
                return self.close(CloseCode::Policy).await.map(Some);
            }
            clock.noticed = true;
            clock.token_at = clock.expire_at;
            let left = clock.expire_at.since(now).saturating_sub(config.leeway);
            let line = ServerFrame::RefreshRequired {
                expires_in_ms: left.as_millis() as u64,
            }
            .encode();
            self.push(&line).await?;
            self.flush().await?;
        }
        if now >= clock.beat_at {
            clock.beat_at = now + config.heartbeat;
            if liveness.silent_for() > config.heartbeat * 2 {
                debug!("no frame for two heartbeats: dropping the connection");
                return Ok(Some(End::Lost));
            }
            clock.ping_id += 1;
            self.probe(clock.ping_id).await?;
            clock.last_probe = Millis::now();
            // Retries catch-ups that failed while the broker was away.
            return self.catch_up_lagged().await;
        }
        Ok(None)
    }

    /// Writes `first` and whatever else is queued, batched into frames; then a cursor
    /// probe if one is due.
    async fn drain(
        &mut self,
        first: OutItem,
        ping_id: &mut u32,
        last_probe: &mut Millis,
    ) -> Result<Option<End>, Gone> {
        if let Some(end) = self.item(first).await? {
            return Ok(Some(end));
        }
        // Batch whatever else is queued into the same frame.
        while !self.batch.is_full() {
            let Some(item) = self.state.outbox.try_recv() else {
                break;
            };
            if let Some(end) = self.item(item).await? {
                return Ok(Some(end));
            }
        }
        self.flush().await?;
        if last_probe.elapsed() >= PROBE_EVERY && self.state.cursors.unconfirmed() {
            *ping_id += 1;
            self.probe(*ping_id).await?;
            *last_probe = Millis::now();
        }
        Ok(None)
    }

    pub(super) async fn write(&mut self, frame: Frame<'_>) -> Result<(), Gone> {
        self.shared
            .metrics
            .bytes_out
            .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
        let timeout = self.shared.config.write_timeout();
        let write = self.ws.write_frame(frame);
        tokio::pin!(write);
        // The timer is made only when the socket pushes back, and boxed: almost every
        // write completes at once, and every connection's task would otherwise hold it.
        let mut deadline: Option<Pin<Box<Sleep>>> = None;
        let written = poll_fn(|cx| {
            if let Poll::Ready(result) = write.as_mut().poll(cx) {
                return Poll::Ready(Some(result));
            }
            let sleep = deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
            sleep.as_mut().poll(cx).map(|()| None)
        })
        .await;
        match written {
            Some(Ok(())) => Ok(()),
            Some(Err(err)) => {
                debug!(error = %err, "write failed");
                Err(Gone)
            }
            None => {
                debug!("write timed out");
                self.shared
                    .stats
                    .write_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                Err(Gone)
            }
        }
    }

    /// A ping whose pong will confirm the cursors as they are now.
    async fn probe(&mut self, ping_id: u32) -> Result<(), Gone> {
        let ping_id = u64::from(ping_id);
        self.state.cursors.probe(ping_id);
        let payload = Payload::Owned(ping_id.to_be_bytes().to_vec());
        self.write(Frame::new(true, OpCode::Ping, None, payload))
            .await
    }

    /// Writes the batch, if any.
    pub(super) async fn flush(&mut self) -> Result<(), Gone> {
        if self.batch.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.batch.buf);
        let result = self.write(Frame::text(Payload::Borrowed(&buf))).await;
        self.batch.buf = buf;
        self.batch.buf.clear();
        if result.is_ok() && !self.batch.live.is_empty() {
            // One clock read per write; every live message in it is one delivery.
            let now_us = wall_clock_us();
            let metrics = &self.shared.metrics;
            metrics
                .deliveries
                .fetch_add(self.batch.live.len() as u64, Ordering::Relaxed);
            for (ts, trace) in self.batch.live.drain(..) {
                let us = now_us.saturating_sub(ts.saturating_mul(1000));
                metrics
                    .fanout_latency
                    .observe_with(us, trace, || now_us / 1000);
            }
        }
        self.batch.live.clear();
        result
    }

    /// Queues a line (counted by its op), writing the batch when it is full.
    pub(super) async fn push(&mut self, line: &[u8]) -> Result<(), Gone> {
        self.shared.metrics.frame_out(line);
        self.batch.push(line);
        if self.batch.is_full() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Queues a message of the live fan-out: measured when its batch is written.
    async fn push_live(&mut self, frame: &RoomFrame) -> Result<(), Gone> {
        self.shared.metrics.msg_out();
        self.batch.push(&frame.line);
        self.batch.live.push((frame.ts, frame.trace));
        if self.batch.is_full() {
            self.flush().await?;
        }
        Ok(())
    }

    pub(super) async fn close(&mut self, code: CloseCode) -> Result<End, Gone> {
        if code == CloseCode::Drained {
            let after_ms = rand::rng()
                .random_range(0..self.shared.config.drain_window.as_millis().max(1) as u64);
            let line = ServerFrame::Reconnect {
                reason: "draining".into(),
                after_ms,
            }
            .encode();
            self.shared.metrics.frame_out(&line);
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
                    self.push_live(&frame).await?;
                    return Ok(None);
                };
                if seq <= cursor.last {
                    return Ok(None);
                }
                let skip_gaps = self.shared.config.fault_injection.skip_gap_fill;
                if skip_gaps || frame.prev.is_none_or(|prev| prev == cursor.last) {
                    cursor.last = seq;
                    self.push_live(&frame).await?;
                    return Ok(None);
                }
                // A gap: what came between is in the store (this message too).
                self.flush().await?;
                // Rare paths are boxed so that they do not size every connection's task.
                return Box::pin(self.catch_up(&frame.room)).await;
            }
            OutItem::RoomEvent(event) => {
                if self.state.cursors.get_mut(&event.room).is_some() {
                    self.push(&event.line).await?;
                }
            }
            OutItem::Line(line) => self.push(&line).await?,
            OutItem::Subscribe(item) => {
                let SubscribeItem {
                    room,
                    since,
                    epoch,
                    reference,
                    head,
                    store_epoch,
                } = *item;
                self.flush().await?;
                let start = super::delivery::Start {
                    head,
                    store_epoch,
                    since,
                    epoch,
                };
                Box::pin(self.subscribe(room, start, reference)).await?;
            }
            OutItem::Unsubscribe(item) => {
                let UnsubscribeItem { room, reference } = *item;
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
}

#[cfg(test)]
mod tests {
    use std::io::{self, IoSlice};
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use fastwebsockets::{Frame, Payload, Role};
    use tokio::io::AsyncWrite;

    /// A socket that takes nothing and never says why.
    struct TakesNothing;

    impl AsyncWrite for TakesNothing {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(0))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(0))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// The writer sends every frame as a vectored write (`writev_threshold` 0), which
    /// upstream fastwebsockets retries forever when it takes nothing (vendored patch).
    #[test]
    fn a_socket_that_takes_nothing_fails_the_write_instead_of_spinning() {
        // On a thread of its own, so that a spinning write fails the test, not hangs it.
        let (done, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let failed = runtime.block_on(async {
                let (_, mut write) = fastwebsockets::after_handshake_split(
                    tokio::io::empty(),
                    TakesNothing,
                    Role::Server,
                );
                write.set_writev_threshold(0);
                write
                    .write_frame(Frame::text(Payload::Borrowed(b"hello")))
                    .await
                    .is_err()
            });
            let _ = done.send(failed);
        });
        assert_eq!(outcome.recv_timeout(Duration::from_secs(5)), Ok(true));
    }
}
