//! The NATS JetStream engine (DESIGN "The path of a message").
//!
//! - [`setup`] ensures the room stream (`sy.room.>`, RePublish to `sy.live.room.>`) and
//!   the KV buckets; [`config`] says how.
//! - Publishing stores on `sy.room.<room>` with `Nats-Msg-Id` (dedupe), `Sy-From`,
//!   `Sy-Ts` and `traceparent`; ephemeral messages go straight to the live subject.
//! - [`live`] is a room's feed; [`history`] reads the stream back; [`presence`],
//!   [`registry`] and [`control`] ride on KV buckets and core subjects.
//!
//! One connection per process. When it comes back after a loss, or the stream elects
//! a new leader, every live feed yields [`LiveEvent::Lagged`](crate::LiveEvent): the
//! republished feed can have holes then (DESIGN: "gap fill is not optional").

pub mod config;
mod control;
mod decode;
mod history;
mod live;
mod presence;
mod reaper;
mod registry;
mod setup;
mod subjects;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_nats::connection::State;
use async_nats::jetstream::{self, stream::Stream};
use async_nats::{Client, HeaderMap, ServerAddr};
use async_trait::async_trait;
use futures_util::StreamExt;
use switchyard_protocol::frame::Member;
use switchyard_protocol::{RoomName, UserId};
use switchyard_telemetry::trace;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use config::NatsConfig;

use crate::{
    Broker, BrokerError, Control, ControlFeed, History, LiveFeed, Publish, RegistryFeed, Stored,
    WorkerInfo,
};
use presence::Presence;
use setup::Buckets;
use subjects::headers;

pub struct NatsBroker {
    config: NatsConfig,
    client: Client,
    js: jetstream::Context,
    rooms: Stream,
    epoch: Mutex<Arc<str>>,
    buckets: Buckets,
    presence: Arc<Presence>,
    /// Bumped on every reconnect and leader election: live feeds yield `Lagged`.
    lag: watch::Sender<u64>,
    stop: CancellationToken,
    events: Arc<ConnectionEvents>,
}

/// What the connection went through, counted from async-nats' events.
#[derive(Default)]
struct ConnectionEvents {
    /// `Connected` events: the first connection and every reconnect.
    connects: AtomicU64,
    disconnects: AtomicU64,
    leader_elections: AtomicU64,
}

pub(crate) fn unavailable(what: &str, err: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("cannot {what}: {err}"))
}

