//! Loss and return of one node of a 3-node NATS cluster with R3 streams, under load:
//! first the node leading stream `SY_ROOMS` (killed, away a while, restarted; a new
//! leader is elected meanwhile), then a node that does not lead it. Each node comes
//! back with its store and catches up with the others before the next fault. Sessions
//! stay up; publishes meanwhile may be refused (`unavailable`), never lost once acked.

use std::time::Duration;

use switchyard_testkit::mesh::{Mesh, MeshOptions};
use switchyard_testkit::NatsCluster;
use tokio::time::{sleep, timeout, Instant};

use crate::load::{Load, LoadOptions};
use crate::scale::Scale;
use crate::{binary, report, Row, CATCH_UP};

const PHASE: Duration = Duration::from_secs(30);
const STREAM: &str = "SY_ROOMS";
/// Publishers wait this long after a refusal (see `nats.rs`).
const PAUSE_AFTER_REFUSAL: Duration = Duration::from_millis(500);

/// Polls until the stream has a leader other than `not` (any leader when `None`).
async fn wait_leader(cluster: &NatsCluster, not: Option<usize>) -> usize {
    let deadline = Instant::now() + PHASE;
    loop {
        match cluster.stream_leader(STREAM).await {
            Some(leader) if Some(leader) != not => return leader,
            _ if Instant::now() >= deadline => {
                panic!("no leader of {STREAM} (other than {not:?}) within {PHASE:?}")
            }
            _ => sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The stream's replicas as its leader sees them: (name, current) of each follower.
async fn followers(cluster: &NatsCluster) -> Result<Vec<(String, bool)>, String> {
    let client = timeout(
        Duration::from_secs(2),
        async_nats::connect(cluster.server_addrs()),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    let reply = timeout(
        Duration::from_secs(2),
        client.request(format!("$JS.API.STREAM.INFO.{STREAM}"), "".into()),
    )
    .await
    .map_err(|_| "no stream info in time".to_string())?
    .map_err(|e| format!("stream info: {e}"))?;
    let info: serde_json::Value =
        serde_json::from_slice(&reply.payload).map_err(|e| format!("stream info: {e}"))?;
    Ok(info["cluster"]["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["current"].as_bool().unwrap_or(false),
            )
        })
        .collect())
}

/// Waits until the leader counts two current followers: the returned node caught up.
async fn wait_all_current(cluster: &NatsCluster) -> Duration {
    let start = Instant::now();
    let mut last = Err(String::new());
    while start.elapsed() < PHASE {
        last = followers(cluster).await;
        if matches!(&last, Ok(f) if f.len() == 2 && f.iter().all(|(_, current)| *current)) {
            return start.elapsed();
        }
        sleep(Duration::from_millis(100)).await;
    }
    panic!("the stream's followers are not all current within {PHASE:?}: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_lost_and_returned_leader_or_not_loses_nothing() {
    let scale = Scale::get();
    let rounds = scale.pick(1, 3);
    let away = scale.pick(Duration::from_secs(2), Duration::from_secs(5));

    let mut cluster = NatsCluster::start().await;
    let options = MeshOptions::new(cluster.url_list()).replicas(3).staggered();
    let mesh = Mesh::start(binary(), options).await;
    let mut options = LoadOptions::new(&mesh, "nodes");
    options.clients = scale.pick(200, 1000);
    options.publishers = 2;
    options.pause_after_refusal = Some(PAUSE_AFTER_REFUSAL);
    let options = options.publishing_for(Duration::from_secs(30) * rounds as u32);
    let clients = options.clients;
    let mut load = Load::start(&mesh, options).await;
    load.wait_more_acked(40, PHASE).await;
    let began = Instant::now();

    let mut steps = Vec::new();
    for _ in 0..rounds {
        // The leader: lost (a new one is elected), then back.
        let leader = wait_leader(&cluster, None).await;
        let killed = Instant::now();
        cluster.kill(leader);
        let new = wait_leader(&cluster, Some(leader)).await;
        let elected = killed.elapsed();
        load.wait_more_acked(20, PHASE).await;
        sleep(away).await;
        cluster.restart(leader).await;
        let synced = wait_all_current(&cluster).await;
        steps.push(format!(
            "leader n{} killed (n{} elected in {:.1}s), back after {:.1}s, current in {:.1}s",
            leader + 1,
            new + 1,
            elected.as_secs_f64(),
            killed.elapsed().as_secs_f64(),
            synced.as_secs_f64()
        ));
        load.wait_more_acked(20, PHASE).await;

        // A follower: lost, then back.
        let leader = wait_leader(&cluster, None).await;
        let follower = (leader + 1) % 3;
        let killed = Instant::now();
        cluster.kill(follower);
        load.wait_more_acked(20, PHASE).await;
        sleep(away).await;
        cluster.restart(follower).await;
        let synced = wait_all_current(&cluster).await;
        steps.push(format!(
            "follower n{} killed, back after {:.1}s, current in {:.1}s",
            follower + 1,
            killed.elapsed().as_secs_f64(),
            synced.as_secs_f64()
        ));
        load.wait_more_acked(20, PHASE).await;
    }
    let published = load.stop_publishing().await;
    let stopped = Instant::now();
    let verdict = load.caught_up(CATCH_UP).await;
    report(
        "cluster node lost and returned",
        &verdict,
        &format!(
            "{steps:?}; caught up {:?} after the last publish; {published:?}",
            stopped.elapsed()
        ),
    );
    Row {
        scenario: "3-node cluster (R3): stream leader lost and returned, then a follower",
        test: "cluster_node::",
        clients,
        rate: published.rate(),
        duration: published.elapsed,
        faults: format!(
            "{} × leader SIGKILL + restart, {} × follower SIGKILL + restart ({} publishes refused)",
            rounds,
            rounds,
            published.refused.values().sum::<usize>()
        ),
    }
    .print(&verdict);
    verdict.assert_clean();
    load.assert_clients_healthy();
    assert_eq!(load.disconnects_since(began), [], "sessions stay up");
    load.close().await;
}
