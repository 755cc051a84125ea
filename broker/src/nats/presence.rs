//! Presence on NATS: one KV entry per user in a room (`<room>.<user>`) whose value counts
//! that user's connections per process holding them (`{"<holder>": 2, ...}`), written by
//! compare-and-set. A join or leave reads one key and writes it back, whatever the size
//! of the room or the bucket, and the user's first connection in the mesh publishes a
//! join, their last a leave.
//!
//! Each process that has held connections keeps `_alive_<holder>` fresh, and refreshes the
//! entries it is in three times per TTL. An entry whose holders all died ages out of the
//! bucket (the reaper announces the leave); a dead holder beside live ones is dropped from
//! the entry by the next process that writes it, and is not counted by [`Presence::members`].

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::kv::{Operation, Store};
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
use crate::conns::Conns;
use crate::BrokerError;

/// Connections per holder, as stored in an entry.
type Holders = BTreeMap<String, u32>;

/// Operations on one key are serialized within a process so that its events go out in
/// the order its connections came and went; keys share this many locks.
const STRIPES: usize = 256;
/// Compare-and-set attempts before a write is given up (the refresh tries again later).
const ATTEMPTS: usize = 8;
/// Entries a refresh round writes at once: a round must finish well inside a third of
/// the TTL even with a round trip of milliseconds to a replicated bucket.
const REFRESH_CONCURRENCY: usize = 64;

pub(super) struct Presence {
    client: Client,
    kv: Store,
    /// The bucket's stream, read for listings.
    pub(super) stream: Stream,
    /// This process's name in entries; unique per process.
    holder: String,
    /// The connections this process holds, per room and user (whose key is made when it
    /// is written, not kept); an entry whose write failed stays here (maybe empty) until
    /// a refresh has written it. One per user and room held: its slot and what it owns
    /// are kept small and exact (BENCHMARKS.md, changes 24 and 35).
    held: Mutex<HashMap<(RoomName, UserId), Held>>,
    stripes: Vec<tokio::sync::Mutex<()>>,
    /// `_alive_<holder>` has been written since this process started.
    alive_written: AtomicBool,
    timeout: Duration,
}

struct Held {
    conns: Conns,
    /// The revision of the entry as this process last wrote or read it, 0 for none: a
    /// refresh writes it back on that revision, and reads only if someone wrote in
    /// between.
    revision: u64,
    /// Its value when it names other processes too. One that names only this process
    /// is `{holder: conns}`, which `conns` rebuilds: most entries are that, and the copy
    /// was an allocation per user and room held.
    shared_value: Option<Box<[u8]>>,
}

impl Held {
    fn forget_stored(&mut self) {
        self.revision = 0;
        self.shared_value = None;
    }
}

/// What a sync of one key is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Change {
    Join,
    Leave,
    Refresh,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An entry's holders; a value this version did not write counts as none.
fn decode(value: &[u8]) -> Holders {
    serde_json::from_slice(value).unwrap_or_default()
}

/// Whether an entry's value names any holder (the reaper's test of a live entry).
pub(super) fn holds_anyone(value: &[u8]) -> bool {
    !decode(value).is_empty()
}

/// Exactly the bytes of the value: a copy is kept per key held (serde_json starts its
/// buffer at 128 bytes).
fn encode(holders: &Holders) -> Box<[u8]> {
    // A map of strings to integers always serializes.
    serde_json::to_vec(holders)
        .expect("presence entry serializes")
        .into_boxed_slice()
}

/// The event a write owes, given whether this holder had connections in the entry before
/// and has them now, and whether any other live holder has.
fn event_due(had: bool, has: bool, others: bool) -> Option<bool> {
    (had != has && !others).then_some(has)
}

impl Presence {
    pub(super) fn new(
        client: Client,
        kv: Store,
        stream: Stream,
        holder: String,
        timeout: Duration,
    ) -> Presence {
        Presence {
            client,
            kv,
            stream,
            holder,
            held: Mutex::default(),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            alive_written: AtomicBool::new(false),
            timeout,
        }
    }

    pub(super) async fn join(
        &self,
        room: &RoomName,
        user: &UserId,
        conn: &Arc<str>,
    ) -> Result<(), BrokerError> {
        let key = subjects::presence_key(room, user);
        let _turn = self.stripe(&key).lock().await;
        {
            let mut held = lock(&self.held);
            let entry = held
                .entry((room.clone(), user.clone()))
                .or_insert_with(|| Held {
                    conns: Conns::Few(Vec::new()),
                    revision: 0,
                    shared_value: None,
                });
            if !entry.conns.insert(conn) {
                return Ok(());
            }
            entry.forget_stored();
        }
        if !self.alive_written.load(Ordering::Relaxed) {
            self.write_alive().await?;
        }
        self.sync(&key, room, user, Change::Join, &Liveness::default())
            .await
    }

