//! Following the broker's worker registry (DESIGN "The path of a connection"; the KV
//! bucket `sy_workers` on NATS).
//!
//! One task per gateway, in its tracker and stopped by its shutdown token, reads
//! [`Broker::registry`] and keeps the router's learned remote workers: `Up` with an
//! address adds a worker or refreshes its reported load, `Up` with a new address
//! replaces it (a restarted worker), `Gone` removes it. Splices already open are never
//! cut. In-process workers and entries without an address are not remote workers and
//! are skipped.
//!
//! When the feed cannot be opened or ends, it is opened again after a backoff (100 ms
//! doubling to 5 s) and its fresh snapshot replaces what was learned. The feed does not
//! mark where its snapshot ends, so the snapshot counts as complete once the feed has
//! been quiet for [`SNAPSHOT_QUIET`], or [`SNAPSHOT_MAX`] after it opened; workers it
//! did not list are removed then, and stay routable until then.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use switchyard_broker::{Broker, BrokerError, RegistryEvent, RegistryFeed, WorkerInfo};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::route::{RemoteWorker, Router, WorkerLoad};

/// First wait before opening the feed again.
pub const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest wait before opening the feed again.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// A reopened feed quiet for this long has told its snapshot.
pub const SNAPSHOT_QUIET: Duration = Duration::from_millis(100);
/// A reopened feed has told its snapshot by then, however busy it is.
pub const SNAPSHOT_MAX: Duration = Duration::from_secs(2);

/// Follows `broker`'s registry into `router` until `stop` is cancelled. Without an
/// identity secret (`can_splice` false) remote workers cannot be reached: their
/// entries are skipped with a warning.
pub(crate) async fn follow(
    router: Arc<Router>,
    broker: Arc<dyn Broker>,
    can_splice: bool,
    stop: CancellationToken,
) {
    let open = move || {
        let broker = broker.clone();
        async move { broker.registry().await }
    };
    Learned::new(router, can_splice).follow(open, &stop).await;
}

/// How reading one feed ended.
#[derive(Debug, PartialEq, Eq)]
enum FeedEnd {
    Stopped,
    /// `synced`: the snapshot was complete before the end.
    Ended {
        synced: bool,
    },
}

/// The remote workers learned from the registry, owned by the following task.
struct Learned {
    router: Arc<Router>,
    can_splice: bool,
    workers: BTreeMap<String, Arc<RemoteWorker>>,
    /// Workers already warned about (no identity secret).
    skipped: HashSet<String>,
}

impl Learned {
    fn new(router: Arc<Router>, can_splice: bool) -> Learned {
        Learned {
            router,
            can_splice,
            workers: BTreeMap::new(),
            skipped: HashSet::new(),
        }
    }

    /// Opens the feed with `open` and reads it, again and again, until `stop`.
    async fn follow<F, Fut>(&mut self, mut open: F, stop: &CancellationToken)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<RegistryFeed, BrokerError>>,
    {
        let mut retry = RETRY_MIN;
        loop {
            let opened = tokio::select! {
                _ = stop.cancelled() => return,
                opened = open() => opened,
            };
            match opened {
                Ok(feed) => match self.read(feed, stop).await {
                    FeedEnd::Stopped => return,
                    FeedEnd::Ended { synced } => {
                        if synced {
                            retry = RETRY_MIN;
                        }
                        tracing::warn!(
                            retry.ms = retry.as_millis() as u64,
                            "worker registry feed ended"
                        );
                    }
                },
                Err(e) => tracing::warn!(
                    error = %e,
                    retry.ms = retry.as_millis() as u64,
                    "worker registry unavailable"
                ),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(RETRY_MAX);
        }
    }

    /// Reads one feed: its snapshot, which replaces what was learned, then its changes.
    async fn read(&mut self, mut feed: RegistryFeed, stop: &CancellationToken) -> FeedEnd {
        let mut stale: HashSet<String> = self.workers.keys().cloned().collect();
        let snapshot_end = Instant::now() + SNAPSHOT_MAX;
        loop {
            let quiet_until = (Instant::now() + SNAPSHOT_QUIET).min(snapshot_end);
            let event = tokio::select! {
                _ = stop.cancelled() => return FeedEnd::Stopped,
                _ = tokio::time::sleep_until(quiet_until) => break,
                event = feed.next() => event,
            };
            let Some(event) = event else {
                return FeedEnd::Ended { synced: false };
            };
            match &event {
                RegistryEvent::Up(info) => stale.remove(&info.id),
                RegistryEvent::Gone(id) => stale.remove(id),
            };
            self.apply(event);
        }
        if !stale.is_empty() {
            for id in &stale {
                tracing::info!(worker.id = %id, "worker gone from the registry while unwatched");
                self.workers.remove(id);
            }
            self.publish();
        }
        tracing::debug!(workers = self.workers.len(), "worker registry in sync");
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => return FeedEnd::Stopped,
                event = feed.next() => event,
            };
            match event {
                Some(event) => self.apply(event),
                None => return FeedEnd::Ended { synced: true },
            }
        }
    }

    fn apply(&mut self, event: RegistryEvent) {
        let changed = match event {
            RegistryEvent::Up(info) => self.up(info),
            RegistryEvent::Gone(id) => self.gone(&id),
        };
        if changed {
            self.publish();
        }
    }

    /// Returns whether the set of workers changed (not only a load).
    fn up(&mut self, info: WorkerInfo) -> bool {
        if self.router.is_local(&info.id) {
            return false;
        }
        if info.address.is_empty() {
            // In-process only, or no longer taking hand-offs.
            return self.gone(&info.id);
        }
        if !self.can_splice {
            if self.skipped.insert(info.id.clone()) {
                tracing::warn!(
                    worker.id = %info.id,
                    "the registry lists a remote worker but no identity_secret_file is set: not routed to"
                );
            }
            return false;
        }
        let load = WorkerLoad {
            conns: info.conns,
            capacity: info.capacity,
            draining: info.draining,
        };
        if let Some(known) = self.workers.get(&info.id) {
            if known.address() == info.address {
                tracing::trace!(worker.id = %info.id, load.conns = load.conns, load.draining = load.draining, "worker report");
                known.report(load);
                return false;
            }
        }
        tracing::info!(
            worker.id = %info.id,
            worker.address = %info.address,
            draining = info.draining,
            "worker learned from the registry"
        );
        self.workers.insert(
            info.id.clone(),
            Arc::new(RemoteWorker::from_registry(&info)),
        );
        true
    }

    fn gone(&mut self, id: &str) -> bool {
        self.skipped.remove(id);
        let removed = self.workers.remove(id).is_some();
        if removed {
            tracing::info!(worker.id = %id, "worker gone from the registry");
        }
        removed
    }

    fn publish(&self) {
        let learned: Vec<_> = self.workers.values().cloned().collect();
        self.router.set_learned(&learned);
    }
}

#[cfg(test)]
mod tests;
