//! Choosing a worker (DESIGN "The path of a connection", step 1).
//!
//! Workers are in-process ([`LocalWorker`], given by the binary) or remote, reached by
//! [`crate::splice`]: configured (`[[workers]]`) or learned from the broker's registry
//! by [`crate::registry`]. The [`Router`] keeps them as one immutable list that a change
//! replaces whole, so each upgrade reads it with one uncontended lock and an `Arc`
//! clone. A sticky path names a worker, which is taken when it is alive, not draining
//! and below capacity; otherwise two random routable workers are drawn and the less
//! loaded one wins (power of two choices).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use rand::RngExt as _;
use switchyard_broker::WorkerInfo;
use switchyard_protocol::Identity;

use crate::config::RemoteWorkerConfig;

/// How long a remote worker that refused a connection is left out of the choice.
pub const REMOTE_DOWN_FOR: Duration = Duration::from_secs(5);

/// A worker's load as the router sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLoad {
    pub conns: u64,
    pub capacity: u64,
    pub draining: bool,
}

impl WorkerLoad {
    fn ratio(&self) -> f64 {
        self.conns as f64 / self.capacity.max(1) as f64
    }

    fn routable(&self) -> bool {
        !self.draining && self.conns < self.capacity
    }
}

/// A worker in the gateway's own process. The binary wires it; the gateway never
/// imports the worker crate.
#[async_trait::async_trait]
pub trait LocalWorker: Send + Sync + 'static {
    fn id(&self) -> &str;
    fn load(&self) -> WorkerLoad;
    /// Takes the upgrade request (already authenticated, token stripped) and answers
    /// it: 101 on success. The connection is served with upgrades, so the worker calls
    /// `hyper::upgrade::on` on the request itself: one socket per client.
    async fn handoff(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
        identity: Identity,
    ) -> hyper::Response<Full<Bytes>>;
}

/// A worker in another process, reached over TCP.
///
/// A configured worker's load is the splices this gateway holds to it, over its
/// configured capacity. A learned worker's load is what it last reported to the
/// registry plus the splices this gateway opened to it since, so a burst between two
/// reports spreads out instead of piling onto the worker that looked idlest.
#[derive(Debug)]
pub struct RemoteWorker {
    id: String,
    address: String,
    capacity: u64,
    /// Splices open now.
    conns: AtomicU64,
    /// Splices opened since the last registry report.
    opened: AtomicU64,
    state: Mutex<RemoteState>,
}

#[derive(Debug, Default)]
struct RemoteState {
    down_until: Option<Instant>,
    /// The registry's last word on the worker; `None` for a configured worker.
    reported: Option<WorkerLoad>,
}

impl RemoteWorker {
    pub fn new(config: &RemoteWorkerConfig) -> RemoteWorker {
        RemoteWorker {
            id: config.id.clone(),
            address: config.address.clone(),
            capacity: config.capacity,
            conns: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            state: Mutex::new(RemoteState::default()),
        }
    }

