//! Switchyard workers hold the WebSocket sessions.
//!
//! - [`Worker`] is the handle the binary and gateways use: [`Worker::serve_upgrade`]
//!   takes an authenticated upgrade (in-process from a gateway, or from [`listener`]
//!   for gateways in other processes), [`Worker::drain`] empties it.
//! - `session/` holds one client's state; per socket a reader parses frames and a
//!   writer owns the write half and drains a bounded outbox.
//! - [`room`] keeps the rooms with local members and fans each room's live feed out to
//!   their outboxes, one encoded frame shared by all.
//! - [`control`] acts on mesh-wide commands (disconnect, revoke) from the broker.
//!
//! Messages flow: reader → broker (publish) → broker live feed → room fan-out →
//! outbox → writer → socket; a full outbox switches that session's room to catch-up
//! from the broker's history.

pub mod config;
mod control;
mod drain;
mod fanout;
pub mod listener;
mod metrics;
mod registry;
mod room;
mod session;
mod sessions;
pub mod stats;
mod store;
pub mod token;
mod window;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use switchyard_broker::Broker;
use switchyard_protocol::{Identity, SUBPROTOCOL};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{ConfigError, WorkerConfig};
pub use stats::Stats;
pub use token::{TokenRejected, TokenVerifier, VerifiedToken};

use room::Rooms;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Serving,
    Draining,
}

/// A worker's load, for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub conns: u64,
    pub capacity: u64,
    pub draining: bool,
}

pub(crate) struct Shared {
    pub(crate) id: Arc<str>,
    pub(crate) config: WorkerConfig,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) store: store::Store,
    pub(crate) verifier: Option<Arc<dyn TokenVerifier>>,
    pub(crate) rooms: Rooms,
    /// The writers' heartbeat and token timers.
    pub(crate) alarms: Arc<session::alarms::Alarms>,
    pub(crate) sessions: Mutex<sessions::Sessions>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) tracker: TaskTracker,
    pub(crate) phase: watch::Sender<Phase>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) shutdown: CancellationToken,
}

impl Shared {
    pub(crate) fn is_draining(&self) -> bool {
        *self.phase.borrow() == Phase::Draining
    }
}

/// A running worker. Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    shared: Arc<Shared>,
}

impl Worker {
    /// Starts a worker on a broker. `verifier` checks the tokens of `refresh` frames;
    /// without one, every refresh is refused.
    pub fn start(
        config: WorkerConfig,
        broker: Arc<dyn Broker>,
        verifier: Option<Arc<dyn TokenVerifier>>,
    ) -> Result<Worker, ConfigError> {
        config.validate()?;
        let tracker = TaskTracker::new();
        let stats = Arc::new(Stats::default());
        let metrics = Arc::new(metrics::Metrics::default());
        let shared = Arc::new(Shared {
            id: Arc::from(config.id.as_str()),
            permits: Arc::new(Semaphore::new(config.max_connections)),
            rooms: Rooms::new(
                Arc::from(config.id.as_str()),
                broker.clone(),
                store::Store::new(broker.clone(), stats.clone()),
                tracker.clone(),
                stats.clone(),
                metrics.clone(),
                room::RoomSettings {
                    page: config.catch_up_page,
                    window: config.room_window,
                    head_check: config.head_check,
                    skip_gap_fill: config.fault_injection.skip_gap_fill,
                },
            ),
            store: store::Store::new(broker.clone(), stats.clone()),
            config,
            broker,
            verifier,
            alarms: Arc::default(),
            sessions: Mutex::default(),
            stats,
            metrics,
            tracker,
            phase: watch::channel(Phase::Serving).0,
            shutdown: CancellationToken::new(),
        });
        shared.tracker.spawn(control::run(shared.clone()));
        shared
            .tracker
            .spawn(shared.alarms.clone().run(shared.shutdown.clone()));
        Ok(Worker { shared })
    }

    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Announces this worker in the broker's registry until it stops: `address` is where
    /// gateways hand connections over, empty for a worker reached only in-process.
    pub fn advertise(&self, address: String) {
        self.shared
            .tracker
            .spawn(registry::announce(self.shared.clone(), address));
    }

    pub fn load(&self) -> Load {
        let capacity = self.shared.config.max_connections as u64;
        Load {
            conns: capacity - self.shared.permits.available_permits() as u64,
            capacity,
            draining: self.shared.is_draining(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Renders this worker's metrics (labelled with its id) into a scrape.
    pub fn render_metrics(&self, out: &mut switchyard_telemetry::Exposition) {
        let shared = &self.shared;
        let load = self.load();
        let (mut queued, mut queued_max, sessions) = (0u64, 0u64, {
            let sessions = session::lock(&shared.sessions);
            sessions.iter().cloned().collect::<Vec<_>>()
        });
        for session in &sessions {
            let depth = session.outbox.len() as u64;
            queued += depth;
            queued_max = queued_max.max(depth);
        }
        let gauges = metrics::Gauges {
            connections: load.conns,
            capacity: load.capacity,
            sessions: sessions.len() as u64,
            rooms: shared.rooms.len() as u64,
            draining: load.draining,
            outbox_queued: queued,
            outbox_queued_max: queued_max,
        };
        metrics::render(out, &shared.id, &shared.metrics, &shared.stats, &gauges);
    }

    /// Ready to take connections: serving, not draining.
    pub fn is_ready(&self) -> bool {
        !self.shared.is_draining() && !self.shared.shutdown.is_cancelled()
    }

    /// Sessions held, attached or detached.
    pub fn sessions(&self) -> usize {
        session::lock(&self.shared.sessions).len()
    }

    /// Rooms with local members.
    pub fn rooms(&self) -> usize {
        self.shared.rooms.len()
    }

    pub fn phase(&self) -> watch::Receiver<Phase> {
        self.shared.phase.subscribe()
    }

    /// Answers an authenticated WebSocket upgrade: `101` and a session, or an error
    /// status when the request is not a valid upgrade or the worker is draining.
    pub fn serve_upgrade(
        &self,
        mut req: Request<Incoming>,
        identity: Identity,
    ) -> Response<Empty<Bytes>> {
        if self.shared.is_draining() {
            return status(StatusCode::SERVICE_UNAVAILABLE);
        }
        let (mut response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
            Ok(pair) => pair,
            Err(_) => return status(StatusCode::BAD_REQUEST),
        };
        if identity.subprotocol {
            response.headers_mut().insert(
                hyper::header::SEC_WEBSOCKET_PROTOCOL,
                hyper::header::HeaderValue::from_static(SUBPROTOCOL),
            );
        }
        self.shared.tracker.spawn(session::connection::serve(
            self.shared.clone(),
            upgrade,
            identity,
        ));
        response
    }

    /// Drains: stops taking connections, tells every client to reconnect elsewhere
    /// (`reconnect` with `after_ms` spread over the drain window, then 1012), ends
    /// detached sessions, and waits up to `grace` for sessions to finish.
    pub async fn drain(&self, grace: std::time::Duration) {
        drain::run(&self.shared, grace).await
    }

    /// Stops at once: closes every connection with 1001 and waits up to `grace`.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        drain::shutdown(&self.shared, grace).await
    }
}

fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = code;
    response
}
