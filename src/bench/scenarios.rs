//! The scenarios, and the steps they share: bring the connections up, publish on a
//! schedule, wait for the deliveries to settle, sum what the agents counted.

mod broadcast;
mod churn;
mod idle;
mod rooms;
mod storm;

use std::collections::HashMap;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::agent::{Event, Job};
use super::cli::Scenario;
use super::fleet::Fleet;
use super::progress::{human, Progress};
use super::publish::{Acked, Publishers};
use super::stats::{fmt_ms, Histogram};
use super::{Charts, CpuMark, Outcome, Setup};

/// Longest the connect phase may take, all agents together.
const CONNECT_LIMIT: Duration = Duration::from_secs(900);
/// Longest the bench waits for the last deliveries after publishing stopped.
const SETTLE_LIMIT: Duration = Duration::from_secs(15);
/// Deliveries are settled when none arrived for this long.
const SETTLE_QUIET: Duration = Duration::from_millis(2500);

pub async fn run(scenario: &Scenario, setup: &mut Setup) -> anyhow::Result<Outcome> {
    match scenario {
        Scenario::Idle(args) => idle::run(args, setup).await,
        Scenario::Broadcast(args) => broadcast::run(args, setup).await,
        Scenario::Rooms(args) => rooms::run(args, setup).await,
        Scenario::Storm(args) => storm::run(args, setup).await,
        Scenario::Churn(args) => churn::run(args, setup).await,
    }
}

/// How the connections came up.
struct Connected {
    ok: u64,
    failed: u64,
    took: Duration,
    connect: Histogram,
    errors: HashMap<String, u64>,
}

impl Connected {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.ok,
            "failed": self.failed,
            "errors": self.errors,
            "seconds": round3(self.took.as_secs_f64()),
            "per_sec": (self.ok as f64 / self.took.as_secs_f64().max(1e-9)).round(),
            "time_ms": self.connect.summary_ms(),
        })
    }

    fn line(&self) -> String {
        let mut line = format!(
            "connected   {} in {:.1}s ({:.0}/s), connect time p50 {} p99 {} max {}",
            self.ok,
            self.took.as_secs_f64(),
            self.ok as f64 / self.took.as_secs_f64().max(1e-9),
            fmt_ms(self.connect.quantile(0.5)),
            fmt_ms(self.connect.quantile(0.99)),
            fmt_ms(self.connect.max()),
        );
        if self.failed > 0 {
            line.push_str(&format!(", {} FAILED {:?}", self.failed, self.errors));
        }
        line
    }
}

/// Starts the agents and waits for their connections.
async fn bring_up(jobs: Vec<Job>, setup: &mut Setup) -> anyhow::Result<(Fleet, Connected)> {
    let started = Instant::now();
    let mut fleet = Fleet::spawn(jobs).await?;
    setup.progress.set_generator(&fleet.pids);
    setup.progress.phase = "connect";
    let ready = fleet
        .gather(
            |e| matches!(e, Event::Ready { .. }),
            CONNECT_LIMIT,
            &mut setup.progress,
        )
        .await?;
    let mut connected = Connected {
        ok: 0,
        failed: 0,
        took: started.elapsed(),
        connect: Histogram::new(),
        errors: HashMap::new(),
    };
    for event in ready {
        if let Event::Ready {
            connected: ok,
            failed,
            connect,
            errors,
        } = event
        {
            connected.ok += ok;
            connected.failed += failed;
            connected.connect.merge_sparse(&connect);
            for (kind, n) in errors {
                *connected.errors.entry(kind).or_default() += n;
            }
        }
    }
    Ok((fleet, connected))
}

/// A publishing window: publishers running from `start_ns` until stopped.
struct Publishing {
    set: JoinSet<Acked>,
    stop: CancellationToken,
    started: Instant,
    first_sec: u64,
    count: usize,
}

async fn start_publishing(
    setup: &mut Setup,
    rooms: Vec<String>,
    rate: f64,
) -> anyhow::Result<Publishing> {
    let publishers = Publishers::connect(setup.pub_plan(rooms, rate)).await?;
    setup.progress.publish = Some(publishers.counters.clone());
    setup.progress.phase = "publish";
    let count = publishers.connections();
    let lead = Duration::from_millis(100);
    let start_ns = setup.now_ns() + lead.as_nanos() as u64;
    let stop = CancellationToken::new();
    let set = publishers.start(start_ns, stop.clone());
    Ok(Publishing {
        set,
        stop,
        started: Instant::now() + lead,
        first_sec: start_ns / 1_000_000_000,
        count,
    })
}

/// A publishing scenario under way: its subscribers, how their connects went, the
/// publishers, and the CPU counters when publishing began.
struct Traffic {
    fleet: Fleet,
    connected: Connected,
    publishing: Publishing,
    cpu0: CpuMark,
}

