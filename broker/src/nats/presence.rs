//! Presence on NATS: one KV entry per connection in a room (`<room>.<user>.<conn>`),
//! refreshed by the worker holding it, dropped by the bucket's TTL if that worker dies.
//! A user's first entry in a room publishes a join, their last a leave.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::kv::Store;
use async_nats::jetstream::stream::Stream;
use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use switchyard_protocol::frame::Member;
use switchyard_protocol::{RoomName, UserId};
use tokio_util::sync::CancellationToken;

use super::live::PresenceEvent;
use super::setup::PRESENCE_BUCKET;
use super::{subjects, unavailable};
use crate::BrokerError;

pub(super) struct Presence {
    pub(super) kv: Store,
    /// The bucket's stream, read for listings.
    pub(super) stream: Stream,
    /// Keys this process holds and refreshes.
    pub(super) held: Arc<Mutex<HashSet<String>>>,
    pub(super) timeout: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Presence {
    pub(super) async fn join(
        &self,
        client: &Client,
        room: &RoomName,
        user: &UserId,
        conn: &str,
    ) -> Result<(), BrokerError> {
        let key = subjects::presence_key(room, user, conn);
        self.kv
            .put(&key, Bytes::new())
            .await
            .map_err(|e| unavailable("write presence", e))?;
        lock(&self.held).insert(key);
        if self
            .entries(&subjects::user_presence_filter(PRESENCE_BUCKET, room, user))
            .await?
            .len()
            == 1
        {
            publish_event(client, room, user, true).await?;
        }
        Ok(())
    }

    pub(super) async fn leave(
        &self,
        client: &Client,
        room: &RoomName,
        user: &UserId,
        conn: &str,
    ) -> Result<(), BrokerError> {
        let key = subjects::presence_key(room, user, conn);
        if !lock(&self.held).remove(&key) {
            return Ok(());
        }
        self.kv
            .delete(&key)
            .await
            .map_err(|e| unavailable("delete presence", e))?;
        if self
            .entries(&subjects::user_presence_filter(PRESENCE_BUCKET, room, user))
            .await?
            .is_empty()
        {
            publish_event(client, room, user, false).await?;
        }
        Ok(())
    }

    pub(super) async fn members(&self, room: &RoomName) -> Result<Vec<Member>, BrokerError> {
        let mut users: BTreeMap<String, u32> = BTreeMap::new();
        for key in self
            .entries(&subjects::presence_filter(PRESENCE_BUCKET, room))
            .await?
        {
            // <room>.<user>.<conn>: the user is the second token from the end.
            let mut tokens = key.rsplit('.');
            let (Some(_conn), Some(user)) = (tokens.next(), tokens.next()) else {
                continue;
            };
            *users.entry(user.to_string()).or_default() += 1;
        }
        Ok(users
            .into_iter()
            .map(|(user, conns)| Member { user, conns })
            .collect())
    }

    /// Live keys (not deleted) under a subject filter of the bucket.
    async fn entries(&self, filter: &str) -> Result<Vec<String>, BrokerError> {
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter.to_string(),
                deliver_policy: DeliverPolicy::LastPerSubject,
                headers_only: true,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("list presence", e))?;
        let pending = consumer.cached_info().num_pending as usize;
        let mut keys = Vec::with_capacity(pending);
        if pending == 0 {
            return Ok(keys);
        }
        let prefix = format!("$KV.{PRESENCE_BUCKET}.");
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable("list presence", e))?;
        for _ in 0..pending {
            let msg = match tokio::time::timeout(self.timeout, messages.next()).await {
                Ok(Some(Ok(msg))) => msg,
                Ok(Some(Err(err))) => return Err(unavailable("list presence", err)),
                Ok(None) => break,
                Err(_) => {
                    return Err(BrokerError::Unavailable(
                        "listing presence timed out".into(),
                    ))
                }
            };
            let deleted = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(subjects::headers::KV_OPERATION))
                .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
            if !deleted {
                if let Some(key) = msg.subject.as_str().strip_prefix(&prefix) {
                    keys.push(key.to_string());
                }
            }
        }
        Ok(keys)
    }

    /// Refreshes the held keys three times per TTL until `stop`.
    pub(super) async fn refresh(
        kv: Store,
        held: Arc<Mutex<HashSet<String>>>,
        every: Duration,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let keys: Vec<String> = lock(&held).iter().cloned().collect();
            for key in keys {
                if let Err(err) = kv.put(&key, Bytes::new()).await {
                    tracing::debug!(error = %err, "presence refresh failed; retrying next period");
                    break;
                }
            }
        }
    }
}

async fn publish_event(
    client: &Client,
    room: &RoomName,
    user: &UserId,
    join: bool,
) -> Result<(), BrokerError> {
    let event = PresenceEvent {
        user: user.to_string(),
        join,
    };
    // A struct of a string and a bool always serializes.
    let payload = serde_json::to_vec(&event).expect("presence event serializes");
    client
        .publish(subjects::presence_events(room), payload.into())
        .await
        .map_err(|e| unavailable("publish presence", e))
}
