//! `leave` events for connections whose worker died.
//!
//! A user's last leave from a room deletes its presence entry (a delete marker stays, and
//! the event was sent then); an entry whose holders all died just ages out of the bucket,
//! silently on nats-server 2.9. One process of the mesh at a time (whoever holds the
//! `_reaper` lease key, which ages out with its holder) scans the bucket every half TTL
//! and compares: an entry that was there and is now gone without a marker expired, and
//! its user is announced as having left the room.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::kv::{Operation, Store};
use async_nats::jetstream::stream::Stream;
use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::live::PresenceEvent;
use super::setup::PRESENCE_BUCKET;
use super::subjects::{headers, presence_events_of};
use super::unavailable;
use crate::BrokerError;

const LEASE_KEY: &str = "_reaper";

pub(super) struct Reaper {
    pub(super) client: Client,
    pub(super) kv: Store,
    pub(super) stream: Stream,
    /// This process's claim on the lease.
    pub(super) holder: String,
    pub(super) every: Duration,
    pub(super) timeout: Duration,
}

/// A presence key `<room>.<user>` split into its room and user. Keys of one token (the
/// lease, holders' liveness) are not presence entries.
fn room_and_user(key: &str) -> Option<(&str, &str)> {
    key.rsplit_once('.')
}

impl Reaper {
    pub(super) async fn run(self, stop: CancellationToken) {
        let mut alive_before: Option<HashSet<String>> = None;
        let mut tick = tokio::time::interval(self.every);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !self.hold_lease().await {
                alive_before = None;
                continue;
            }
            match self.scan().await {
                Ok(mut now) => {
                    if let Some(before) = &alive_before {
                        let unsure = self.announce_expired(before, &now).await;
                        now.alive.extend(unsure);
                    }
                    alive_before = Some(now.alive);
                }
                Err(err) => tracing::debug!(error = %err, "presence scan failed; next period"),
            }
        }
    }

    /// Takes the lease if it is free, refreshes it if ours.
    async fn hold_lease(&self) -> bool {
        let mine = Bytes::from(self.holder.clone());
        if self.kv.create(LEASE_KEY, mine.clone()).await.is_ok() {
            return true;
        }
        match self.kv.entry(LEASE_KEY).await {
            Ok(Some(entry)) if entry.operation == Operation::Put && entry.value == mine => self
                .kv
                .update(LEASE_KEY, mine, entry.revision)
                .await
                .is_ok(),
            _ => false,
        }
    }

    async fn scan(&self) -> Result<Scan, BrokerError> {
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: format!("$KV.{PRESENCE_BUCKET}.>"),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("scan presence", e))?;
        let pending = consumer.cached_info().num_pending as usize;
        let mut scan = Scan::default();
        if pending == 0 {
            return Ok(scan);
        }
        let prefix = format!("$KV.{PRESENCE_BUCKET}.");
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable("scan presence", e))?;
        for _ in 0..pending {
            let msg = match tokio::time::timeout(self.timeout, messages.next()).await {
                Ok(Some(Ok(msg))) => msg,
                Ok(Some(Err(err))) => return Err(unavailable("scan presence", err)),
                Ok(None) => break,
                Err(_) => return Err(BrokerError::Unavailable("presence scan timed out".into())),
            };
            let Some(key) = msg.subject.as_str().strip_prefix(&prefix) else {
                continue;
            };
            if room_and_user(key).is_none() {
                continue; // the lease, or anything that is not a presence entry
            }
            let deleted = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(headers::KV_OPERATION))
                .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
            if deleted {
                scan.deleted.insert(key.to_string());
            } else if super::presence::holds_anyone(&msg.payload) {
                // (An entry of an older layout holds no one here, and is left to age out.)
                scan.alive.insert(key.to_string());
            }
        }
        Ok(scan)
    }

    /// Announces the leave of each entry the last scan saw alive and this one did not,
    /// once the bucket confirms it is gone: a scan misses an entry rewritten while it
    /// ran (the revision it was to deliver is replaced, and the new one comes after the
    /// scan's count). Returns the entries still there or not ruled on, for the next scan.
    async fn announce_expired(&self, before: &HashSet<String>, now: &Scan) -> Vec<String> {
        let missing = before
            .iter()
            .filter(|k| !now.alive.contains(*k) && !now.deleted.contains(*k));
        let mut unsure = Vec::new();
        for key in missing {
            let Some((room, user)) = room_and_user(key) else {
                continue;
            };
            match self.kv.entry(key.as_str()).await {
                // Gone without a marker: it expired.
                Ok(None) => {}
                Ok(Some(entry)) => {
                    if entry.operation == Operation::Put
                        && super::presence::holds_anyone(&entry.value)
                    {
                        unsure.push(key.clone());
                    }
                    // A marker: its leave was announced by whoever deleted it.
                    continue;
                }
                Err(err) => {
                    tracing::debug!(error = %err, "cannot check a presence entry; next scan");
                    unsure.push(key.clone());
                    continue;
                }
            }
            tracing::debug!(room, user, "presence expired: announcing leave");
            let event = PresenceEvent {
                user: user.to_string(),
                join: false,
            };
            // A struct of a string and a bool always serializes.
            let payload = serde_json::to_vec(&event).expect("presence event serializes");
            if let Err(err) = self
                .client
                .publish(presence_events_of(room), payload.into())
                .await
            {
                tracing::debug!(error = %err, "could not announce an expired presence");
            }
        }
        unsure
    }
}

#[derive(Default)]
struct Scan {
    alive: HashSet<String>,
    deleted: HashSet<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_room_and_user() {
        assert_eq!(room_and_user("lobby.bob"), Some(("lobby", "bob")));
        assert_eq!(room_and_user("chat.1.bob"), Some(("chat.1", "bob")));
        assert_eq!(room_and_user("_inbox.amy.bob"), Some(("_inbox.amy", "bob")));
        assert_eq!(room_and_user("_reaper"), None);
        assert_eq!(room_and_user("_alive_h1"), None);
    }
}
