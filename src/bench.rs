//! `switchyard bench`: a load generator for a running Switchyard (dev mode, or gateways
//! and workers on NATS), over real `wss://` connections on this machine.
//!
//! - [`cli`]: the scenarios and their flags.
//! - [`scenarios`]: `idle`, `broadcast`, `rooms`, `storm`, `churn`; each returns an
//!   [`Outcome`] (a JSON object, human lines, charts).
//! - [`fleet`] spawns [`agent`] processes (`switchyard bench-agent`, each holding up to
//!   ~15,000 sockets: the open-file limit is per process) and folds their per-second
//!   event lines; [`conn`] is their lean client (one task per socket, loopback source
//!   addresses spread so that no address runs out of ports).
//! - [`publish`]: open-loop publishers over WebSocket `pub`, stamping each message with
//!   its scheduled and real send time; subscribers read seq and stamps without a JSON
//!   parse, on a clock every process of the run shares (CLOCK_REALTIME from one epoch).
//! - [`stats`]: log-linear histograms; [`procfs`]: memory and CPU of server and bench
//!   processes; [`progress`]: the live line; [`report`]: SVG charts and an HTML page.

pub mod agent;
pub mod cli;
pub mod conn;
pub mod fleet;
pub mod procfs;
pub mod progress;
pub mod publish;
pub mod report;
pub mod scenarios;
pub mod stats;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::time::Instant;

use self::agent::{Job, JobKind, RoomPlan};
use self::cli::{Common, Scenario};
use self::progress::Progress;
use self::publish::PubPlan;
use self::stats::Histogram;
use crate::dev_state::{self, CA_FILE, JWT_SECRET_FILE};

/// Sockets one agent holds at most by default (the per-process open-file limit is
/// 20,000 here; the rest is head room).
pub const CONNS_PER_AGENT: u64 = 15_000;

/// What a scenario measured.
pub struct Outcome {
    pub json: serde_json::Value,
    pub lines: Vec<String>,
    pub charts: Option<Charts>,
}

/// What the report draws.
#[derive(Default)]
pub struct Charts {
    pub lat: Histogram,
    pub lat_sched: Histogram,
    /// (second since the publishing started, deliveries, p99 ns).
    pub per_sec: Vec<(u64, u64, u64)>,
}

/// The run's credentials, servers, clock and names.
pub struct Setup {
    pub common: Common,
    pub ca_pem: Option<String>,
    pub secret: String,
    pub servers: Vec<u32>,
    /// The run's start, ns since the Unix epoch.
    pub epoch_ns: u64,
    /// Every room of the run starts with this, so runs never see each other's messages.
    pub prefix: String,
    pub progress: Progress,
}

/// CPU used so far by the servers and by the bench, and when.
#[derive(Clone, Copy)]
pub struct CpuMark {
    pub servers: Duration,
    pub generator: Duration,
    pub at: Instant,
}

impl Setup {
    pub fn new(common: Common) -> anyhow::Result<Setup> {
        let ca_path = common
            .ca
            .clone()
            .unwrap_or_else(|| common.state_dir.join(CA_FILE));
        let ca_pem = if common.url.starts_with("wss://") {
            Some(std::fs::read_to_string(&ca_path).with_context(|| {
                format!(
                    "cannot read the CA {} (give --state-dir of the running server, or --ca)",
                    ca_path.display()
                )
            })?)
        } else {
            None
        };
        let secret_path = common
            .secret_file
            .clone()
            .unwrap_or_else(|| common.state_dir.join(JWT_SECRET_FILE));
        let secret = dev_state::read_line(&secret_path)
            .context("the bench signs its tokens with the server's HS256 secret (--state-dir or --secret-file)")?;
        let servers = if common.pids.is_empty() {
            procfs::find_servers()
        } else {
            common.pids.clone()
        };
        let epoch_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let prefix = format!("bench.r{}.", (epoch_ns / 1_000_000) % 100_000_000);
        let progress = Progress::new(servers.clone(), common.quiet);
        Ok(Setup {
            common,
            ca_pem,
            secret,
            servers,
            epoch_ns,
            prefix,
            progress,
        })
    }

