//! A room's live feed on NATS: the stream's RePublish of `sy.room.<room>` to
//! `sy.live.room.<room>` (with `Nats-Sequence` and `Nats-Last-Sequence`), ephemeral
//! messages on the same subject without them, presence events on
//! `sy.live.presence.<room>`, and [`LiveEvent::Lagged`] whenever the connection came back
//! or the stream changed leader: the feed may have holes then, and every reader checks
//! its rooms against the store.
//!
//! One subscription takes both subjects (`sy.live.*.<room>`): async-nats gives each
//! subscription a queue whose first block of 32 messages is about 12 KB, and a worker
//! holds one per room with local members.

use async_nats::Client;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use switchyard_protocol::{RoomName, UserId};
use tokio::sync::watch;

use super::subjects::LiveKind;
use super::{decode, subjects, unavailable};
use crate::{BrokerError, LiveEvent, LiveFeed};

/// What `sy.live.presence.<room>` carries.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PresenceEvent {
    pub(super) user: String,
    pub(super) join: bool,
}

pub(super) async fn feed(
    client: &Client,
    room: &RoomName,
    lag: &watch::Sender<u64>,
) -> Result<LiveFeed, BrokerError> {
    let subscription = client
        .subscribe(subjects::live_any(room))
        .await
        .map_err(|e| unavailable("subscribe", e))?;
    // The server has our subscription once a round trip after it completes: nothing
    // published after `feed` returns can miss this reader.
    client.flush().await.map_err(|e| unavailable("flush", e))?;

    let room = room.clone();
    let events = subscription.filter_map(move |msg| std::future::ready(event(&room, &msg)));
    let mut lag_rx = lag.subscribe();
    lag_rx.mark_unchanged();
    let lagged = futures_util::stream::unfold(lag_rx, |mut rx| async move {
        rx.changed().await.ok()?;
        Some((LiveEvent::Lagged, rx))
    });
    Ok(futures_util::stream::select(events, lagged).boxed())
}

/// The event a message of the room's live subjects carries; `None` for what cannot be
/// read (a backend's non-JSON payload, a subject of a kind this version does not know).
fn event(room: &RoomName, msg: &async_nats::Message) -> Option<LiveEvent> {
    match subjects::live_kind(&msg.subject)? {
        LiveKind::Message => {
            let headers = msg.headers.as_ref();
            let seq = decode::header_u64(headers, subjects::headers::SEQUENCE);
            let prev =
                seq.and_then(|_| decode::header_u64(headers, subjects::headers::LAST_SEQUENCE));
            decode::message(room, headers, &msg.payload, seq, prev, None).map(LiveEvent::Msg)
        }
        LiveKind::Presence => {
            let event: PresenceEvent = serde_json::from_slice(&msg.payload).ok()?;
            let user = UserId::parse(&event.user).ok()?;
            Some(if event.join {
                LiveEvent::Join { user }
            } else {
                LiveEvent::Leave { user }
            })
        }
    }
}
