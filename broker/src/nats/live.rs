//! A room's live feed on NATS: the stream's RePublish of `sy.room.<room>` (with
//! `Nats-Sequence` and `Nats-Last-Sequence`), ephemeral messages on the same subject
//! without them, presence events on `sy.presence.<room>`, and [`LiveEvent::Lagged`]
//! whenever the connection came back or the stream changed leader: the feed may have
//! holes then, and every reader checks its rooms against the store.

use std::sync::Arc;

use async_nats::Client;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use switchyard_protocol::{RoomName, UserId};
use tokio::sync::watch;

use super::{decode, subjects, unavailable};
use crate::{BrokerError, LiveEvent, LiveFeed};

/// What `sy.presence.<room>` carries.
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
    let messages = client
        .subscribe(subjects::live(room))
        .await
        .map_err(|e| unavailable("subscribe", e))?;
    let presence = client
        .subscribe(subjects::presence_events(room))
        .await
        .map_err(|e| unavailable("subscribe", e))?;
    // The server has our subscriptions once a round trip after them completes: nothing
    // published after `feed` returns can miss this reader.
    client.flush().await.map_err(|e| unavailable("flush", e))?;

    let room = Arc::new(room.clone());
    let from_stream = {
        let room = room.clone();
        messages.filter_map(move |msg| {
            let room = room.clone();
            async move {
                let headers = msg.headers.as_ref();
                let seq = decode::header_u64(headers, subjects::headers::SEQUENCE);
                let prev =
                    seq.and_then(|_| decode::header_u64(headers, subjects::headers::LAST_SEQUENCE));
                decode::message(&room, headers, &msg.payload, seq, prev, None).map(LiveEvent::Msg)
            }
        })
    };
    let from_presence = presence.filter_map(|msg| async move {
        let event: PresenceEvent = serde_json::from_slice(&msg.payload).ok()?;
        let user = UserId::parse(&event.user).ok()?;
        Some(if event.join {
            LiveEvent::Join { user }
        } else {
            LiveEvent::Leave { user }
        })
    });
    let mut lag_rx = lag.subscribe();
    lag_rx.mark_unchanged();
    let lagged = futures_util::stream::unfold(lag_rx, |mut rx| async move {
        rx.changed().await.ok()?;
        Some((LiveEvent::Lagged, rx))
    });
    Ok(futures_util::stream::select(
        futures_util::stream::select(from_stream, from_presence),
        lagged,
    )
    .boxed())
}