/// Brings the subscribers up, then starts publishing into `rooms` at `rate`.
async fn start_traffic(
    jobs: Vec<Job>,
    setup: &mut Setup,
    rooms: Vec<String>,
    rate: f64,
) -> anyhow::Result<Traffic> {
    let (fleet, connected) = bring_up(jobs, setup).await?;
    let cpu0 = setup.cpu();
    let publishing = start_publishing(setup, rooms, rate).await?;
    Ok(Traffic {
        fleet,
        connected,
        publishing,
        cpu0,
    })
}

/// Stops the publishers and waits for their acks, folding events meanwhile.
async fn stop_publishing(mut traffic: Traffic, progress: &mut Progress) -> Stopped {
    let Traffic {
        fleet, publishing, ..
    } = &mut traffic;
    let took = publishing.started.elapsed();
    publishing.stop.cancel();
    progress.phase = "settle";
    let mut acked = Acked::new();
    while !publishing.set.is_empty() {
        fleet
            .pump_until(Instant::now() + Duration::from_millis(100), progress)
            .await;
        while let Some(result) = publishing.set.try_join_next() {
            if let Ok(rooms) = result {
                for (room, n) in rooms {
                    *acked.entry(room).or_default() += n;
                }
            }
        }
    }
    Stopped {
        traffic,
        acked,
        publish_for: took,
    }
}

