//! (a) Sanity, no fault: clients on three worker processes all get every message.

use switchyard_testkit::mesh::{Mesh, MeshOptions};
use switchyard_testkit::NatsServer;
use tokio::time::Instant;

use crate::load::{Load, LoadOptions};
use crate::{binary, report, CATCH_UP};

#[tokio::test]
async fn fan_out_reaches_clients_on_every_worker_process() {
    let nats = NatsServer::start().await;
    let mesh = Mesh::start(binary(), MeshOptions::new(nats.url())).await;
    let began = Instant::now();
    let options = LoadOptions::new(&mesh, "fanout");
    let per_worker = options.clients / mesh.worker_ids().len();
    let mut load = Load::start(&mesh, options).await;
    let placement = load.placement();
    for id in mesh.worker_ids() {
        assert_eq!(
            placement.get(&id),
            Some(&per_worker),
            "clients on {placement:?}"
        );
    }
    load.wait_acked(200, std::time::Duration::from_secs(20))
        .await;
    let published = load.stop_publishing().await;
    let stopped = Instant::now();
    let verdict = load.caught_up(CATCH_UP).await;
    report(
        "a fan-out",
        &verdict,
        &format!(
            "caught up {:?} after the last publish; placement {placement:?}; {published:?}",
            stopped.elapsed()
        ),
    );
    verdict.assert_clean();
    load.assert_clients_healthy();
    assert_eq!(load.disconnects_since(began), []);
    load.close().await;
}
