//! A rolling restart of every worker under load: one after another, each is drained
//! with SIGTERM (`reconnect` frames, close 1012, exit 0) and started again before the
//! next one goes. Clients move at each step, resubscribe with `since`, and end with
//! every acked message once, in order (DESIGN "Shutdown and drain").

use std::time::Duration;

use switchyard_testkit::mesh::{Mesh, MeshOptions};
use switchyard_testkit::NatsServer;
use tokio::time::{sleep, Instant};

use crate::load::{Load, LoadOptions};
use crate::scale::Scale;
use crate::{binary, report, Row, CATCH_UP};

const PHASE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_worker_loses_nothing() {
    let scale = Scale::get();
    let workers = scale.pick(3, 4);
    let rounds = scale.pick(1, 3);
    let drain_window = scale.pick("1s", "3s");
    // Load on the whole mesh between two steps.
    let between = scale.pick(Duration::from_secs(3), Duration::from_secs(5));

    let nats = NatsServer::start().await;
    let options = MeshOptions::new(nats.url())
        .workers(workers)
        .worker_setting(format!("drain_window = \"{drain_window}\""));
    let mut mesh = Mesh::start(binary(), options).await;
    let mut options = LoadOptions::new(&mesh, "rolling");
    options.clients = scale.pick(200, 1000);
    options.publishers = 2;
    let options = options.publishing_for((between + PHASE) * (rounds * workers) as u32);
    let clients = options.clients;
    let mut load = Load::start(&mesh, options).await;
    load.wait_more_acked(20, PHASE).await;
    let began = Instant::now();

    let mut steps = Vec::new();
    for _ in 0..rounds {
        for id in mesh.worker_ids() {
            let held = load.clients_on(&id).len();
            let termed = Instant::now();
            let status = mesh.term_worker(&id).await;
            assert!(status.success(), "{id} exited with {status}");
            let exited = termed.elapsed();
            mesh.restart_worker(&id).await;
            steps.push(format!(
                "{id}:{held} out in {:.1}s, back in {:.1}s",
                exited.as_secs_f64(),
                termed.elapsed().as_secs_f64()
            ));
            // Load on the restarted mesh before the next step.
            load.wait_more_acked(20, PHASE).await;
            sleep(between).await;
        }
    }
    load.wait_more_acked(20, PHASE).await;
    let published = load.stop_publishing().await;
    let stopped = Instant::now();
    let verdict = load.caught_up(CATCH_UP * 2).await;
    let lost = load.disconnects_since(began);
    report(
        "rolling restart",
        &verdict,
        &format!(
            "{} restarts {steps:?}; {} sessions drained; caught up {:?} after the last publish; now on {:?}; {published:?}",
            rounds * workers,
            lost.len(),
            stopped.elapsed(),
            load.placement()
        ),
    );
    Row {
        scenario: "rolling restart of every worker (SIGTERM drain)",
        test: "rolling::",
        clients,
        rate: published.rate(),
        duration: published.elapsed,
        faults: format!(
            "{} × SIGTERM + restart ({} sessions drained)",
            rounds * workers,
            lost.len()
        ),
    }
    .print(&verdict);
    verdict.assert_clean();
    load.assert_clients_healthy();
    assert!(
        !lost.is_empty(),
        "no session was drained: the test proves nothing"
    );
    let other: Vec<_> = lost
        .iter()
        .filter(|(_, code)| *code != Some(1012))
        .collect();
    assert!(
        other.is_empty(),
        "sessions ended otherwise than drained (1012): {other:?}"
    );
    load.close().await;
}
