//! A worker frozen (SIGSTOP) for longer than two heartbeats, then thawed (SIGCONT),
//! under load. Its clients find it silent and reconnect: to another worker once the
//! gateways drop it from the registry, or to their own sessions after the thaw. The
//! sessions it held die or resume; either way, each client ends with every acked
//! message once, in order.

use std::time::Duration;

use switchyard_testkit::mesh::{Mesh, MeshOptions};
use switchyard_testkit::NatsServer;
use tokio::time::{sleep, Instant};

use crate::load::{Load, LoadOptions};
use crate::scale::Scale;
use crate::{binary, report, Row, CATCH_UP};

const PHASE: Duration = Duration::from_secs(30);
const HEARTBEAT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_paused_past_two_heartbeats_loses_nothing() {
    let scale = Scale::get();
    // Short: the gateways still route to the frozen worker, so its clients' new
    // connections wait for it and resume their sessions on the thaw. Long (past the
    // registry TTL and the clients' upgrade timeout): they move to the others.
    let (short, long) = (Duration::from_secs(4), Duration::from_secs(12));
    let freezes = scale.pick(vec![short, long], vec![short, long, short, long]);
    assert!(freezes.iter().all(|&frozen| frozen > HEARTBEAT * 2));
    let pauses = freezes.len();

    let nats = NatsServer::start().await;
    let options = MeshOptions::new(nats.url())
        .worker_setting(format!("heartbeat = \"{}ms\"", HEARTBEAT.as_millis()));
    let mut mesh = Mesh::start(binary(), options).await;
    let mut options = LoadOptions::new(&mesh, "frozen");
    options.clients = scale.pick(200, 1000);
    options.publishers = 2;
    let options = options.publishing_for((long + PHASE) * pauses as u32);
    let clients = options.clients;
    let mut load = Load::start(&mesh, options).await;
    load.wait_more_acked(20, PHASE).await;
    let began = Instant::now();

    let ids = mesh.worker_ids();
    let mut steps = Vec::new();
    for (round, &frozen) in freezes.iter().enumerate() {
        let victim = ids[round % ids.len()].clone();
        let victims = load.clients_on(&victim);
        assert!(!victims.is_empty(), "no client on {victim}");
        let paused = Instant::now();
        mesh.pause_worker(&victim);
        sleep(frozen).await;
        // (client, when it began a session elsewhere) for those that moved meanwhile.
        let moved: Vec<Duration> = victims
            .iter()
            .filter_map(|&i| {
                let log = load.log(i);
                log.connects
                    .iter()
                    .find(|(at, w, _)| *at >= paused && *w != victim)
                    .map(|(at, _, _)| at.duration_since(paused))
            })
            .collect();
        mesh.resume_worker(&victim);
        // Every client of the frozen worker has a session begun since the pause:
        // elsewhere, or resumed on the thawed worker.
        load.wait_until(
            &format!("the clients of {victim} reconnected"),
            PHASE,
            |l| {
                victims.iter().all(|&i| {
                    let log = l.log(i);
                    log.worker.is_some()
                        && log.connects.last().is_some_and(|(at, _, _)| *at >= paused)
                })
            },
        )
        .await;
        let settled = paused.elapsed();
        let resumed = victims
            .iter()
            .filter(|&&i| {
                load.log(i)
                    .connects
                    .last()
                    .is_some_and(|(_, w, resumed)| *resumed && *w == victim)
            })
            .count();
        mesh.wait_routable(&victim).await;
        steps.push(format!(
            "{victim} frozen {:.0}s with {} clients: {} moved while frozen (the last after {:.1}s), {resumed} resumed on it, all back after {:.1}s",
            frozen.as_secs_f64(),
            victims.len(),
            moved.len(),
            moved.iter().max().copied().unwrap_or_default().as_secs_f64(),
            settled.as_secs_f64()
        ));
        load.wait_more_acked(40, PHASE).await;
    }
    let published = load.stop_publishing().await;
    let stopped = Instant::now();
    let verdict = load.caught_up(CATCH_UP).await;
    let lost = load.disconnects_since(began).len();
    report(
        "SIGSTOP past two heartbeats",
        &verdict,
        &format!(
            "heartbeat {HEARTBEAT:?}; {steps:?}; {lost} sessions lost; caught up {:?} after the last publish; now on {:?}; {published:?}",
            stopped.elapsed(),
            load.placement()
        ),
    );
    Row {
        scenario: "SIGSTOP of a worker past two heartbeats, then SIGCONT",
        test: "pause::",
        clients,
        rate: published.rate(),
        duration: published.elapsed,
        faults: format!(
            "{pauses} × SIGSTOP, {:?} s (heartbeat {:.0}s); {lost} sessions lost",
            freezes.iter().map(Duration::as_secs).collect::<Vec<_>>(),
            HEARTBEAT.as_secs_f64()
        ),
    }
    .print(&verdict);
    verdict.assert_clean();
    load.assert_clients_healthy();
    load.close().await;
}