    /// A worker as the registry announced it; its load follows [`RemoteWorker::report`].
    pub fn from_registry(info: &WorkerInfo) -> RemoteWorker {
        RemoteWorker {
            id: info.id.clone(),
            address: info.address.clone(),
            capacity: info.capacity,
            conns: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            state: Mutex::new(RemoteState {
                down_until: None,
                reported: Some(WorkerLoad {
                    conns: info.conns,
                    capacity: info.capacity,
                    draining: info.draining,
                }),
            }),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Connections this gateway currently splices to the worker.
    pub fn conns(&self) -> u64 {
        self.conns.load(Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, RemoteState> {
        // A panic while holding it leaves plain values behind: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh registry report: the load it names already counts the splices opened
    /// before it.
    pub fn report(&self, load: WorkerLoad) {
        let mut state = self.state();
        state.reported = Some(load);
        self.opened.store(0, Ordering::Relaxed);
    }

    /// The load routing uses; `None` while the worker is marked down.
    pub fn load(&self, now: Instant) -> Option<WorkerLoad> {
        let state = self.state();
        if state.down_until.is_some_and(|until| now < until) {
            return None;
        }
        Some(match state.reported {
            Some(reported) => WorkerLoad {
                conns: reported
                    .conns
                    .saturating_add(self.opened.load(Ordering::Relaxed)),
                ..reported
            },
            None => WorkerLoad {
                conns: self.conns(),
                capacity: self.capacity,
                draining: false,
            },
        })
    }

    /// The worker refused a connection: leave it out for [`REMOTE_DOWN_FOR`].
    pub fn mark_down(&self, now: Instant) {
        self.state().down_until = Some(now + REMOTE_DOWN_FOR);
    }

    /// Counts one spliced connection until the guard drops.
    pub fn guard(self: &Arc<Self>) -> ConnGuard {
        self.conns.fetch_add(1, Ordering::Relaxed);
        self.opened.fetch_add(1, Ordering::Relaxed);
        ConnGuard(self.clone())
    }
}

/// One connection counted against a remote worker's load.
#[derive(Debug)]
pub struct ConnGuard(Arc<RemoteWorker>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.conns.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where an upgrade goes.
#[derive(Clone)]
pub enum Target {
    Local(Arc<dyn LocalWorker>),
    Remote(Arc<RemoteWorker>),
}

impl Target {
    pub fn id(&self) -> &str {
        match self {
            Target::Local(w) => w.id(),
            Target::Remote(w) => w.id(),
        }
    }

    fn load(&self, now: Instant) -> Option<WorkerLoad> {
        match self {
            Target::Local(w) => Some(w.load()),
            Target::Remote(w) => w.load(now),
        }
        .filter(WorkerLoad::routable)
    }
}

/// Every worker this gateway can route to.
pub struct Router {
    local: Vec<Arc<dyn LocalWorker>>,
    configured: Vec<Arc<RemoteWorker>>,
    /// `local`, then `configured` and the learned workers; replaced whole on a change.
    workers: RwLock<Arc<[Target]>>,
}

impl Router {
    pub fn new(local: Vec<Arc<dyn LocalWorker>>, configured: Vec<Arc<RemoteWorker>>) -> Router {
        let router = Router {
            local,
            configured,
            workers: RwLock::new(Arc::from(Vec::new())),
        };
        router.set_learned(&[]);
        router
    }

    /// Whether `id` is a worker of this process.
    pub fn is_local(&self, id: &str) -> bool {
        self.local.iter().any(|w| w.id() == id)
    }

    /// Replaces the workers learned from the registry. A learned worker hides a
    /// configured one of the same id: the registry knows its load and whether it drains.
    pub fn set_learned(&self, learned: &[Arc<RemoteWorker>]) {
        let workers: Vec<Target> = self
            .local
            .iter()
            .cloned()
            .map(Target::Local)
            .chain(
                self.configured
                    .iter()
                    .filter(|c| !learned.iter().any(|l| l.id() == c.id()))
                    .cloned()
                    .map(Target::Remote),
            )
            .chain(learned.iter().cloned().map(Target::Remote))
            .collect();
        *self.workers.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(workers);
    }

    /// The current list: cheap, and unchanged by later updates.
    fn workers(&self) -> Arc<[Target]> {
        self.workers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The ids of every worker, routable or not, in list order.
    pub fn ids(&self) -> Vec<String> {
        self.workers().iter().map(|w| w.id().to_string()).collect()
    }

    /// The named worker when it can take the connection, else the lesser loaded of two
    /// random routable workers other than `exclude`. `None`: nothing healthy.
    pub fn choose(
        &self,
        sticky: Option<&str>,
        exclude: Option<&str>,
        now: Instant,
    ) -> Option<Target> {
        let workers = self.workers();
        if let Some(id) = sticky {
            if let Some(target) = workers.iter().find(|w| w.id() == id && Some(id) != exclude) {
                if target.load(now).is_some() {
                    return Some(target.clone());
                }
            }
        }
        pick(&workers, |w| Some(w.id()) != exclude, now)
    }

    /// A remote worker other than `exclude`: the retry of a splice whose request is
    /// already bound for a remote hop.
    pub fn choose_remote(&self, exclude: &str, now: Instant) -> Option<Arc<RemoteWorker>> {
        let workers = self.workers();
        match pick(
            &workers,
            |w| matches!(w, Target::Remote(_)) && w.id() != exclude,
            now,
        ) {
            Some(Target::Remote(worker)) => Some(worker),
            _ => None,
        }
    }

    /// How many workers are known and routable, with the load the routable ones report.
    pub fn census(&self, now: Instant) -> Census {
        let workers = self.workers();
        let mut census = Census {
            known: workers.len() as u64,
            ..Census::default()
        };
        for load in workers.iter().filter_map(|w| w.load(now)) {
            census.routable += 1;
            census.conns += load.conns;
            census.capacity += load.capacity;
        }
        census
    }

    pub fn any_routable(&self, now: Instant) -> bool {
        self.workers().iter().any(|w| w.load(now).is_some())
    }
}

/// The router's workers, counted for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    pub known: u64,
    pub routable: u64,
    pub conns: u64,
    pub capacity: u64,
}

/// Power of two choices among the routable `workers` that pass `filter`.
fn pick(workers: &[Target], filter: impl Fn(&Target) -> bool, now: Instant) -> Option<Target> {
    let candidates: Vec<(&Target, f64)> = workers
        .iter()
        .filter(|w| filter(w))
        .filter_map(|w| w.load(now).map(|l| (w, l.ratio())))
        .collect();
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0].0.clone()),
        n => {
            let mut rng = rand::rng();
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            let pick = if candidates[b].1 < candidates[a].1 {
                b
            } else {
                a
            };
            Some(candidates[pick].0.clone())
        }
    }
}

#[cfg(test)]
mod tests;
