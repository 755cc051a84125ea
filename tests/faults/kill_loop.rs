//! Kill -9 of a random worker every few seconds for the whole run. Each killed worker
//! comes back after a moment (as an orchestrator would restart it), so that capacity
//! remains; its clients reconnect through the gateway to the others, resubscribe with
//! `since`, and end with every acked message once, in order.

use std::time::Duration;

use switchyard_testkit::mesh::{Mesh, MeshOptions};
use switchyard_testkit::NatsServer;
use tokio::time::{sleep, Instant};

use crate::load::{Load, LoadOptions};
use crate::scale::{Rng, Scale};
use crate::{binary, report, Row, CATCH_UP};

const PHASE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_worker_killed_every_few_seconds_loses_nothing() {
    let scale = Scale::get();
    let workers = scale.pick(3, 4);
    let kills = scale.pick(4, 12);
    // Between two kills; each killed worker is away `down`, then restarted.
    let every = scale.pick(Duration::from_secs(3), Duration::from_secs(5));
    let down = Duration::from_secs(1);
    let mut rng = Rng::from_env();

    let nats = NatsServer::start().await;
    let mut mesh = Mesh::start(binary(), MeshOptions::new(nats.url()).workers(workers)).await;
    let mut options = LoadOptions::new(&mesh, "chaos");
    options.clients = scale.pick(200, 1000);
    options.publishers = 2;
    options.interval = Duration::from_millis(40);
    let options = options.publishing_for((every + down * 3) * kills as u32 + PHASE);
    let clients = options.clients;
    let mut load = Load::start(&mesh, options).await;
    load.wait_more_acked(20, PHASE).await;
    let began = Instant::now();

    let ids = mesh.worker_ids();
    let mut killed = Vec::new();
    for _ in 0..kills {
        sleep(every).await;
        // A random worker among those holding clients (a restarted one holds none
        // until clients move again).
        let busy: Vec<&String> = ids
            .iter()
            .filter(|id| !load.clients_on(id).is_empty())
            .collect();
        let victim = match busy.len() {
            0 => ids[rng.below(ids.len())].clone(),
            n => busy[rng.below(n)].clone(),
        };
        let held = load.clients_on(&victim).len();
        let away = mesh.crash_worker(&victim, down).await;
        killed.push(format!("{victim}:{held}@{:.1}s", away.as_secs_f64()));
    }
    // The last victim's clients have moved too; one more phase on the final mesh.
    load.wait_more_acked(40, PHASE).await;
    let published = load.stop_publishing().await;
    let stopped = Instant::now();
    let verdict = load.caught_up(CATCH_UP * 2).await;
    let lost = load.disconnects_since(began).len();
    report(
        "kill -9 loop",
        &verdict,
        &format!(
            "seed {}; {kills} kills (victim:clients held@time away) {killed:?}; {lost} sessions lost; caught up {:?} after the last publish; now on {:?}; {published:?}",
            rng.seed,
            stopped.elapsed(),
            load.placement()
        ),
    );
    Row {
        scenario: "kill -9 of a random worker every few seconds",
        test: "kill_loop::",
        clients,
        rate: published.rate(),
        duration: published.elapsed,
        faults: format!(
            "{kills} × SIGKILL ({lost} sessions lost), each worker back after ~{}s",
            down.as_secs()
        ),
    }
    .print(&verdict);
    verdict.assert_clean();
    load.assert_clients_healthy();
    assert!(
        lost > 0,
        "the kills cut no session: the test proves nothing"
    );
    load.close().await;
}
