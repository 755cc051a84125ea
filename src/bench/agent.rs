//! `switchyard bench-agent`: a child process of the bench holding up to ~15,000 sockets
//! (the machine's open-file limit is per process). It reads one [`Job`] line on stdin,
//! then [`Command`] lines; it writes [`Event`] lines on stdout: a `tick` every second,
//! `ready` once its connections are up, `stormed` after a reconnect storm, `churned`
//! after a churn run, `done` when told to stop (or when stdin closes).

mod hold;
mod reader;

use serde::{Deserialize, Serialize};
use std::io::Write;
use tokio::io::AsyncBufReadExt;

use super::stats::Sparse;

pub(crate) use reader::now_ns;

/// What one agent does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub kind: JobKind,
    pub url: String,
    pub ca_pem: Option<String>,
    /// The HS256 secret: the agent mints each connection's token.
    pub secret: String,
    /// Global index of this agent's first connection, and how many it holds.
    pub first: u64,
    pub count: u64,
    pub rooms: RoomPlan,
    /// The run's start, ns since the Unix epoch: every timestamp is relative to it.
    pub epoch_ns: u64,
    /// Connections being set up at once.
    pub concurrency: usize,
    /// Connections per loopback source address (0: the URL's own route).
    pub per_source: u64,
    /// Churn only: connects per second, and for how long (ms).
    pub churn_rate: f64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Connect, subscribe, count what arrives; drop and reconnect on command.
    Hold,
    /// Connect, subscribe and close again at a fixed rate.
    Churn,
}

/// Which room connection `n` joins.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomPlan {
    /// `per_room` consecutive connections per room.
    Block { prefix: String, per_room: u64 },
    /// Connection `n` joins room `n % rooms`.
    Spread { prefix: String, rooms: u64 },
}

impl RoomPlan {
    pub fn room(&self, n: u64) -> String {
        match self {
            RoomPlan::Block { prefix, per_room } => format!("{prefix}{}", n / per_room.max(&1)),
            RoomPlan::Spread { prefix, rooms } => format!("{prefix}{}", n % rooms.max(&1)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Every connection drops its socket at once and reconnects at `reconnect_at_ns`
    /// (relative to the epoch), resubscribing with `since`.
    Drop { reconnect_at_ns: u64 },
    /// Close every connection and report.
    Stop,
}

/// Error kinds and how often each happened.
pub type Errors = Vec<(String, u64)>;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// One second: `sec` since the epoch; deliveries and latencies of that second only.
    Tick {
        sec: u64,
        connected: u64,
        failed: u64,
        deliveries: u64,
        dups: u64,
        lat: Sparse,
    },
    Ready {
        connected: u64,
        failed: u64,
        connect: Sparse,
        errors: Errors,
    },
    Stormed {
        reconnected: u64,
        failed: u64,
        retries: u64,
        replayed: u64,
        caught_up: u64,
        /// From the storm's reconnect moment, and from each client's own attempt.
        from_storm: Sparse,
        from_attempt: Sparse,
        errors: Errors,
    },
    Churned {
        attempts: u64,
        ok: u64,
        failed: u64,
        skipped: u64,
        connect: Sparse,
        errors: Errors,
    },
    Done {
        deliveries: u64,
        dups: u64,
        lat: Sparse,
        lat_sched: Sparse,
    },
}

/// Writes one event line to stdout; a closed pipe means the bench is gone.
pub(crate) fn emit(event: &Event) {
    // Events are plain data: serializing cannot fail.
    let line = serde_json::to_string(event).expect("events serialize");
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// The agent's main: read the job, run it, exit.
pub async fn run() -> anyhow::Result<()> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let job: Job = match lines.next_line().await? {
        Some(line) => serde_json::from_str(&line)?,
        None => anyhow::bail!("bench-agent: no job on stdin (it is started by `switchyard bench`)"),
    };
    match job.kind {
        JobKind::Hold => hold::hold(job, lines).await,
        JobKind::Churn => hold::churn(job, lines).await,
    }
}
