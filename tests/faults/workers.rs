//! (b) A worker process killed with SIGKILL, (c) one drained with SIGTERM, both under
//! load: their clients reconnect through the gateway to the other workers, resubscribe
//! with `since`, and end with every acked message once, in order.

use std::time::Duration;

use switchyard_testkit::mesh::{Mesh, MeshOptions};
use switchyard_testkit::NatsServer;
use tokio::time::{sleep, Instant};

use crate::load::{Load, LoadOptions};
use crate::scale::Scale;
use crate::{binary, report, Row, CATCH_UP};

const REGISTRY_TTL: Duration = Duration::from_secs(3);
const PHASE: Duration = Duration::from_secs(20);

/// Waits until gateway 0 has logged a line with every one of `needles`; `None` after
/// `wait`.
pub(crate) async fn gateway_logged(
    mesh: &Mesh,
    needles: &[&str],
    wait: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        let found = mesh
            .gateway_log(0)
            .lines()
            .any(|line| needles.iter().all(|n| line.contains(n)));
        if found {
            return Some(start.elapsed());
        }
        if start.elapsed() >= wait {
            return None;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn kill_9_of_a_worker_moves_its_clients_and_loses_nothing() {
    let nats = NatsServer::start().await;
    let mut mesh = Mesh::start(binary(), MeshOptions::new(nats.url())).await;
    let mut load = Load::start(&mesh, LoadOptions::new(&mesh, "kill")).await;
    load.wait_acked(60, PHASE).await;
    let victims = load.clients_on("w1");
    assert!(victims.contains(&0), "publisher u0 is on w1: {victims:?}");

    let killed = Instant::now();
    mesh.kill_worker("w1");
    let moved = load.wait_moved(&victims, "w1", killed).await;
    let gone = gateway_logged(
        &mesh,
        &["worker gone from the registry", "w1"],
        REGISTRY_TTL * 3,
    )
    .await
    .map(|_| killed.elapsed());
    let acked = load.recorder.acked_count();
    load.wait_acked(acked + 60, PHASE).await;
    let published = load.stop_publishing().await;
    let stopped = Instant::now();
    let verdict = load.caught_up(CATCH_UP).await;
    report(
        "b kill -9",
        &verdict,
        &format!(
            "{} clients moved off w1 within {moved:?}; w1 left the registry after {gone:?}; caught up {:?} after the last publish; now on {:?}; {published:?}",
            victims.len(),
            stopped.elapsed(),
            load.placement()
        ),
    );
    verdict.assert_clean();
    load.assert_clients_healthy();
    assert!(load.clients_on("w1").is_empty());
    let gone = gone.expect("the gateway logged w1 gone from the registry");
    assert!(
        gone <= REGISTRY_TTL * 2,
        "w1 left the registry after {gone:?}"
    );
    // Back on its port, routable again from the gateway.
    let restarted = Instant::now();
    mesh.restart_worker("w1").await;
    println!(
        "[faults] b kill -9: w1 restarted and routable after {:?}",
        restarted.elapsed()
    );
    load.close().await;
}

#[tokio::test]
async fn a_gateway_restart_under_load_resumes_every_session() {
    let scale = Scale::get();
    let restarts = scale.pick(1, 3);
    let nats = NatsServer::start().await;
    let mut mesh = Mesh::start(binary(), MeshOptions::new(nats.url())).await;
    let mut options = LoadOptions::new(&mesh, "gateway");
    options.clients = scale.pick(200, 1000);
    let options = options.publishing_for(PHASE * restarts);
    let clients = options.clients;
    let mut load = Load::start(&mesh, options).await;
    load.wait_acked(60, PHASE).await;
    let before = load.placement();

    let all: Vec<usize> = (0..load.len()).collect();
    let mut steps = Vec::new();
    for _ in 0..restarts {
        let killed = Instant::now();
        mesh.kill_gateway(0);
        mesh.restart_gateway(0).await;
        let back = killed.elapsed();
        let reconnected = load.wait_reconnected(&all, killed, PHASE).await;
        steps.push(format!(
            "gateway back after {back:.1?}, every client reconnected after {reconnected:.1?}"
        ));
        load.wait_more_acked(60, PHASE).await;
    }
    let published = load.stop_publishing().await;
    let verdict = load.caught_up(CATCH_UP).await;
    report(
        "h gateway kill -9 and restart",
        &verdict,
        &format!("{steps:?}; {published:?}"),
    );
    Row {
        scenario: "gateway kill -9 and restart",
        test: "workers::a_gateway_restart",
        clients,
        rate: published.rate(),
        duration: published.elapsed,
        faults: format!("{restarts} × gateway SIGKILL + restart; every session resumed"),
    }
    .print(&verdict);
    verdict.assert_clean();
    load.assert_clients_healthy();
    // The workers held the sessions: each client resumed its own, on the same worker.
    assert_eq!(load.placement(), before);
    for i in 0..load.len() {
        let log = load.log(i);
        let (_, worker, resumed) = log.connects.last().expect("connected");
        assert!(
            *resumed,
            "client u{i} resumed on {worker}: {:?}",
            log.connects
        );
    }
    load.close().await;
}

#[tokio::test]
async fn sigterm_drains_a_worker_under_load_and_loses_nothing() {
    let nats = NatsServer::start().await;
    let options = MeshOptions::new(nats.url()).worker_setting("drain_window = \"1s\"");
    let mut mesh = Mesh::start(binary(), options).await;
    let mut load = Load::start(&mesh, LoadOptions::new(&mesh, "drain")).await;
    load.wait_acked(60, PHASE).await;
    let victims = load.clients_on("w1");
    assert!(victims.contains(&0), "publisher u0 is on w1: {victims:?}");

    let termed = Instant::now();
    let status = mesh.term_worker("w1").await;
    let exited = termed.elapsed();
    let moved = load.wait_moved(&victims, "w1", termed).await;
    let acked = load.recorder.acked_count();
    load.wait_acked(acked + 60, PHASE).await;
    let published = load.stop_publishing().await;
    let stopped = Instant::now();
    let verdict = load.caught_up(CATCH_UP).await;
    report(
        "c SIGTERM drain",
        &verdict,
        &format!(
            "w1 exited with {status} after {exited:?}; {} clients moved within {moved:?}; caught up {:?} after the last publish; now on {:?}; {published:?}",
            victims.len(),
            stopped.elapsed(),
            load.placement()
        ),
    );
    verdict.assert_clean();
    load.assert_clients_healthy();
    assert!(status.success(), "w1 exited with {status}");
    for &i in &victims {
        let codes: Vec<Option<u16>> = load.log(i).disconnects.iter().map(|(_, c)| *c).collect();
        assert_eq!(
            codes,
            [Some(1012)],
            "client u{i} was drained with 1012 once"
        );
    }
    assert!(load.clients_on("w1").is_empty());
    load.close().await;
}
