//! Announcing this worker in the broker's registry, so that gateways can route to it:
//! on a timer, at once when it starts draining, and a withdrawal when it stops.

use std::sync::Arc;

use switchyard_broker::WorkerInfo;
use tracing::debug;

use crate::{Phase, Shared};

pub(crate) async fn announce(shared: Arc<Shared>, address: String) {
    let mut phase = shared.phase.subscribe();
    let mut tick = tokio::time::interval(shared.config.announce_every);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            _ = tick.tick() => {}
            Ok(()) = phase.changed() => {}
        }
        let capacity = shared.config.max_connections as u64;
        let info = WorkerInfo {
            id: shared.id.to_string(),
            address: address.clone(),
            conns: capacity - shared.permits.available_permits() as u64,
            capacity,
            draining: *phase.borrow_and_update() == Phase::Draining,
        };
        if let Err(err) = shared.broker.announce(info).await {
            debug!(error = %err, "registry announce failed; retrying next period");
        }
    }
    if let Err(err) = shared.broker.withdraw(&shared.id).await {
        debug!(error = %err, "registry withdraw failed; the entry expires by itself");
    }
}
