//! Choosing a worker (DESIGN "The path of a connection", step 1).
//!
//! Workers are in-process ([`LocalWorker`], given by the binary) or remote (from
//! `[[workers]]`, reached by [`crate::splice`]). A sticky path names a worker, which is
//! taken when it is alive and not draining; otherwise two random routable workers are
//! drawn and the less loaded one wins (power of two choices).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use rand::Rng as _;
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
#[derive(Debug)]
pub struct RemoteWorker {
    id: String,
    address: String,
    capacity: u64,
    conns: AtomicU64,
    down_until: Mutex<Option<Instant>>,
}

impl RemoteWorker {
    pub fn new(config: &RemoteWorkerConfig) -> RemoteWorker {
        RemoteWorker {
            id: config.id.clone(),
            address: config.address.clone(),
            capacity: config.capacity,
            conns: AtomicU64::new(0),
            down_until: Mutex::new(None),
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

    fn load(&self, now: Instant) -> Option<WorkerLoad> {
        let down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        if down.is_some_and(|until| now < until) {
            return None;
        }
        Some(WorkerLoad {
            conns: self.conns(),
            capacity: self.capacity,
            draining: false,
        })
    }

    /// The worker refused a connection: leave it out for [`REMOTE_DOWN_FOR`].
    pub fn mark_down(&self, now: Instant) {
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(now + REMOTE_DOWN_FOR);
    }

    /// Counts one spliced connection until the guard drops.
    pub fn guard(self: &Arc<Self>) -> ConnGuard {
        self.conns.fetch_add(1, Ordering::Relaxed);
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
    workers: Vec<Target>,
}

impl Router {
    pub fn new(local: Vec<Arc<dyn LocalWorker>>, remote: Vec<Arc<RemoteWorker>>) -> Router {
        let workers = local
            .into_iter()
            .map(Target::Local)
            .chain(remote.into_iter().map(Target::Remote))
            .collect();
        Router { workers }
    }

    /// The named worker when it can take the connection, else the lesser loaded of two
    /// random routable workers other than `exclude`. `None`: nothing healthy.
    pub fn choose(
        &self,
        sticky: Option<&str>,
        exclude: Option<&str>,
        now: Instant,
    ) -> Option<Target> {
        if let Some(id) = sticky {
            if let Some(target) = self
                .workers
                .iter()
                .find(|w| w.id() == id && Some(id) != exclude)
            {
                if target.load(now).is_some() {
                    return Some(target.clone());
                }
            }
        }
        self.pick(|w| Some(w.id()) != exclude, now)
    }

    /// A remote worker other than `exclude`: the retry of a splice whose request is
    /// already bound for a remote hop.
    pub fn choose_remote(&self, exclude: &str, now: Instant) -> Option<Arc<RemoteWorker>> {
        match self.pick(|w| matches!(w, Target::Remote(_)) && w.id() != exclude, now) {
            Some(Target::Remote(worker)) => Some(worker),
            _ => None,
        }
    }

    /// Power of two choices among the routable workers that pass `filter`.
    fn pick(&self, filter: impl Fn(&Target) -> bool, now: Instant) -> Option<Target> {
        let candidates: Vec<(&Target, f64)> = self
            .workers
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

    pub fn any_routable(&self, now: Instant) -> bool {
        self.workers.iter().any(|w| w.load(now).is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    struct Fake {
        id: &'static str,
        conns: u64,
        draining: AtomicBool,
    }

    #[async_trait::async_trait]
    impl LocalWorker for Fake {
        fn id(&self) -> &str {
            self.id
        }
        fn load(&self) -> WorkerLoad {
            WorkerLoad {
                conns: self.conns,
                capacity: 100,
                draining: self.draining.load(Ordering::Relaxed),
            }
        }
        async fn handoff(
            &self,
            _req: hyper::Request<hyper::body::Incoming>,
            _identity: Identity,
        ) -> hyper::Response<Full<Bytes>> {
            hyper::Response::new(Full::default())
        }
    }

    fn fake(id: &'static str, conns: u64) -> Arc<Fake> {
        Arc::new(Fake {
            id,
            conns,
            draining: AtomicBool::new(false),
        })
    }

    #[test]
    fn two_choices_never_pick_the_most_loaded_of_two() {
        let router = Router::new(vec![fake("busy", 90), fake("idle", 1)], vec![]);
        let now = Instant::now();
        for _ in 0..50 {
            assert_eq!(router.choose(None, None, now).unwrap().id(), "idle");
        }
    }

    #[test]
    fn sticky_unless_draining() {
        let busy = fake("busy", 90);
        let router = Router::new(vec![busy.clone(), fake("idle", 1)], vec![]);
        let now = Instant::now();
        assert_eq!(router.choose(Some("busy"), None, now).unwrap().id(), "busy");
        busy.draining.store(true, Ordering::Relaxed);
        assert_eq!(router.choose(Some("busy"), None, now).unwrap().id(), "idle");
        assert_eq!(router.choose(Some("gone"), None, now).unwrap().id(), "idle");
    }

    #[test]
    fn down_remote_workers_are_skipped_and_guards_count() {
        let remote = Arc::new(RemoteWorker::new(&RemoteWorkerConfig {
            id: "r1".into(),
            address: "127.0.0.1:1".into(),
            capacity: 10,
        }));
        let router = Router::new(vec![], vec![remote.clone()]);
        let now = Instant::now();
        let guard = remote.guard();
        assert_eq!(remote.conns(), 1);
        drop(guard);
        assert_eq!(remote.conns(), 0);
        remote.mark_down(now);
        assert!(router.choose(None, None, now).is_none());
        assert!(!router.any_routable(now));
        assert!(router.any_routable(now + REMOTE_DOWN_FOR));
        assert!(router
            .choose(None, Some("r1"), now + REMOTE_DOWN_FOR)
            .is_none());
    }
}