/// Waits until `expected` deliveries were counted, or none came for a while.
async fn settle(fleet: &mut Fleet, progress: &mut Progress, expected: u64) {
    let limit = Instant::now() + SETTLE_LIMIT;
    let mut seen = fleet.agg.deliveries;
    let mut quiet_since = Instant::now();
    while fleet.agg.deliveries < expected && Instant::now() < limit {
        fleet
            .pump_until(Instant::now() + Duration::from_millis(200), progress)
            .await;
        if fleet.agg.deliveries != seen {
            seen = fleet.agg.deliveries;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > SETTLE_QUIET {
            break;
        }
    }
}

/// What the agents counted over the run.
struct Delivered {
    deliveries: u64,
    dups: u64,
    lat: Histogram,
    lat_sched: Histogram,
}

fn delivered(done: &[Event]) -> Delivered {
    let mut out = Delivered {
        deliveries: 0,
        dups: 0,
        lat: Histogram::new(),
        lat_sched: Histogram::new(),
    };
    for event in done {
        if let Event::Done {
            deliveries,
            dups,
            lat,
            lat_sched,
        } = event
        {
            out.deliveries += deliveries;
            out.dups += dups;
            out.lat.merge_sparse(lat);
            out.lat_sched.merge_sparse(lat_sched);
        }
    }
    out
}

/// A publishing run whose publishers have stopped, for [`finish_traffic`].
struct Stopped {
    traffic: Traffic,
    /// Messages acknowledged per room.
    acked: Acked,
    publish_for: Duration,
}

impl Stopped {
    /// Deliveries due, from `planned`: the acked messages of each room times the members
    /// it was planned with, `conns` in all. When connects failed, which rooms lost
    /// members is not known here: the expectation is scaled by the share that connected.
    fn expected(&self, planned: u64, conns: u64) -> u64 {
        let connected = &self.traffic.connected;
        if connected.failed == 0 {
            planned
        } else {
            planned * connected.ok / conns.max(1)
        }
    }

    /// The acked messages of `room`.
    fn acked(&self, room: &str) -> u64 {
        self.acked.get(room).copied().unwrap_or(0)
    }
}

/// The end of every publishing scenario: waits (bounded) for the deliveries due, stops
/// the agents, and reports the traffic under the scenario's `headline` line, the connect
/// line and its own `details` lines, with its own `fields` added to the JSON.
async fn finish_traffic(
    setup: &mut Setup,
    run: Stopped,
    expected: u64,
    headline: String,
    details: Vec<String>,
    fields: Vec<(&str, serde_json::Value)>,
    warnings: Vec<String>,
) -> anyhow::Result<Outcome> {
    let Stopped {
        traffic:
            Traffic {
                mut fleet,
                connected,
                publishing,
                cpu0,
            },
        acked,
        publish_for,
    } = run;
    settle(&mut fleet, &mut setup.progress, expected).await;
    let cpu1 = setup.cpu();
    let done = fleet.stop(&mut setup.progress).await?;
    let d = delivered(&done);
    let published = Published::new(
        setup,
        &publishing,
        &acked,
        publish_for,
        expected,
        (cpu0, cpu1),
    );
    let (mut json, figures, charts) = traffic(&fleet, &d, &published);
    for (key, value) in fields {
        json[key] = value;
    }
    json["connect"] = connected.json();
    json["warnings"] = warnings.clone().into();
    let mut lines = vec![headline, connected.line()];
    lines.extend(details);
    lines.extend(figures);
    lines.extend(warnings.into_iter().map(|w| format!("WARNING     {w}")));
    Ok(Outcome {
        json,
        lines,
        charts: Some(charts),
    })
}

/// The figures every publishing scenario reports: deliveries, loss, latency, CPU.
/// What the publishing side of a run did.
struct Published {
    sent: u64,
    acked: u64,
    errors: u64,
    /// Deliveries due: acked messages times the subscribers of their rooms.
    expected: u64,
    publish_for: Duration,
    /// The second (since the epoch) publishing started in.
    first_sec: u64,
    publishers: usize,
    cpu: (CpuMark, CpuMark),
}

impl Published {
    fn new(
        setup: &Setup,
        publishing: &Publishing,
        acked: &Acked,
        publish_for: Duration,
        expected: u64,
        cpu: (CpuMark, CpuMark),
    ) -> Published {
        let counters = setup.progress.publish.clone().unwrap_or_default();
        Published {
            sent: counters.sent.load(std::sync::atomic::Ordering::Relaxed),
            acked: acked.values().sum(),
            errors: counters.errors.load(std::sync::atomic::Ordering::Relaxed),
            expected,
            publish_for,
            first_sec: publishing.first_sec,
            publishers: publishing.count,
            cpu,
        }
    }
}

fn traffic(
    fleet: &Fleet,
    d: &Delivered,
    p: &Published,
) -> (serde_json::Value, Vec<String>, Charts) {
    let Published {
        sent,
        acked,
        errors,
        expected,
        publish_for,
        first_sec,
        publishers,
        cpu,
    } = *p;
    let window = cpu.1.at.duration_since(cpu.0.at).as_secs_f64().max(1e-9);
    let server_cpu = cpu.1.servers.saturating_sub(cpu.0.servers);
    let gen_cpu = cpu.1.generator.saturating_sub(cpu.0.generator);
    let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / d.deliveries.max(1) as f64;
    let lost = expected.saturating_sub(d.deliveries);
    let rate = d.deliveries as f64 / publish_for.as_secs_f64().max(1e-9);
    let per_sec: Vec<(u64, u64, u64)> = fleet
        .agg
        .per_sec
        .iter()
        .filter(|(sec, _)| **sec >= first_sec)
        .map(|(sec, (n, h))| (sec - first_sec, *n, h.quantile(0.99)))
        .collect();
    let peak = per_sec.iter().map(|s| s.1).max().unwrap_or(0);
    let json = serde_json::json!({
        "sent": sent,
        "acked": acked,
        "publish_errors": errors,
        "publishers": publishers,
        "publish_seconds": round3(publish_for.as_secs_f64()),
        "expected": expected,
        "deliveries": d.deliveries,
        "lost": lost,
        "duplicates": d.dups,
        "deliveries_per_sec": rate.round(),
        "deliveries_per_sec_peak": peak,
        "latency_ms": d.lat.summary_ms(),
        "latency_from_schedule_ms": d.lat_sched.summary_ms(),
        "server_cpu_percent": round1(server_cpu.as_secs_f64() / window * 100.0),
        "server_cpu_us_per_delivery": round3(per(server_cpu)),
        "bench_cpu_percent": round1(gen_cpu.as_secs_f64() / window * 100.0),
        "bench_cpu_us_per_delivery": round3(per(gen_cpu)),
        "cpu_window_seconds": round3(window),
        "per_sec": per_sec.iter().map(|(s, n, p)| serde_json::json!([s, n, round3(*p as f64 / 1e6)])).collect::<Vec<_>>(),
    });
    let l = &d.lat;
    let s = &d.lat_sched;
    let lines = vec![
        format!(
            "published   {sent} in {:.1}s by {publishers} connection(s), {acked} acked, {errors} errors",
            publish_for.as_secs_f64()
        ),
        format!(
            "delivered   {} of {expected} expected ({}/s, peak {}/s), lost {lost}, duplicates {}",
            d.deliveries,
            human(rate as u64),
            human(peak),
            d.dups
        ),
        format!(
            "latency     from send:     p50 {} p90 {} p99 {} p99.9 {} max {}",
            fmt_ms(l.quantile(0.5)),
            fmt_ms(l.quantile(0.9)),
            fmt_ms(l.quantile(0.99)),
            fmt_ms(l.quantile(0.999)),
            fmt_ms(l.max())
        ),
        format!(
            "            from schedule: p50 {} p90 {} p99 {} p99.9 {} max {}",
            fmt_ms(s.quantile(0.5)),
            fmt_ms(s.quantile(0.9)),
            fmt_ms(s.quantile(0.99)),
            fmt_ms(s.quantile(0.999)),
            fmt_ms(s.max())
        ),
        format!(
            "server cpu  {:.0}% ({:.2} µs per delivery) over {window:.1}s",
            server_cpu.as_secs_f64() / window * 100.0,
            per(server_cpu)
        ),
        format!(
            "bench cpu   {:.0}% ({:.2} µs per delivery): the generator's own cost",
            gen_cpu.as_secs_f64() / window * 100.0,
            per(gen_cpu)
        ),
    ];
    let charts = Charts {
        lat: d.lat.clone(),
        lat_sched: d.lat_sched.clone(),
        per_sec,
    };
    (json, lines, charts)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