impl NatsBroker {
    /// Connects, ensures the stream and buckets, and starts the background tasks
    /// (presence refresh, leader-election watch). Fails with a message that says what to
    /// fix: an unreachable server, a refused login, a conflicting stream.
    pub async fn connect(config: NatsConfig) -> Result<Arc<NatsBroker>, BrokerError> {
        let problems = config.problems("nats.");
        if !problems.is_empty() {
            return Err(BrokerError::Rejected(problems.join("; ")));
        }
        let addrs = config
            .url
            .split(',')
            .map(|u| u.trim().parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BrokerError::Rejected(format!("nats.url: {e}")))?;
        let lag = watch::channel(0u64).0;
        let events = lag.clone();
        let counted = Arc::new(ConnectionEvents::default());
        let counts = counted.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name(config.name.clone().unwrap_or_else(|| "switchyard".into()))
            .request_timeout(Some(config.request_timeout))
            .event_callback(move |event| {
                let events = events.clone();
                let counts = counts.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("connected to NATS");
                            counts.connects.fetch_add(1, Ordering::Relaxed);
                            events.send_modify(|n| *n += 1);
                        }
                        async_nats::Event::Disconnected => {
                            counts.disconnects.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("disconnected from NATS")
                        }
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }
            });
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(tls) = &config.tls {
            options = options
                .require_tls(true)
                .add_root_certificates(tls.ca.clone());
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
        }
        let client = options.connect(addrs).await.map_err(|e| {
            BrokerError::Unavailable(format!(
                "cannot connect to NATS at {}: {e} (is nats-server running with JetStream, `nats-server -js`?)",
                config.url
            ))
        })?;
        // Acks in flight are bounded, and a full window waits instead of failing
        // (set explicitly: the doc and the `Default` of async-nats disagree).
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .max_ack_inflight(config.max_ack_inflight)
            .backpressure_on_inflight(true)
            .build(client.clone());
        let (mut rooms, buckets) = setup::ensure(&js, &config).await?;
        let epoch = epoch_of(&mut rooms).await?;
        let presence_stream = js
            .get_stream(format!("KV_{}", setup::PRESENCE_BUCKET))
            .await
            .map_err(|e| unavailable("open the presence bucket", e))?;
        // A name unique to this process: the inbox's last token is a fresh NUID.
        let inbox = client.new_inbox();
        let nuid = inbox.rsplit('.').next().unwrap_or(&inbox).to_string();
        let presence = Arc::new(Presence::new(
            client.clone(),
            buckets.presence.clone(),
            presence_stream,
            nuid,
            config.request_timeout,
        ));
        let stop = CancellationToken::new();
        let reaper = reaper::Reaper {
            client: client.clone(),
            kv: buckets.presence.clone(),
            stream: presence.stream.clone(),
            holder: format!("{}-{inbox}", config.name.as_deref().unwrap_or("switchyard")),
            every: config.presence_ttl / 2,
            timeout: config.request_timeout,
        };
        tokio::spawn(reaper.run(stop.clone()));
        tokio::spawn(
            presence
                .clone()
                .refresh(NatsConfig::refresh_every(config.presence_ttl), stop.clone()),
        );
        let broker = Arc::new(NatsBroker {
            epoch: Mutex::new(epoch),
            config,
            client,
            js,
            rooms,
            buckets,
            presence,
            lag,
            stop,
            events: counted,
        });
        tokio::spawn(watch_leader(Arc::downgrade(&broker), broker.stop.clone()));
        Ok(broker)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn config(&self) -> &NatsConfig {
        &self.config
    }

    /// The store's epoch: changes when the stream is recreated.
    pub fn epoch(&self) -> Arc<str> {
        self.epoch.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Payloads from NATS dropped because they were not JSON, since start.
    pub fn dropped_not_json() -> u64 {
        decode::NOT_JSON.load(Ordering::Relaxed)
    }

    fn connected(&self) -> Result<(), BrokerError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            _ => Err(BrokerError::Unavailable("not connected to NATS".into())),
        }
    }

    /// Stores on `sy.room.<room>` and waits for JetStream's ack.
    async fn store(&self, msg: Publish) -> Result<Stored, BrokerError> {
        self.connected()?;
        if msg.data.len() > self.config.max_message_bytes as usize {
            return Err(BrokerError::Rejected(format!(
                "message of {} bytes is over the limit of {}",
                msg.data.len(),
                self.config.max_message_bytes
            )));
        }
        let headers = Self::headers(&msg);
        let ts = headers
            .get(headers::TS)
            .and_then(|v| v.as_str().parse().ok())
            .unwrap_or_else(decode::now_ms);
        let ack = self
            .js
            .publish_with_headers(subjects::stored(&msg.room), headers, msg.data)
            .await
            .map_err(|e| unavailable("publish", e))?
            .await
            .map_err(|e| unavailable("store the message", e))?;
        Ok(Stored {
            seq: ack.sequence,
            ts,
            duplicate: ack.duplicate,
        })
    }

    fn headers(msg: &Publish) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(headers::FROM, msg.from.as_ref());
        map.insert(headers::TS, decode::now_ms().to_string().as_str());
        if let Some(id) = &msg.msg_id {
            map.insert(headers::MSG_ID, id.as_str());
        }
        if let Some(tp) = &msg.traceparent {
            map.insert(headers::TRACEPARENT, tp.as_str());
        }
        map
    }
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn epoch_of(stream: &mut Stream) -> Result<Arc<str>, BrokerError> {
    let info = stream
        .info()
        .await
        .map_err(|e| unavailable("read the room stream", e))?;
    Ok(Arc::from(format!(
        "j{:x}",
        info.created.unix_timestamp_nanos()
    )))
}

/// A new stream leader may not have republished everything the old one stored: tell
/// every feed to check. The epoch is read again too, in case the stream was recreated.
/// Holds the broker weakly, so that dropping it stops this and every background task.
async fn watch_leader(broker: Weak<NatsBroker>, stop: CancellationToken) {
    let Some(mut sub) = (match broker.upgrade() {
        Some(broker) => {
            let subject = subjects::leader_elected(&broker.config.stream);
            broker.client.subscribe(subject).await.ok()
        }
        None => None,
    }) else {
        return;
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            msg = sub.next() => if msg.is_none() { return },
        }
        let Some(broker) = broker.upgrade() else {
            return;
        };
        tracing::info!("room stream elected a new leader: checking every room for gaps");
        broker
            .events
            .leader_elections
            .fetch_add(1, Ordering::Relaxed);
        let mut rooms = broker.rooms.clone();
        if let Ok(epoch) = epoch_of(&mut rooms).await {
            *broker.epoch.lock().unwrap_or_else(|e| e.into_inner()) = epoch;
        }
        broker.lag.send_modify(|n| *n += 1);
    }
}

