//! The broker: everything that is shared between workers and gateways.
//!
//! - [`Broker`] is the one interface; [`memory::MemoryBroker`] (one process, no
//!   dependencies) and the NATS JetStream engine implement it, and one conformance
//!   suite (`tests/conformance.rs`) holds both to it.
//! - Stored messages get a `seq` from one sequence shared by all rooms; each carries the
//!   `prev` seq of its room, so a reader of the live feed can see a gap and fill it from
//!   [`Broker::history`].
//! - The live feed ([`Broker::live`]) is per room: a worker takes one with its first
//!   local member of a room and drops it with the last.
//! - Presence and mesh-wide control (disconnect, revocation) ride beside it.

mod conns;
pub mod memory;
mod message;
pub mod nats;

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use switchyard_protocol::frame::Member;
use switchyard_protocol::{RoomName, UserId};

pub use message::{
    Control, History, LiveEvent, Message, Publish, RegistryEvent, Stored, WorkerInfo,
};

/// The `store` span of a message's trace (only while traces are exported): a child of
/// the publisher's context in `msg.traceparent`, or of the current span.
pub(crate) fn store_span(engine: &'static str, msg: &Publish) -> tracing::Span {
    let span = switchyard_telemetry::trace::span(|| {
        tracing::info_span!(
            "store",
            engine,
            room = %msg.room,
            seq = tracing::field::Empty,
            duplicate = tracing::field::Empty,
        )
    });
    switchyard_telemetry::trace::set_parent(&span, msg.traceparent.as_deref());
    span
}

pub(crate) fn record_stored(span: &tracing::Span, stored: &Result<Stored, BrokerError>) {
    match stored {
        Ok(stored) => {
            // OpenTelemetry takes integers as i64 (a u64 turns into a string).
            span.record("seq", stored.seq as i64);
            span.record("duplicate", stored.duplicate);
        }
        Err(err) => {
            span.record("duplicate", false);
            tracing::debug!(parent: span, error = %err, "not stored");
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot take the request now; nothing was stored. Retry later.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The request itself is unacceptable (for example, larger than the broker takes).
    #[error("rejected by the broker: {0}")]
    Rejected(String),
    #[error("broker internal error: {0}")]
    Internal(String),
}

/// A room's live feed: messages in seq order (with possible gaps), presence events, and
/// [`LiveEvent::Lagged`] when the feed itself dropped something.
pub type LiveFeed = BoxStream<'static, LiveEvent>;
/// Mesh-wide control events, as every worker sees them.
pub type ControlFeed = BoxStream<'static, Control>;
/// The registry: every known worker as [`RegistryEvent::Up`] first, then changes.
pub type RegistryFeed = BoxStream<'static, RegistryEvent>;

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// The engine's name, for logs and metrics.
    fn engine(&self) -> &'static str;

    /// Adds the engine's own metrics (connection state, reconnects) to a scrape.
    fn render_metrics(&self, _out: &mut switchyard_telemetry::Exposition) {}

    /// Stores a message and returns its seq once it is stored. With a `msg_id` seen within
    /// the dedupe window, stores nothing and returns the first seq (`duplicate: true`).
    async fn publish(&self, msg: Publish) -> Result<Stored, BrokerError>;

    /// Sends a message to the live feed only: no seq, no history.
    async fn publish_ephemeral(&self, msg: Publish) -> Result<(), BrokerError>;

    /// Retained messages of `room` with `seq > since`, oldest first, at most `limit`,
    /// with the room's latest seq, the store's epoch and whether nothing after `since`
    /// has been lost. `since` greater than the latest seq is not recovered.
    async fn history(
        &self,
        room: &RoomName,
        since: u64,
        limit: usize,
    ) -> Result<History, BrokerError>;

    /// The live feed of a room, from now on.
    async fn live(&self, room: &RoomName) -> Result<LiveFeed, BrokerError>;

    /// Marks one connection of `user` present in `room`; the user's first connection
    /// emits [`LiveEvent::Join`] on the room's feed. The id is kept by reference, not
    /// copied: presence holds one for every connection in every room.
    async fn join(
        &self,
        room: &RoomName,
        user: &UserId,
        conn: &Arc<str>,
    ) -> Result<(), BrokerError>;

    /// The inverse of [`Broker::join`]; the user's last connection emits
    /// [`LiveEvent::Leave`].
    async fn leave(&self, room: &RoomName, user: &UserId, conn: &str) -> Result<(), BrokerError>;

    /// Who is in a room, with their connection counts, sorted by user.
    async fn presence(&self, room: &RoomName) -> Result<Vec<Member>, BrokerError>;

    /// Sends a control event to every worker of the mesh (and records revocations).
    async fn control(&self, event: Control) -> Result<(), BrokerError>;

    /// Control events from now on.
    async fn control_feed(&self) -> Result<ControlFeed, BrokerError>;

    /// Tokens of `user` issued before this time (seconds since the epoch) are revoked.
    async fn revoked_before(&self, user: &UserId) -> Result<Option<u64>, BrokerError>;

    /// Announces a worker (or refreshes its entry: an entry not refreshed within the
    /// registry's TTL is gone).
    async fn announce(&self, info: WorkerInfo) -> Result<(), BrokerError>;

    /// Removes a worker's entry at once (a clean stop).
    async fn withdraw(&self, id: &str) -> Result<(), BrokerError>;

    /// The registry as it is, then its changes.
    async fn registry(&self) -> Result<RegistryFeed, BrokerError>;
}
