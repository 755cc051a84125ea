//! (g) A backend publishing straight into JetStream (`sy.room.<room>`, no `Sy-From`)
//! reaches the clients of every worker process, shown as from `$server`.

use std::time::Duration;

use switchyard_testkit::mesh::{Mesh, MeshOptions};
use switchyard_testkit::NatsServer;
use tokio::time::{Instant, MissedTickBehavior};

use crate::load::{Load, LoadOptions};
use crate::scale::Scale;
use crate::{binary, report, CATCH_UP};

const MESSAGES: usize = 150;

#[tokio::test]
async fn a_backend_publishing_through_nats_reaches_clients_on_every_worker() {
    let nats = NatsServer::start().await;
    let mesh = Mesh::start(binary(), MeshOptions::new(nats.url())).await;
    let mut options = LoadOptions::new(&mesh, "orders");
    options.clients = Scale::get().pick(9, 300);
    options.publishers = 0;
    let load = Load::start(&mesh, options).await;
    let placement = load.placement();
    assert_eq!(placement.len(), 3, "clients on every worker: {placement:?}");

    let backend = async_nats::connect(nats.url())
        .await
        .expect("backend connects");
    let js = async_nats::jetstream::new(backend);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for k in 0..MESSAGES {
        tick.tick().await;
        let data = serde_json::json!({"order": k}).to_string();
        let ack = js
            .publish("sy.room.orders", data.into())
            .await
            .expect("publish sent")
            .await
            .expect("publish stored");
        load.recorder
            .acked("orders", &format!("backend-{k}"), ack.sequence);
    }
    let stopped = Instant::now();
    let verdict = load.caught_up(CATCH_UP).await;
    report(
        "g backend via NATS",
        &verdict,
        &format!(
            "caught up {:?} after the last publish; placement {placement:?}",
            stopped.elapsed()
        ),
    );
    verdict.assert_clean();
    load.assert_clients_healthy();
    for i in 0..load.len() {
        let from = load.log(i).from.clone();
        assert_eq!(
            from.into_iter().collect::<Vec<_>>(),
            [("$server".to_string(), MESSAGES)],
            "client u{i} sees every backend message from $server"
        );
    }
    load.close().await;
}
