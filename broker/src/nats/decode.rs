//! Turning what NATS delivers (republished live messages, stored messages read back)
//! into [`Message`]s. A payload that is not JSON is not delivered: backends may publish
//! anything on `sy.room.>`, but clients are promised JSON (PROTOCOL §2).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;
use switchyard_protocol::frame::minify_newlines;
use switchyard_protocol::{RoomName, UserId, SERVER_SENDER};

use super::subjects::headers;
use crate::Message;

/// Payloads dropped because they were not JSON.
pub(super) static NOT_JSON: AtomicU64 = AtomicU64::new(0);

pub(super) fn header<'a>(map: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    map?.get(name).map(|v| v.as_str())
}

pub(super) fn header_u64(map: Option<&HeaderMap>, name: &str) -> Option<u64> {
    header(map, name)?.trim().parse().ok()
}

/// Builds a message; `None` when the payload is not JSON (counted and logged).
pub(super) fn message(
    room: &RoomName,
    map: Option<&HeaderMap>,
    payload: &Bytes,
    seq: Option<u64>,
    prev: Option<u64>,
    stored_ms: Option<u64>,
) -> Option<Arc<Message>> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_err() {
        NOT_JSON.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(room = %room, seq = ?seq, "dropped a payload that is not JSON");
        return None;
    }
    let from: Arc<str> = match header(map, headers::FROM) {
        Some(user) if UserId::parse(user).is_ok() => Arc::from(user),
        _ => Arc::from(SERVER_SENDER),
    };
    let ts = header_u64(map, headers::TS)
        .or(stored_ms)
        .unwrap_or_else(now_ms);
    Some(Arc::new(Message {
        room: room.clone(),
        seq,
        prev,
        from,
        ts,
        data: minify_newlines(payload),
        traceparent: header(map, headers::TRACEPARENT).map(str::to_owned),
    }))
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