    pub(super) async fn leave(
        &self,
        room: &RoomName,
        user: &UserId,
        conn: &str,
    ) -> Result<(), BrokerError> {
        let key = subjects::presence_key(room, user);
        let _turn = self.stripe(&key).lock().await;
        {
            let mut held = lock(&self.held);
            let Some(entry) = held.get_mut(&(room.clone(), user.clone())) else {
                return Ok(());
            };
            if !entry.conns.remove(conn) {
                return Ok(());
            }
            // What was stored counts the connection gone: a refresh must not write it back.
            entry.forget_stored();
        }
        self.sync(&key, room, user, Change::Leave, &Liveness::default())
            .await
    }

    fn stripe(&self, key: &str) -> &tokio::sync::Mutex<()> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        &self.stripes[hasher.finish() as usize % STRIPES]
    }

    async fn write_alive(&self) -> Result<(), BrokerError> {
        self.kv
            .put(subjects::holder_alive_key(&self.holder), Bytes::new())
            .await
            .map_err(|e| unavailable("write presence", e))?;
        self.alive_written.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Writes this holder's count of `key` as held now, dropping dead holders on the way,
    /// and publishes the join or leave the write made true. Call with the key's stripe.
    async fn sync(
        &self,
        key: &str,
        room: &RoomName,
        user: &UserId,
        change: Change,
        liveness: &Liveness,
    ) -> Result<(), BrokerError> {
        let id = (room.clone(), user.clone());
        // Whether this holder was in the entry before this sync: read once, so that a
        // write that landed without its ack still owes its event on the next attempt.
        let mut had = None;
        let mut last_error = None;
        for _ in 0..ATTEMPTS {
            let entry = match self.kv.entry(key).await {
                Ok(entry) => entry.filter(|e| e.operation == Operation::Put),
                Err(err) => {
                    last_error = Some(unavailable("read presence", err));
                    continue;
                }
            };
            let revision = entry.as_ref().map_or(0, |e| e.revision);
            let stored = entry.map(|e| decode(&e.value)).unwrap_or_default();
            let mine = lock(&self.held)
                .get(&id)
                .map_or(0, |held| held.conns.len() as u32);
            had.get_or_insert(stored.contains_key(&self.holder));
            let mut wanted = Holders::new();
            for (holder, &count) in &stored {
                if *holder != self.holder && liveness.alive(self, holder).await {
                    wanted.insert(holder.clone(), count);
                }
            }
            let others = !wanted.is_empty();
            if mine > 0 {
                wanted.insert(self.holder.clone(), mine);
            }
            let value = encode(&wanted);
            // A refresh writes even an unchanged entry: that is what keeps it in the bucket.
            let written = if wanted == stored && (change != Change::Refresh || wanted.is_empty()) {
                Ok(revision)
            } else if wanted.is_empty() {
                self.kv
                    .delete_expect_revision(key, Some(revision))
                    .await
                    .map(|()| 0)
                    .map_err(|e| unavailable("delete presence", e))
            } else {
                self.kv
                    .update(key, Bytes::copy_from_slice(&value), revision)
                    .await
                    .map_err(|e| unavailable("write presence", e))
            };
            let revision = match written {
                Ok(revision) => revision,
                Err(err) => {
                    last_error = Some(err);
                    continue;
                }
            };
            {
                let mut held = lock(&self.held);
                match held.get_mut(&id) {
                    Some(h) if h.conns.is_empty() => {
                        held.remove(&id);
                    }
                    Some(h) => {
                        h.revision = revision;
                        h.shared_value = others.then_some(value);
                    }
                    None => {}
                }
            }
            if let Some(join) = event_due(had.unwrap_or(false), mine > 0, others) {
                if change == Change::Refresh {
                    tracing::debug!(key, join, "presence repaired by refresh");
                }
                publish_event(&self.client, room, user, join).await?;
            }
            return Ok(());
        }
        Err(last_error.unwrap_or_else(|| {
            BrokerError::Unavailable("presence kept changing under this write".into())
        }))
    }

    pub(super) async fn members(&self, room: &RoomName) -> Result<Vec<Member>, BrokerError> {
        let liveness = Liveness::default();
        let mut members = Vec::new();
        for (key, holders) in self
            .entries(&subjects::presence_filter(PRESENCE_BUCKET, room))
            .await?
        {
            // <room>.<user>: the user is the last token.
            let Some((_, user)) = key.rsplit_once('.') else {
                continue;
            };
            let mut conns = 0;
            for (holder, count) in holders {
                if liveness.alive(self, &holder).await {
                    conns += count;
                }
            }
            if conns > 0 {
                members.push(Member {
                    user: user.to_string(),
                    conns,
                });
            }
        }
        members.sort_by(|a, b| a.user.cmp(&b.user));
        Ok(members)
    }

    /// Live entries (not deleted) under a subject filter of the bucket, with their holders.
    async fn entries(&self, filter: &str) -> Result<Vec<(String, Holders)>, BrokerError> {
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter.to_string(),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("list presence", e))?;
        let pending = consumer.cached_info().num_pending as usize;
        let mut entries = Vec::with_capacity(pending);
        if pending == 0 {
            return Ok(entries);
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
                    entries.push((key.to_string(), decode(&msg.payload)));
                }
            }
        }
        Ok(entries)
    }

    /// Three times per TTL until `stop`: marks this process alive and writes every entry
    /// it holds (which also repairs entries a failed write or an outage left wrong).
    pub(super) async fn refresh(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let keys: Vec<(RoomName, UserId)> = lock(&self.held).keys().cloned().collect();
            // Once this process has held presence it stays marked alive, holding any or
            // not: a join after a quiet spell must not find its holder taken for dead.
            // (Gateways never hold any, and never write.)
            if keys.is_empty() && !self.alive_written.load(Ordering::Relaxed) {
                continue;
            }
            if let Err(err) = self.write_alive().await {
                tracing::debug!(error = %err, "presence refresh failed; retrying next period");
                continue;
            }
            let liveness = Liveness::default();
            let failed = AtomicUsize::new(0);
            futures_util::stream::iter(keys)
                .for_each_concurrent(REFRESH_CONCURRENCY, |(room, user)| {
                    let (liveness, failed) = (&liveness, &failed);
                    let this = &self;
                    async move {
                        if let Err(err) = this.refresh_one(&room, &user, liveness).await {
                            if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                                tracing::debug!(error = %err, "presence refresh failed; retrying next period");
                            }
                        }
                    }
                })
                .await;
        }
    }

    /// Writes an entry back on the revision this process last saw, which keeps it in the
    /// bucket; if someone wrote it since, reads it and writes it in full.
    async fn refresh_one(
        &self,
        room: &RoomName,
        user: &UserId,
        liveness: &Liveness,
    ) -> Result<(), BrokerError> {
        let key = subjects::presence_key(room, user);
        let id = (room.clone(), user.clone());
        let _turn = self.stripe(&key).lock().await;
        let stored = lock(&self.held)
            .get(&id)
            .filter(|h| h.revision > 0)
            .map(|h| {
                let value = match &h.shared_value {
                    Some(value) => Bytes::copy_from_slice(value),
                    None => {
                        let mine = Holders::from([(self.holder.clone(), h.conns.len() as u32)]);
                        encode(&mine).into()
                    }
                };
                (h.revision, value)
            });
        if let Some((revision, value)) = stored {
            if let Ok(revision) = self.kv.update(&key, value, revision).await {
                if let Some(held) = lock(&self.held).get_mut(&id) {
                    held.revision = revision;
                }
                return Ok(());
            }
        }
        self.sync(&key, room, user, Change::Refresh, liveness).await
    }
}

