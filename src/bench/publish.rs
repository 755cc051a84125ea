//! Publishers: WebSocket `pub`s on an open-loop schedule. Message `k` is due at
//! `start + k / rate` whatever happened to earlier ones, and carries that scheduled time
//! (`s`) and its real send time (`t`), ns since the run's epoch, so that a stalled
//! publisher shows up as latency from the schedule. The server limits each connection's
//! publish rate, so the rate is spread over several connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchyard_client::{ConnectOptions, Connection, RawIncoming, TokenVia};
use switchyard_protocol::ServerFrame;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::agent::now_ns;
use crate::token::{mint_hs256, TokenRequest};

/// How long a publisher waits for its last acks after it stops sending.
const ACK_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct PubCounters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub errors: AtomicU64,
}

/// What the publishers were asked to do.
pub struct PubPlan {
    pub url: String,
    pub ca_pem: Option<String>,
    pub secret: String,
    /// Rooms the messages go to, round robin.
    pub rooms: Vec<String>,
    /// Pattern the publishers' tokens may publish to.
    pub pattern: String,
    /// Messages per second, all publishers together.
    pub rate: f64,
    /// Most messages per second one connection sends (the server's `publish_rate`).
    pub per_connection: f64,
    pub epoch_ns: u64,
}

pub struct Publishers {
    conns: Vec<Connection>,
    plan: Arc<PubPlan>,
    pub counters: Arc<PubCounters>,
}

/// Acked messages per room.
pub type Acked = HashMap<String, u64>;

impl Publishers {
    pub async fn connect(plan: PubPlan) -> anyhow::Result<Publishers> {
        let count = (plan.rate / plan.per_connection.max(1.0)).ceil().max(1.0) as usize;
        let mut conns = Vec::with_capacity(count);
        for j in 0..count {
            let token = mint_hs256(
                plan.secret.as_bytes(),
                &TokenRequest {
                    user: format!("benchpub{j}"),
                    sub: Vec::new(),
                    publish: vec![plan.pattern.clone()],
                    ttl: Duration::from_secs(24 * 3600),
                },
            )?;
            let mut options = ConnectOptions::new(plan.url.clone()).token(token, TokenVia::Header);
            if let Some(pem) = &plan.ca_pem {
                options = options.ca_pem(pem.as_bytes().to_vec());
            }
            let conn = Connection::connect(&options)
                .await
                .with_context(|| format!("publisher {j} cannot connect to {}", plan.url))?;
            conns.push(conn);
        }
        Ok(Publishers {
            conns,
            plan: Arc::new(plan),
            counters: Arc::default(),
        })
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Starts publishing at `start_ns` (since the epoch) until `stop` is cancelled.
    pub fn start(self, start_ns: u64, stop: CancellationToken) -> JoinSet<Acked> {
        let mut set = JoinSet::new();
        let count = self.conns.len() as u64;
        for (j, conn) in self.conns.into_iter().enumerate() {
            set.spawn(publish(
                conn,
                j as u64,
                count,
                start_ns,
                self.plan.clone(),
                self.counters.clone(),
                stop.clone(),
            ));
        }
        set
    }
}

/// Publisher `j` of `count` sends messages `j, j + count, j + 2 count, ...`.
async fn publish(
    mut conn: Connection,
    j: u64,
    count: u64,
    start_ns: u64,
    plan: Arc<PubPlan>,
    counters: Arc<PubCounters>,
    stop: CancellationToken,
) -> Acked {
    let mut acked = Acked::new();
    let base = Instant::now();
    let base_ns = now_ns(plan.epoch_ns);
    let period_ns = 1e9 / plan.rate.max(0.001);
    let due_ns = |k: u64| start_ns + (k as f64 * period_ns) as u64;
    let at = |ns: u64| base + Duration::from_nanos(ns.saturating_sub(base_ns));
    let mut k = j;
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut sending = true;
    let mut grace_end = None;
    loop {
        if !sending && answered >= sent {
            break;
        }
        let wake = if sending {
            at(due_ns(k))
        } else {
            *grace_end.get_or_insert_with(|| Instant::now() + ACK_GRACE)
        };
        tokio::select! {
            _ = stop.cancelled(), if sending => sending = false,
            _ = sleep_until(wake) => {
                if !sending {
                    break;
                }
                let s = due_ns(k);
                let t = now_ns(plan.epoch_ns);
                let room = &plan.rooms[(k % plan.rooms.len() as u64) as usize];
                let line = format!(
                    r#"{{"op":"pub","room":"{room}","data":{{"s":{s},"t":{t},"k":{k}}},"ref":"{k}"}}"#
                );
                if conn.send_text(line.as_bytes()).await.is_err() {
                    break;
                }
                sent += 1;
                counters.sent.fetch_add(1, Ordering::Relaxed);
                k += count;
            }
            piece = conn.recv_raw() => match piece {
                Ok(RawIncoming::Piece(piece)) => match ServerFrame::parse(&piece) {
                    Ok(ServerFrame::Ack { reference, .. }) => {
                        answered += 1;
                        counters.acked.fetch_add(1, Ordering::Relaxed);
                        if let Some(n) = reference.and_then(|r| r.parse::<u64>().ok()) {
                            let room = &plan.rooms[(n % plan.rooms.len() as u64) as usize];
                            *acked.entry(room.clone()).or_default() += 1;
                        }
                    }
                    Ok(ServerFrame::Error { .. }) => {
                        answered += 1;
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                },
                Ok(RawIncoming::Closed { .. }) | Err(_) => break,
            },
        }
    }
    let _ = conn.close(1000).await;
    acked
}
