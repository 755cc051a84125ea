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

fn learned(id: &str, conns: u64, draining: bool) -> Arc<RemoteWorker> {
    Arc::new(RemoteWorker::from_registry(&WorkerInfo {
        id: id.into(),
        address: format!("{id}.internal:7000"),
        conns,
        capacity: 100,
        draining,
    }))
}

#[test]
fn learned_load_is_the_report_plus_splices_opened_since() {
    let worker = learned("r1", 40, false);
    let now = Instant::now();
    assert_eq!(worker.load(now).unwrap().conns, 40);
    let guards: Vec<ConnGuard> = (0..3).map(|_| worker.guard()).collect();
    assert_eq!(worker.load(now).unwrap().conns, 43);
    // A closed splice stays counted until the next report, which includes it or not.
    drop(guards);
    assert_eq!(worker.load(now).unwrap().conns, 43);
    assert_eq!(worker.conns(), 0);
    worker.report(WorkerLoad {
        conns: 41,
        capacity: 50,
        draining: false,
    });
    let load = worker.load(now).unwrap();
    assert_eq!((load.conns, load.capacity), (41, 50));
}

#[test]
fn learned_workers_join_the_list_and_hide_configured_ones() {
    let configured = Arc::new(RemoteWorker::new(&RemoteWorkerConfig {
        id: "r1".into(),
        address: "127.0.0.1:1".into(),
        capacity: 10,
    }));
    let router = Router::new(vec![fake("l1", 0)], vec![configured]);
    assert_eq!(router.ids(), ["l1", "r1"]);
    let before = router.workers();
    router.set_learned(&[learned("r1", 0, true), learned("r2", 0, false)]);
    assert_eq!(router.ids(), ["l1", "r1", "r2"]);
    // A list already read is not changed under its reader.
    assert_eq!(before.len(), 2);
    // The learned r1 drains: a sticky path to it goes elsewhere.
    let now = Instant::now();
    assert_ne!(router.choose(Some("r1"), None, now).unwrap().id(), "r1");
    assert!(router.is_local("l1") && !router.is_local("r2"));
    router.set_learned(&[]);
    assert_eq!(router.ids(), ["l1", "r1"]);
}

#[test]
fn full_and_draining_learned_workers_are_not_routable() {
    let router = Router::new(vec![], vec![]);
    router.set_learned(&[learned("full", 100, false)]);
    let now = Instant::now();
    assert!(!router.any_routable(now));
    router.set_learned(&[learned("draining", 0, true)]);
    assert!(!router.any_routable(now));
    assert!(router.choose(Some("draining"), None, now).is_none());
    router.set_learned(&[learned("idle", 0, false)]);
    assert!(router.any_routable(now));
}

#[test]
fn a_burst_spreads_over_workers_that_reported_the_same_load() {
    let (a, b) = (learned("a", 10, false), learned("b", 10, false));
    let router = Router::new(vec![], vec![]);
    router.set_learned(&[a.clone(), b.clone()]);
    let now = Instant::now();
    let mut guards = Vec::new();
    for _ in 0..20 {
        match router.choose(None, None, now).unwrap() {
            Target::Remote(w) => guards.push(w.guard()),
            Target::Local(_) => unreachable!("no local workers"),
        }
    }
    // With two candidates the lesser loaded always wins: the burst alternates.
    assert_eq!(a.conns(), 10);
    assert_eq!(b.conns(), 10);
}
