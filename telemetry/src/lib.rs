//! Telemetry primitives shared by the gateway, the workers and the broker.
//!
//! - [`exposition`] writes metric families in the Prometheus text format (0.0.4) or in
//!   OpenMetrics 1.0 (which carries exemplars); each crate's `metrics` module owns its
//!   counters as plain atomics and renders them through an [`Exposition`] at scrape time.
//! - [`histogram`] is a fixed-bucket histogram over atomics: an observation is three
//!   relaxed `fetch_add`s and no lock, with a per-bucket exemplar (trace id, value).
//!
//! - [`trace`] carries W3C trace context between hops and keeps message-path spans off
//!   (one relaxed load) unless traces are exported.
//!
//! Nothing here allocates on the hot path: allocation happens only when a scrape renders.

pub mod exposition;
pub mod histogram;
pub mod trace;

pub use exposition::{Exposition, Kind};
pub use histogram::{Histogram, TraceId};
