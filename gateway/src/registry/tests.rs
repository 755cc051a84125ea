use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::Full;
use switchyard_protocol::Identity;
use tokio::sync::mpsc;

use super::*;
use crate::route::LocalWorker;

struct Local;

#[async_trait::async_trait]
impl LocalWorker for Local {
    fn id(&self) -> &str {
        "local"
    }
    fn load(&self) -> WorkerLoad {
        WorkerLoad {
            conns: 0,
            capacity: 10,
            draining: false,
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

fn info(id: &str, address: &str, conns: u64) -> WorkerInfo {
    WorkerInfo {
        id: id.into(),
        address: address.into(),
        conns,
        capacity: 100,
        draining: false,
    }
}

fn up(id: &str, address: &str) -> RegistryEvent {
    RegistryEvent::Up(info(id, address, 0))
}

/// A feed the test writes to; it ends when the sender drops.
fn feed() -> (mpsc::Sender<RegistryEvent>, RegistryFeed) {
    let (tx, rx) = mpsc::channel(16);
    let feed = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    (tx, feed.boxed())
}

/// Opens the prepared answers in order (then feeds that never speak), noting when.
#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Result<RegistryFeed, BrokerError>>>>,
    opened_at: Arc<Mutex<Vec<Instant>>>,
}

impl Script {
    fn push(&self, answer: Result<RegistryFeed, BrokerError>) {
        self.answers.lock().unwrap().push_back(answer);
    }

    fn opener(
        &self,
    ) -> impl FnMut() -> std::future::Ready<Result<RegistryFeed, BrokerError>> + Send + 'static
    {
        let script = self.clone();
        move || {
            script.opened_at.lock().unwrap().push(Instant::now());
            let answer = script.answers.lock().unwrap().pop_front();
            std::future::ready(answer.unwrap_or_else(|| Ok(stream::pending().boxed())))
        }
    }

    fn gaps(&self) -> Vec<Duration> {
        let at = self.opened_at.lock().unwrap();
        at.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

fn start(script: &Script, can_splice: bool) -> (Arc<Router>, CancellationToken) {
    let router = Arc::new(Router::new(vec![Arc::new(Local)], vec![]));
    let stop = CancellationToken::new();
    let mut learned = Learned::new(router.clone(), can_splice);
    let open = script.opener();
    let token = stop.clone();
    tokio::spawn(async move { learned.follow(open, &token).await });
    (router, stop)
}

/// Waits (in paused time) until the router lists exactly `want`.
async fn until(router: &Router, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while router.ids() != want {
        assert!(
            Instant::now() < deadline,
            "router lists {:?}, want {want:?}",
            router.ids()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn remote(router: &Router, id: &str) -> Arc<RemoteWorker> {
    match router.choose(Some(id), None, std::time::Instant::now()) {
        Some(crate::route::Target::Remote(w)) if w.id() == id => w,
        _ => panic!("{id} is not a routable remote worker"),
    }
}

#[tokio::test(start_paused = true)]
async fn up_and_gone_follow_the_feed() {
    let script = Script::default();
    let (tx, rx) = feed();
    script.push(Ok(rx));
    let (router, stop) = start(&script, true);

    // In-process workers and entries without an address are not remote workers.
    tx.send(up("local", "10.0.0.9:7000")).await.unwrap();
    tx.send(up("inproc", "")).await.unwrap();
    tx.send(up("w1", "10.0.0.1:7000")).await.unwrap();
    tx.send(up("w2", "10.0.0.2:7000")).await.unwrap();
    until(&router, &["local", "w1", "w2"]).await;

    // A load report updates the worker in place.
    let w1 = remote(&router, "w1");
    tx.send(RegistryEvent::Up(info("w1", "10.0.0.1:7000", 60)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(Arc::ptr_eq(&w1, &remote(&router, "w1")));
    assert_eq!(w1.load(std::time::Instant::now()).unwrap().conns, 60);

    // A new address is a new worker: the restarted process.
    tx.send(up("w1", "10.0.0.1:7001")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(remote(&router, "w1").address(), "10.0.0.1:7001");

    tx.send(RegistryEvent::Gone("w2".into())).await.unwrap();
    until(&router, &["local", "w1"]).await;
    // Dropping its address takes a worker out too.
    tx.send(up("w1", "")).await.unwrap();
    until(&router, &["local"]).await;
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn without_identity_secret_remote_workers_are_skipped() {
    let script = Script::default();
    let (tx, rx) = feed();
    script.push(Ok(rx));
    let (router, stop) = start(&script, false);
    tx.send(up("w1", "10.0.0.1:7000")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(router.ids(), ["local"]);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_reopened_feed_replaces_the_learned_set_after_a_bounded_backoff() {
    let script = Script::default();
    let (tx, rx) = feed();
    script.push(Ok(rx));
    for _ in 0..8 {
        script.push(Err(BrokerError::Unavailable("down".into())));
    }
    let (tx2, rx2) = feed();
    script.push(Ok(rx2));
    let (router, stop) = start(&script, true);

    tx.send(up("w1", "10.0.0.1:7000")).await.unwrap();
    tx.send(up("w2", "10.0.0.2:7000")).await.unwrap();
    until(&router, &["local", "w1", "w2"]).await;
    let w2 = remote(&router, "w2");

    // The feed ends; while it is away, what was learned still routes.
    drop(tx);
    let ended = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(router.ids(), ["local", "w1", "w2"]);

    // The fresh snapshot lists w2 only: w1 goes once the snapshot is over.
    tx2.send(up("w2", "10.0.0.2:7000")).await.unwrap();
    until(&router, &["local", "w2"]).await;
    assert!(Arc::ptr_eq(&w2, &remote(&router, "w2")));

    // The first feed was in sync when it ended: the backoff starts over at 100 ms.
    let ms = Duration::from_millis;
    assert_eq!(script.opened_at.lock().unwrap()[1] - ended, ms(100));
    assert_eq!(
        script.gaps()[1..],
        [200, 400, 800, 1600, 3200, 5000, 5000, 5000].map(ms)
    );
    // Changes still flow after the snapshot.
    tx2.send(up("w3", "10.0.0.3:7000")).await.unwrap();
    until(&router, &["local", "w2", "w3"]).await;
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_synced_feed_that_ends_resets_the_backoff() {
    let script = Script::default();
    for _ in 0..3 {
        script.push(Err(BrokerError::Unavailable("down".into())));
    }
    let (tx, rx) = feed();
    script.push(Ok(rx));
    let (_router, stop) = start(&script, true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(tx);
    let ended = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ms = Duration::from_millis;
    assert_eq!(script.gaps()[..3], [100, 200, 400].map(ms));
    // After the synced feed ended: 100 ms again, not 800.
    let opened_at = script.opened_at.lock().unwrap().clone();
    assert_eq!(opened_at.len(), 5);
    assert_eq!(opened_at[4] - ended, ms(100));
    stop.cancel();
}
