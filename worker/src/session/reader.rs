//! The reader half: parses client frames and acts on them. It never writes to the
//! socket: answers go through the session outbox; obligated frames, pongs and close
//! requests through the session's terms, which wake the writer.

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use fastwebsockets::{OpCode, WebSocketError, WebSocketRead};
use switchyard_broker::{BrokerError, Publish};
use switchyard_protocol::frame::{split_pieces, ClientFrame, FrameError, ServerFrame};
use switchyard_protocol::{CloseCode, ErrorCode, RoomName};
use switchyard_telemetry::trace;
use tokio::io::AsyncRead;
use tracing::{debug, Instrument as _};

use super::millis::Millis;
use super::outbox::{OutItem, SubscribeItem, UnsubscribeItem};
use super::writer::End;
use super::{lock, Grant, Session};
use crate::config::STRIKE_WINDOW;
use crate::room::Member;
use crate::token::TokenRejected;
use crate::Shared;

/// When the client was last heard from, read by the writer's heartbeat.
pub(crate) struct Liveness {
    /// [`Millis`].
    last_seen_ms: AtomicU64,
}

impl Liveness {
    pub(crate) fn new() -> Liveness {
        let liveness = Liveness {
            last_seen_ms: AtomicU64::new(0),
        };
        liveness.touch();
        liveness
    }

    fn touch(&self) {
        self.last_seen_ms
            .store(Millis::now().as_u64(), Ordering::Relaxed);
    }

    pub(crate) fn silent_for(&self) -> std::time::Duration {
        Millis::from_u64(self.last_seen_ms.load(Ordering::Relaxed)).elapsed()
    }
}

/// A publish token bucket and a count of errors, per connection.
struct Limits {
    tokens: f64,
    refilled: Millis,
    strikes: u32,
    strikes_since: Millis,
}

/// Runs the reader until the connection ends. Not an `async fn`, which would keep its
/// arguments beside the `Reader` holding the same references: this future is held by
/// every connection.
pub(super) fn run<'a, R: AsyncRead + Unpin>(
    shared: &'a Arc<Shared>,
    session: &'a Arc<Session>,
    read: &'a mut WebSocketRead<R>,
    liveness: &'a Liveness,
) -> impl Future<Output = End> + 'a {
    let config = &shared.config;
    // fastwebsockets refuses a frame whose payload is >= this.
    read.set_max_message_size(config.max_frame_bytes + 1);
    let mut reader = Reader {
        shared,
        session,
        liveness,
        limits: Limits {
            tokens: f64::from(config.publish_burst),
            refilled: Millis::now(),
            strikes: 0,
            strikes_since: Millis::now(),
        },
        fragments: None,
    };
    // The socket is read only when no whole frame is buffered. While it waits, the
    // reader holds no read buffer and no frame read's state: the bytes are read into a
    // buffer of the polling thread (vendored fastwebsockets, PATCHES.md), and only
    // those that came are kept.
    async move {
        loop {
            match poll_fn(|cx| read.poll_fill(cx)).await {
                Ok(0) | Err(_) => return End::Lost,
                Ok(_) => {}
            }
            // Handled boxed: this loop is every connection's reader, sized by what it
            // holds while it waits for bytes, which is nearly always.
            if let Some(end) = Box::pin(reader.buffered(read)).await {
                return end;
            }
        }
    }
}

struct Reader<'a> {
    shared: &'a Arc<Shared>,
    session: &'a Arc<Session>,
    liveness: &'a Liveness,
    limits: Limits,
    /// A fragmented message being put together: its opcode and the payload so far.
    fragments: Option<(OpCode, Vec<u8>)>,
}