#[async_trait]
impl Broker for NatsBroker {
    fn engine(&self) -> &'static str {
        "nats"
    }

    fn render_metrics(&self, out: &mut switchyard_telemetry::Exposition) {
        let connected = matches!(self.client.connection_state(), State::Connected);
        out.gauge(
            "switchyard_nats_connected",
            "1 while the process is connected to NATS.",
            &[],
            if connected { 1.0 } else { 0.0 },
        );
        // The connection callback may not have run yet for the first connection.
        let connects = self.events.connects.load(Ordering::Relaxed).max(1);
        out.counter(
            "switchyard_nats_reconnects_total",
            "Connections to NATS after the first one.",
            &[],
            connects - 1,
        );
        out.counter(
            "switchyard_nats_disconnects_total",
            "Losses of the NATS connection.",
            &[],
            self.events.disconnects.load(Ordering::Relaxed),
        );
        out.counter(
            "switchyard_nats_leader_elections_total",
            "Leader elections of the room stream seen (every room is checked for gaps).",
            &[],
            self.events.leader_elections.load(Ordering::Relaxed),
        );
        out.counter(
            "switchyard_nats_dropped_not_json_total",
            "Payloads from NATS dropped because they were not JSON.",
            &[],
            NatsBroker::dropped_not_json(),
        );
    }

    async fn publish(&self, mut msg: Publish) -> Result<Stored, BrokerError> {
        // The JetStream store is a span of the message's trace; its context rides in the
        // stored message's headers (RePublish keeps them) to every worker's `fanout`.
        let span = crate::store_span("nats", &msg);
        if let Some(tp) = trace::traceparent(&span) {
            msg.traceparent = Some(tp);
        }
        let stored = self.store(msg).instrument(span.clone()).await;
        crate::record_stored(&span, &stored);
        stored
    }

    async fn publish_ephemeral(&self, msg: Publish) -> Result<(), BrokerError> {
        self.connected()?;
        let headers = Self::headers(&msg);
        self.client
            .publish_with_headers(subjects::live(&msg.room), headers, msg.data)
            .await
            .map_err(|e| unavailable("publish", e))
    }

    async fn history(
        &self,
        room: &RoomName,
        since: u64,
        limit: usize,
    ) -> Result<History, BrokerError> {
        let head = history::head(&self.rooms, room).await?;
        let recovered = history::recovered(&self.rooms, room, since, head).await?;
        let (messages, more, scanned) = if limit == 0 || since >= head {
            (Vec::new(), false, since)
        } else {
            history::page(&self.rooms, room, since, limit, self.config.request_timeout).await?
        };
        Ok(History {
            head,
            epoch: self.epoch(),
            recovered,
            messages,
            more,
            scanned,
        })
    }

    async fn live(&self, room: &RoomName) -> Result<LiveFeed, BrokerError> {
        live::feed(&self.client, room, &self.lag).await
    }

    async fn join(
        &self,
        room: &RoomName,
        user: &UserId,
        conn: &Arc<str>,
    ) -> Result<(), BrokerError> {
        self.presence.join(room, user, conn).await
    }

    async fn leave(&self, room: &RoomName, user: &UserId, conn: &str) -> Result<(), BrokerError> {
        self.presence.leave(room, user, conn).await
    }

    async fn presence(&self, room: &RoomName) -> Result<Vec<Member>, BrokerError> {
        self.presence.members(room).await
    }

    async fn control(&self, event: Control) -> Result<(), BrokerError> {
        control::send(&self.client, &self.buckets.revoked, &event).await
    }

    async fn control_feed(&self) -> Result<ControlFeed, BrokerError> {
        control::feed(&self.client).await
    }

    async fn revoked_before(&self, user: &UserId) -> Result<Option<u64>, BrokerError> {
        control::revoked_before(&self.buckets.revoked, user).await
    }

    async fn announce(&self, info: WorkerInfo) -> Result<(), BrokerError> {
        registry::announce(&self.buckets.registry, &info).await
    }

    async fn withdraw(&self, id: &str) -> Result<(), BrokerError> {
        registry::withdraw(&self.buckets.registry, id).await
    }

    async fn registry(&self) -> Result<RegistryFeed, BrokerError> {
        registry::feed(&self.buckets.registry, self.config.registry_ttl).await
    }
}
