//! The worker registry on NATS: KV `sy_workers`, one entry per worker, refreshed by it.
//!
//! nats-server 2.9 drops an entry that aged out of the bucket without telling watchers,
//! so the feed keeps each entry's last refresh and reports `Gone` itself once an entry
//! is older than the registry's TTL.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::kv::{Operation, Store};
use futures_util::StreamExt;
use tokio::time::Instant;

use super::unavailable;
use crate::{BrokerError, RegistryEvent, RegistryFeed, WorkerInfo};

pub(super) async fn announce(kv: &Store, info: &WorkerInfo) -> Result<(), BrokerError> {
    // Plain data with string keys: serialization cannot fail.
    let value = serde_json::to_vec(info).expect("worker info serializes");
    kv.put(&info.id, value.into())
        .await
        .map_err(|e| unavailable("announce the worker", e))?;
    Ok(())
}

pub(super) async fn withdraw(kv: &Store, id: &str) -> Result<(), BrokerError> {
    kv.delete(id)
        .await
        .map_err(|e| unavailable("withdraw the worker", e))
}

pub(super) async fn feed(kv: &Store, ttl: Duration) -> Result<RegistryFeed, BrokerError> {
    let watch = kv
        .watch_with_history(">")
        .await
        .map_err(|e| unavailable("watch the registry", e))?;
    struct State {
        kv: Store,
        watch: async_nats::jetstream::kv::Watch,
        seen: HashMap<String, Instant>,
        tick: tokio::time::Interval,
        ttl: Duration,
        queue: std::collections::VecDeque<RegistryEvent>,
    }
    let state = State {
        kv: kv.clone(),
        watch,
        seen: HashMap::new(),
        tick: tokio::time::interval(ttl / 4),
        ttl,
        queue: Default::default(),
    };
    Ok(futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.queue.pop_front() {
                return Some((event, s));
            }
            tokio::select! {
                entry = s.watch.next() => match entry? {
                    Ok(entry) => match entry.operation {
                        Operation::Put => match serde_json::from_slice::<WorkerInfo>(&entry.value) {
                            Ok(info) => {
                                s.seen.insert(info.id.clone(), Instant::now());
                                return Some((RegistryEvent::Up(info), s));
                            }
                            Err(err) => tracing::warn!(key = entry.key, error = %err, "unreadable registry entry"),
                        },
                        Operation::Delete | Operation::Purge => {
                            if s.seen.remove(&entry.key).is_some() {
                                return Some((RegistryEvent::Gone(entry.key), s));
                            }
                        }
                    },
                    // The watch failed (connection lost): end the feed; readers retry.
                    Err(err) => {
                        tracing::debug!(error = %err, "registry watch ended");
                        return None;
                    }
                },
                _ = s.tick.tick() => {
                    let now = Instant::now();
                    let ttl = s.ttl;
                    let expired: Vec<String> =
                        s.seen.iter().filter(|(_, at)| now.duration_since(**at) > ttl).map(|(id, _)| id.clone()).collect();
                    for id in expired {
                        // Only the store can say an entry expired: if the bucket cannot
                        // answer (its own leader election), nobody is declared gone.
                        match s.kv.entry(id.as_str()).await {
                            Ok(Some(entry)) if entry.operation == Operation::Put => {
                                // Refreshed after all (our watch was behind): age from the store.
                                let stored_ns = entry.created.unix_timestamp_nanos();
                                let now_ns = super::decode::now_ms() as i128 * 1_000_000;
                                let age = Duration::from_nanos((now_ns - stored_ns).clamp(0, i128::from(u64::MAX)) as u64);
                                s.seen.insert(id, Instant::now().checked_sub(age).unwrap_or_else(Instant::now));
                            }
                            Ok(_) => {
                                s.seen.remove(&id);
                                s.queue.push_back(RegistryEvent::Gone(id));
                            }
                            Err(err) => tracing::debug!(error = %err, "registry unreadable: keeping {id}"),
                        }
                    }
                }
            }
        }
    })
    .boxed())
}