impl Reader<'_> {
    /// Acts on every whole frame buffered; `Some(end)` when the connection ends with
    /// one, `None` once more bytes are needed.
    async fn buffered<R: AsyncRead + Unpin>(&mut self, read: &mut WebSocketRead<R>) -> Option<End> {
        let config = &self.shared.config;
        loop {
            let (frame, obligated) = read.next_buffered_frame();
            let obliged = obligated.is_some();
            if let Some(frame) = obligated {
                let payload = frame.payload.to_vec();
                self.session.owe(|owed| match frame.opcode {
                    OpCode::Close => owed.close_echo = Some(payload),
                    _ => owed.pong = Some(payload),
                });
            }
            let frame = match frame {
                Ok(Some(frame)) => frame,
                Ok(None) if obliged => continue,
                Ok(None) => return None,
                Err(WebSocketError::FrameTooLarge) => {
                    return Some(self.close(CloseCode::TooLarge).await)
                }
                Err(WebSocketError::InvalidUTF8) => {
                    self.liveness.touch();
                    self.reject(FrameError::new(
                        ErrorCode::BadFrame,
                        "text frame is not valid UTF-8",
                    ))
                    .await;
                    continue;
                }
                Err(err) => {
                    debug!(error = %err, "websocket protocol error");
                    return Some(self.close(CloseCode::ProtocolError).await);
                }
            };
            self.liveness.touch();
            self.shared
                .metrics
                .bytes_in
                .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
            match frame.opcode {
                OpCode::Text | OpCode::Binary if !frame.fin => {
                    if self.fragments.is_some() {
                        return Some(self.close(CloseCode::ProtocolError).await);
                    }
                    self.fragments = Some((frame.opcode, frame.payload.to_vec()));
                }
                OpCode::Continuation => {
                    let Some((opcode, buf)) = self.fragments.as_mut() else {
                        return Some(self.close(CloseCode::ProtocolError).await);
                    };
                    if buf.len() + frame.payload.len() > config.max_frame_bytes {
                        return Some(self.close(CloseCode::TooLarge).await);
                    }
                    buf.extend_from_slice(&frame.payload);
                    if frame.fin {
                        let opcode = *opcode;
                        let Some((_, message)) = self.fragments.take() else {
                            continue;
                        };
                        Box::pin(self.message(opcode, &message)).await;
                    }
                }
                OpCode::Text | OpCode::Binary => {
                    if self.fragments.is_some() {
                        return Some(self.close(CloseCode::ProtocolError).await);
                    }
                    // Boxed: a read that brings only pongs (one a second per socket
                    // while messages flow) is not sized for handling a message, with
                    // the broker calls behind it.
                    Box::pin(self.message(frame.opcode, &frame.payload)).await;
                }
                OpCode::Pong => {
                    // The writer's pings carry their id as 8 bytes; anything else is
                    // an unsolicited pong (RFC 6455 §5.5.3) and confirms nothing.
                    let id = <[u8; 8]>::try_from(&frame.payload[..])
                        .ok()
                        .and_then(|id| u32::try_from(u64::from_be_bytes(id)).ok());
                    if let Some(id) = id.filter(|&id| id > 0) {
                        self.session.pong_received(id);
                    }
                }
                // The close echo went to the writer, which ends the connection.
                OpCode::Close => return std::future::pending().await,
                OpCode::Ping => {}
            }
            if self.limits.strikes > config.max_strikes {
                debug!(
                    strikes = self.limits.strikes,
                    "too many bad frames: closing with 1008"
                );
                return Some(self.close(CloseCode::Policy).await);
            }
        }
    }
    /// Asks the writer to close, then waits for it to do so.
    async fn close(&self, code: CloseCode) -> End {
        self.session.request_close(code);
        std::future::pending().await
    }

    async fn send(&self, item: OutItem) {
        // The receiver lives as long as the session: a closed outbox means it ended.
        let _ = self.session.outbox.send(item).await;
    }

    async fn reject(&mut self, err: FrameError) {
        if err.code.is_client_fault() {
            let now = Millis::now();
            if now.since(self.limits.strikes_since) > STRIKE_WINDOW {
                self.limits.strikes = 0;
                self.limits.strikes_since = now;
            }
            self.limits.strikes += 1;
        }
        tracing::trace!(code = err.code.as_str(), "frame rejected");
        self.send(OutItem::line(err.to_server_frame().encode()))
            .await;
    }

    async fn message(&mut self, opcode: OpCode, payload: &[u8]) {
        let metrics = &self.shared.metrics;
        if opcode == OpCode::Binary {
            metrics.frame_in_invalid();
            return self
                .reject(FrameError::new(
                    ErrorCode::BadFrame,
                    "binary frames are not part of the protocol",
                ))
                .await;
        }
        if std::str::from_utf8(payload).is_err() {
            metrics.frame_in_invalid();
            return self
                .reject(FrameError::new(
                    ErrorCode::BadFrame,
                    "text frame is not valid UTF-8",
                ))
                .await;
        }
        for piece in split_pieces(payload) {
            match ClientFrame::parse(piece) {
                Ok(frame) => {
                    self.shared.metrics.frame_in(frame.op());
                    // Inline: `message` itself is boxed by its callers.
                    if let Err(err) = self.handle(frame).await {
                        self.reject(err).await;
                    }
                }
                Err(err) => {
                    self.shared.metrics.frame_in_invalid();
                    self.reject(err).await
                }
            }
        }
    }

    async fn handle(&mut self, frame: ClientFrame) -> Result<(), FrameError> {
        let reference = frame.reference().map(str::to_owned);
        let room = frame.room().cloned();
        let fail = |code: ErrorCode, message: &'static str| FrameError {
            code,
            message: message.into(),
            reference: reference.clone(),
            room: room.as_ref().map(|r| r.to_string()),
        };
        let session = self.session;
        let shared = self.shared;
        let grant = lock(&session.terms).grant.clone();
        match frame {
            ClientFrame::Sub {
                room,
                since,
                epoch,
                reference,
            } => {
                if !grant.scope.may_subscribe(&session.user, &room) {
                    return Err(fail(
                        ErrorCode::Forbidden,
                        "not allowed to subscribe to this room",
                    ));
                }
                let room = shared.rooms.interned(room);
                {
                    let mut subs = lock(&session.subs);
                    if subs.contains(&room) {
                        return Err(fail(
                            ErrorCode::AlreadySubscribed,
                            "already subscribed to this room",
                        ));
                    }
                    subs.insert(room.clone(), ());
                }
                let member = Member::new(session.outbox.clone());
                if let Err(err) = shared.rooms.join(&room, &session.conn, member).await {
                    lock(&session.subs).remove(&room);
                    debug!(error = %err, room = %room, "live feed unavailable");
                    return Err(fail(
                        ErrorCode::Unavailable,
                        "the broker is unavailable: try again",
                    ));
                }
                // The subscription point: everything stored after this is delivered live.
                // The room's window knows it; the store is asked only if it does not.
                let point = match shared.rooms.point(&room) {
                    Some(point) => Ok(point),
                    None => shared
                        .store
                        .history(&room, 0, 0)
                        .await
                        .map(|h| (h.head, h.epoch)),
                };
                let (head, store_epoch) = match point {
                    Ok(point) => point,
                    Err(err) => {
                        lock(&session.subs).remove(&room);
                        shared.rooms.leave(&room, &session.conn);
                        debug!(error = %err, room = %room, "store unavailable");
                        return Err(fail(
                            ErrorCode::Unavailable,
                            "the broker is unavailable: try again",
                        ));
                    }
                };
                if let Err(err) = shared
                    .broker
                    .join(&room, &session.user, &session.conn)
                    .await
                {
                    debug!(error = %err, room = %room, "presence join failed");
                }
                self.send(OutItem::Subscribe(Box::new(SubscribeItem {
                    room,
                    since,
                    epoch,
                    reference,
                    head,
                    store_epoch,
                })))
                .await;
            }
            ClientFrame::Unsub { room, reference } => {
                if lock(&session.subs).remove(&room).is_none() {
                    return Err(fail(
                        ErrorCode::NotSubscribed,
                        "not subscribed to this room",
                    ));
                }
                super::leave_room(shared, session, &room).await;
                self.send(OutItem::Unsubscribe(Box::new(UnsubscribeItem {
                    room,
                    reference,
                })))
                .await;
            }
            ClientFrame::Pub {
                room,
                data,
                ephemeral,
                reference,
            } => {
                if !grant.scope.may_publish(&room) {
                    return Err(fail(
                        ErrorCode::Forbidden,
                        "not allowed to publish to this room",
                    ));
                }
                if !self.take_publish_token() {
                    return Err(fail(
                        ErrorCode::RateLimited,
                        "publishing too fast: slow down",
                    ));
                }
                shared.metrics.publishes.fetch_add(1, Ordering::Relaxed);
                let ack = self
                    .publish(room, data, ephemeral, reference.as_deref())
                    .await;
                let counter = if ack.is_ok() {
                    &shared.metrics.publish_acks
                } else {
                    &shared.metrics.publish_failures
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let ack = ack.map_err(|err| match err {
                    BrokerError::Unavailable(_) => {
                        fail(ErrorCode::Unavailable, "the broker cannot take the message now: nothing was stored, retry with the same ref")
                    }
                    BrokerError::Rejected(_) => fail(ErrorCode::TooLarge, "the broker refused the message"),
                    BrokerError::Internal(_) => fail(ErrorCode::Internal, "internal error"),
                })?;
                if let Some(line) = ack {
                    self.send(OutItem::line(line)).await;
                }
            }
            ClientFrame::Presence { room, reference } => {
                if !grant.scope.may_subscribe(&session.user, &room) {
                    return Err(fail(ErrorCode::Forbidden, "not allowed to see this room"));
                }
                let members = shared.broker.presence(&room).await.map_err(|_| {
                    fail(
                        ErrorCode::Unavailable,
                        "the broker is unavailable: try again",
                    )
                })?;
                let line = ServerFrame::Presence {
                    room: room.as_str().into(),
                    reference: reference.as_deref().map(Into::into),
                    members,
                }
                .encode();
                self.send(OutItem::line(line)).await;
            }
            ClientFrame::Refresh { token, reference } => {
                let verified = match &shared.verifier {
                    Some(verifier) => verifier.verify(&token),
                    None => Err(TokenRejected::Invalid),
                };
                let verified = match verified {
                    Ok(v) if v.user == session.user => v,
                    _ => {
                        return Err(fail(
                            ErrorCode::InvalidToken,
                            "token is invalid, expired or for another user",
                        ))
                    }
                };
                let revoked = shared
                    .broker
                    .revoked_before(&session.user)
                    .await
                    .ok()
                    .flatten();
                if revoked.is_some_and(|until| verified.iat.is_none_or(|iat| iat < until as f64)) {
                    return Err(fail(ErrorCode::InvalidToken, "token is revoked"));
                }
                let exp = verified.exp;
                session.change_terms(|terms| {
                    terms.grant = Grant {
                        scope: verified.scope,
                        exp,
                    }
                });
                let line = ServerFrame::Refreshed {
                    reference: reference.as_deref().map(Into::into),
                    exp: exp as u64,
                }
                .encode();
                self.send(OutItem::line(line)).await;
            }
            ClientFrame::Ping { reference } => {
                self.send(OutItem::line(
                    ServerFrame::Pong {
                        reference: reference.as_deref().map(Into::into),
                    }
                    .encode(),
                ))
                .await;
            }
        }
        Ok(())
    }

    /// Publishes and returns the `ack` line to send, if any.
    async fn publish(
        &self,
        room: RoomName,
        data: Bytes,
        ephemeral: bool,
        reference: Option<&str>,
    ) -> Result<Option<Bytes>, BrokerError> {
        let session = self.session;
        // Each message starts a trace of its own (only while traces are exported),
        // linked to its connection's.
        let span = trace::span(|| {
            tracing::info_span!(
                "publish",
                room = %room,
                ephemeral,
                seq = tracing::field::Empty,
            )
        });
        trace::new_trace(&span, &tracing::Span::current());
        let msg = Publish {
            room,
            from: Arc::from(session.user.as_str()),
            data,
            // Dedupe key: a retried `ref` on this session is stored once (PROTOCOL §3).
            msg_id: reference.map(|r| format!("{}:{r}", session.conn)),
            traceparent: trace::traceparent(&span),
        };
        if ephemeral {
            self.shared
                .broker
                .publish_ephemeral(msg)
                .instrument(span)
                .await?;
            return Ok(reference.map(|r| {
                ServerFrame::Ack {
                    reference: Some(r.into()),
                    seq: None,
                }
                .encode()
            }));
        }
        let stored = self
            .shared
            .broker
            .publish(msg)
            .instrument(span.clone())
            .await?;
        span.record("seq", stored.seq as i64);
        Ok(Some(
            ServerFrame::Ack {
                reference: reference.map(Into::into),
                seq: Some(stored.seq),
            }
            .encode(),
        ))
    }

    fn take_publish_token(&mut self) -> bool {
        let config = &self.shared.config;
        let now = Millis::now();
        let elapsed = now.since(self.limits.refilled).as_secs_f64();
        self.limits.refilled = now;
        self.limits.tokens = (self.limits.tokens + elapsed * f64::from(config.publish_rate))
            .min(f64::from(config.publish_burst));
        if self.limits.tokens >= 1.0 {
            self.limits.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
