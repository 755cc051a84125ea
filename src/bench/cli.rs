//! The flags of `switchyard bench <scenario>`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::dev::DEFAULT_STATE_DIR;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// Open N authenticated connections, K per room; report memory per connection.
    Idle(IdleArgs),
    /// S subscribers in one room, one open-loop publisher: latency, loss, CPU.
    Broadcast(BroadcastArgs),
    /// N connections over M small rooms, publishes spread over them.
    Rooms(RoomsArgs),
    /// N connections drop at once and reconnect with `since`: time to catch up.
    Storm(StormArgs),
    /// Connects and disconnects per second, sustained: failures and connect times.
    Churn(ChurnArgs),
}

impl Scenario {
    pub fn common(&self) -> &Common {
        match self {
            Scenario::Idle(a) => &a.common,
            Scenario::Broadcast(a) => &a.common,
            Scenario::Rooms(a) => &a.common,
            Scenario::Storm(a) => &a.common,
            Scenario::Churn(a) => &a.common,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Idle(_) => "idle",
            Scenario::Broadcast(_) => "broadcast",
            Scenario::Rooms(_) => "rooms",
            Scenario::Storm(_) => "storm",
            Scenario::Churn(_) => "churn",
        }
    }
}

/// Flags every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The server: a loopback ws:// or wss:// URL.
    #[arg(
        long,
        default_value = "wss://localhost:8443/ws",
        env = "SWITCHYARD_URL"
    )]
    pub url: String,
    /// Dev state dir: its ca.pem is trusted, its jwt.secret signs the tokens.
    #[arg(long, default_value = DEFAULT_STATE_DIR, env = "SWITCHYARD_STATE_DIR")]
    pub state_dir: PathBuf,
    /// CA certificate (PEM) to trust instead of the state dir's.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// File whose first line is the HS256 secret, instead of the state dir's.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Server processes to measure (repeat); default: every other process named
    /// `switchyard` that is not a bench.
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// Print one JSON line of results on stdout at the end.
    #[arg(long)]
    pub json: bool,
    /// Also write charts (SVG) and an HTML page of the run into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Agent processes holding the connections [default: one per 15,000, at least 2
    /// from 1,000 connections].
    #[arg(long)]
    pub agents: Option<usize>,
    /// Connections each agent sets up at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Connections per loopback source address (127.1.x.y); 0 uses the default route.
    #[arg(long, default_value_t = 50)]
    pub per_source: u64,
    /// Most publishes per second one publisher connection sends (keep it under the
    /// server's `publish_rate`, 100 by default).
    #[arg(long, default_value_t = 80.0)]
    pub per_publisher: f64,
    /// No live progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1000)]
    pub conns: u64,
    /// Connections per room.
    #[arg(long, default_value_t = 100)]
    pub per_room: u64,
    /// Time to settle before memory is read.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub settle: Duration,
}

#[derive(Args, Debug)]
pub struct BroadcastArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1000)]
    pub subs: u64,
    /// Messages per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
}

#[derive(Args, Debug)]
pub struct RoomsArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1000)]
    pub conns: u64,
    #[arg(long, default_value_t = 100)]
    pub rooms: u64,
    /// Messages per second, over all rooms.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
}

#[derive(Args, Debug)]
pub struct StormArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1000)]
    pub conns: u64,
    /// Connections per room.
    #[arg(long, default_value_t = 100)]
    pub per_room: u64,
    /// Messages per second published over the rooms throughout.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long the clients stay away (messages pile up meanwhile).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub down: Duration,
}

#[derive(Args, Debug)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connects (each followed by a disconnect) per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
}

/// `500ms`, `2s`, `1.5s`, `3m`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 2s or 3m"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?}: unit must be ms, s, m or h")),
    };
    if !(secs > 0.0 && secs < 7.0 * 86_400.0) {
        return Err(format!("{text:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3m").unwrap(), Duration::from_secs(180));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("2y").is_err());
    }
}
