//! Reading a room's history from the stream: its head by direct get, pages through an
//! ordered consumer filtered to the room, and whether nothing after `since` was lost.
//!
//! JetStream does not say which messages of a subject were removed, so `recovered` is
//! true only when the store can show it: message `since` itself is still there (limits
//! remove the oldest first, so everything after it is too), or the stream never removed
//! anything. It errs towards `false`, never towards a false `true`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use futures_util::StreamExt;
use switchyard_protocol::RoomName;

use super::{decode, subjects, unavailable};
use crate::{BrokerError, Message};

/// The room's latest seq, 0 for a room with nothing retained.
pub(super) async fn head(stream: &Stream, room: &RoomName) -> Result<u64, BrokerError> {
    match stream
        .direct_get_last_for_subject(subjects::stored(room))
        .await
    {
        Ok(msg) => Ok(msg.sequence),
        Err(err) if err.kind() == DirectGetErrorKind::NotFound => Ok(0),
        Err(err) => Err(unavailable("read the room's head", err)),
    }
}

pub(super) async fn recovered(
    stream: &Stream,
    room: &RoomName,
    since: u64,
    head: u64,
) -> Result<bool, BrokerError> {
    if since > head {
        return Ok(false);
    }
    if since > 0 {
        return match stream.direct_get(since).await {
            Ok(msg) => Ok(msg.subject.as_str() == subjects::stored(room)),
            Err(err) if err.kind() == DirectGetErrorKind::NotFound => Ok(false),
            Err(err) => Err(unavailable("read a message", err)),
        };
    }
    let mut stream = stream.clone();
    let info = stream
        .info()
        .await
        .map_err(|e| unavailable("read the stream", e))?;
    Ok(info.state.first_sequence <= 1 && info.state.deleted_count.unwrap_or(0) == 0)
}

/// Retained messages of `room` after `since`, oldest first, at most `limit` read; with
/// whether more follow and the seq read through.
pub(super) async fn page(
    stream: &Stream,
    room: &RoomName,
    since: u64,
    limit: usize,
    timeout: Duration,
) -> Result<(Vec<Arc<Message>>, bool, u64), BrokerError> {
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subjects::stored(room),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: since + 1,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable("create a catch-up consumer", e))?;
    let pending = consumer.cached_info().num_pending as usize;
    let wanted = pending.min(limit);
    let mut out = Vec::with_capacity(wanted);
    let mut scanned = since;
    if wanted == 0 {
        return Ok((out, false, scanned));
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| unavailable("read the room", e))?;
    let mut read = 0;
    while read < wanted {
        let next = tokio::time::timeout(timeout, messages.next())
            .await
            .map_err(|_| BrokerError::Unavailable("reading the room's history timed out".into()))?;
        let msg = match next {
            Some(Ok(msg)) => msg,
            Some(Err(err)) => return Err(unavailable("read the room", err)),
            None => break,
        };
        read += 1;
        let info = msg
            .info()
            .map_err(|e| BrokerError::Internal(format!("stored message without info: {e}")))?;
        let seq = info.stream_sequence;
        scanned = scanned.max(seq);
        let stored_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as u64;
        if let Some(message) = decode::message(
            room,
            msg.headers.as_ref(),
            &msg.payload,
            Some(seq),
            None,
            Some(stored_ms),
        ) {
            out.push(message);
        }
    }
    Ok((out, read < pending, scanned))
}
