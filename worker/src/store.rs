//! The worker's reads of stored history: every subscription point, replay, catch-up and
//! gap fill goes through here, counted, so that tests and metrics can see how often a
//! worker reads the broker's store (a reconnect storm should not read once per client).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use switchyard_broker::{Broker, BrokerError, History};
use switchyard_protocol::RoomName;

use crate::stats::Stats;

#[derive(Clone)]
pub(crate) struct Store {
    broker: Arc<dyn Broker>,
    stats: Arc<Stats>,
}

impl Store {
    pub(crate) fn new(broker: Arc<dyn Broker>, stats: Arc<Stats>) -> Store {
        Store { broker, stats }
    }

    pub(crate) async fn history(
        &self,
        room: &RoomName,
        since: u64,
        limit: usize,
    ) -> Result<History, BrokerError> {
        self.stats.store_reads.fetch_add(1, Ordering::Relaxed);
        self.broker.history(room, since, limit).await
    }
}