/// Which holders are alive, asked once per holder per listing or refresh round.
#[derive(Default)]
struct Liveness(Mutex<HashMap<String, bool>>);

impl Liveness {
    async fn alive(&self, presence: &Presence, holder: &str) -> bool {
        if holder == presence.holder {
            return true;
        }
        if let Some(&alive) = lock(&self.0).get(holder) {
            return alive;
        }
        // When the store cannot say, the holder is kept: dropping a live one would
        // announce a leave that did not happen.
        let alive = !matches!(
            presence.kv.get(subjects::holder_alive_key(holder)).await,
            Ok(None)
        );
        lock(&self.0).insert(holder.to_string(), alive);
        alive
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_held_is_small() {
        assert_eq!(std::mem::size_of::<((RoomName, UserId), Held)>(), 80);
    }

    #[test]
    fn events_go_out_when_the_last_live_holder_changes() {
        assert_eq!(event_due(false, true, false), Some(true));
        assert_eq!(event_due(true, false, false), Some(false));
        assert_eq!(
            event_due(false, true, true),
            None,
            "someone else holds the user"
        );
        assert_eq!(event_due(true, false, true), None);
        assert_eq!(event_due(true, true, false), None, "a second connection");
        assert_eq!(event_due(false, false, false), None);
    }

    #[test]
    fn entries_round_trip_and_foreign_values_hold_no_one() {
        let holders = Holders::from([("a".to_string(), 2), ("b".to_string(), 1)]);
        assert_eq!(decode(&encode(&holders)), holders);
        assert!(
            decode(b"").is_empty(),
            "an entry of the per-connection layout"
        );
        assert!(decode(b"not json").is_empty());
    }
}