    pub fn now_ns(&self) -> u64 {
        agent::now_ns(self.epoch_ns)
    }

    /// `count` connections split over the agents.
    pub fn jobs(&self, kind: JobKind, count: u64, rooms: RoomPlan) -> Vec<Job> {
        let agents = self
            .common
            .agents
            .unwrap_or_else(|| {
                let needed = count.div_ceil(CONNS_PER_AGENT) as usize;
                needed.max(if count >= 1000 { 2 } else { 1 })
            })
            .max(1);
        let per = count.div_ceil(agents as u64);
        (0..agents as u64)
            .map(|i| Job {
                kind,
                url: self.common.url.clone(),
                ca_pem: self.ca_pem.clone(),
                secret: self.secret.clone(),
                first: i * per,
                count: per.min(count.saturating_sub(i * per)),
                rooms: rooms.clone(),
                epoch_ns: self.epoch_ns,
                concurrency: self.common.concurrency,
                per_source: self.common.per_source,
                churn_rate: 0.0,
                duration_ms: 0,
            })
            .filter(|j| j.count > 0 || kind == JobKind::Churn)
            .collect()
    }

    pub fn pub_plan(&self, rooms: Vec<String>, rate: f64) -> PubPlan {
        PubPlan {
            url: self.common.url.clone(),
            ca_pem: self.ca_pem.clone(),
            secret: self.secret.clone(),
            rooms,
            pattern: format!("{}>", self.prefix),
            rate,
            per_connection: self.common.per_publisher,
            epoch_ns: self.epoch_ns,
        }
    }

    pub fn cpu(&self) -> CpuMark {
        CpuMark {
            servers: procfs::cpu_sum(&self.servers),
            generator: procfs::cpu_sum(&self.progress.generator),
            at: Instant::now(),
        }
    }

    /// Warnings for server processes that `more` connections would push past their
    /// open-file limit.
    pub fn file_warnings(&self, more: u64) -> Vec<String> {
        self.servers
            .iter()
            .filter_map(|pid| {
                let (open, limit) = procfs::files(*pid)?;
                (open + more + 64 > limit).then(|| {
                    format!(
                        "server {} holds {open} open files of its limit {limit}: {more} more connections would hit it",
                        procfs::describe(*pid)
                    )
                })
            })
            .collect()
    }

    pub fn servers_json(&self) -> serde_json::Value {
        self.servers
            .iter()
            .map(|p| serde_json::Value::String(procfs::describe(*p)))
            .collect()
    }
}

/// Runs one scenario and prints its results.
pub async fn run(scenario: Scenario) -> anyhow::Result<std::process::ExitCode> {
    let common = scenario.common().clone();
    let mut setup = Setup::new(common.clone())?;
    if setup.servers.is_empty() && !common.quiet {
        eprintln!(
            "bench: no server process found (give --pid): server CPU and memory are not measured"
        );
    }
    for warning in setup.file_warnings(0) {
        eprintln!("bench: warning: {warning}");
    }
    let outcome = scenarios::run(&scenario, &mut setup).await?;
    setup.progress.finish();
    let mut json = outcome.json;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("scenario".into(), scenario.name().into());
        obj.insert("url".into(), common.url.clone().into());
        obj.insert("servers".into(), setup.servers_json());
    }
    if let Some(dir) = &common.report {
        report::write(
            Path::new(dir),
            scenario.name(),
            &json,
            outcome.charts.as_ref(),
        )?;
        eprintln!(
            "bench: report written to {}",
            dir.join("index.html").display()
        );
    }
    if common.json {
        for line in &outcome.lines {
            eprintln!("{line}");
        }
        println!("{}", serde_json::to_string(&json)?);
    } else {
        for line in &outcome.lines {
            println!("{line}");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
