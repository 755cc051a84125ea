//! The gateway's metrics, owned here as atomics and rendered at scrape time by
//! [`GatewayMetrics::render`]: connections, TLS handshakes, upgrades by outcome, HTTP API
//! publishes, and the workers the router knows (the registry as this gateway sees it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use switchyard_protocol::ErrorCode;
use switchyard_telemetry::Exposition;

use crate::route::Router;

/// Upgrade outcomes: `ok` (the worker answered 101), `worker_refused` (another answer),
/// else the code of the refusal (PROTOCOL §1).
const OUTCOMES: [&str; 10] = [
    "ok",
    "worker_refused",
    "bad_request",
    "missing_token",
    "invalid_token",
    "token_expired",
    "rate_limited",
    "no_worker",
    "internal",
    "other",
];

/// How a TLS handshake on the public listener ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Handshake {
    Full,
    /// A session ticket was taken: no certificate signed.
    Resumed,
    /// Refused, timed out, or the peer went away.
    Failed,
}

impl Handshake {
    const KINDS: [&'static str; 3] = ["full", "resumed", "failed"];
}

#[derive(Default)]
pub(crate) struct GatewayMetrics {
    accepted: AtomicU64,
    /// Client connections being served: TLS, HTTP, upgrade, and for remote workers the
    /// splice. (A connection handed to an in-process worker leaves the gateway at its
    /// 101: the worker counts it from then on.)
    open: AtomicU64,
    upgrades: [AtomicU64; OUTCOMES.len()],
    tls_handshakes: [AtomicU64; Handshake::KINDS.len()],
    api_publishes: AtomicU64,
    api_publish_failures: AtomicU64,
}

/// Counts an open connection while it lives.
pub(crate) struct OpenGuard(Arc<GatewayMetrics>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl GatewayMetrics {
    /// A connection just accepted.
    pub(crate) fn accepted(self: &Arc<Self>) -> OpenGuard {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open()
    }

    /// A connection held open: a splice outlives the handshake task.
    pub(crate) fn open(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.clone())
    }

    pub(crate) fn upgrade(&self, outcome: Result<bool, ErrorCode>) {
        let name = match outcome {
            Ok(true) => "ok",
            Ok(false) => "worker_refused",
            Err(code) => code.as_str(),
        };
        let i = OUTCOMES
            .iter()
            .position(|o| *o == name)
            .unwrap_or(OUTCOMES.len() - 1);
        self.upgrades[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn tls_handshake(&self, kind: Handshake) {
        self.tls_handshakes[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn api_publish(&self, ok: bool) {
        let counter = if ok {
            &self.api_publishes
        } else {
            &self.api_publish_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn render(&self, out: &mut Exposition, router: &Router) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.counter(
            "switchyard_gateway_connections_accepted_total",
            "Client TCP connections accepted.",
            &[],
            load(&self.accepted),
        );
        out.gauge(
            "switchyard_gateway_connections",
            "Client connections the gateway serves now (handshakes, and splices to remote workers).",
            &[],
            load(&self.open) as f64,
        );
        for (outcome, n) in OUTCOMES.iter().zip(&self.upgrades) {
            out.counter(
                "switchyard_gateway_upgrades_total",
                "WebSocket upgrade requests on /ws, by outcome.",
                &[("outcome", outcome)],
                load(n),
            );
        }
        for (kind, n) in Handshake::KINDS.iter().zip(&self.tls_handshakes) {
            out.counter(
                "switchyard_gateway_tls_handshakes_total",
                "TLS handshakes on the public listener: full, resumed from a session ticket, failed.",
                &[("kind", kind)],
                load(n),
            );
        }
        out.counter(
            "switchyard_gateway_api_publishes_total",
            "Messages published through the HTTP API and stored (or sent, when ephemeral).",
            &[],
            load(&self.api_publishes),
        );
        out.counter(
            "switchyard_gateway_api_publish_failures_total",
            "HTTP API publishes refused or not stored.",
            &[],
            load(&self.api_publish_failures),
        );
        let census = router.census(Instant::now());
        out.gauge(
            "switchyard_gateway_workers",
            "Workers this gateway knows: in-process, configured and from the registry.",
            &[],
            census.known as f64,
        );
        out.gauge(
            "switchyard_gateway_routable_workers",
            "Workers this gateway can route to now (alive, not draining, below capacity).",
            &[],
            census.routable as f64,
        );
        out.gauge(
            "switchyard_gateway_worker_load_connections",
            "Connections the routable workers report, summed.",
            &[],
            census.conns as f64,
        );
        out.gauge(
            "switchyard_gateway_worker_capacity_connections",
            "Capacity the routable workers report, summed.",
            &[],
            census.capacity as f64,
        );
    }
}
