//! `churn --rate C --duration T`: C connects per second, each subscribing and closing
//! again, sustained; failures counted by kind.

use std::collections::HashMap;
use std::time::Duration;

use super::CONNECT_LIMIT;
use crate::bench::agent::{Event, JobKind, RoomPlan};
use crate::bench::cli::ChurnArgs;
use crate::bench::fleet::Fleet;
use crate::bench::stats::{fmt_ms, Histogram};
use crate::bench::{Outcome, Setup};

/// Rate one agent churns at most.
const RATE_PER_AGENT: f64 = 500.0;

pub(super) async fn run(args: &ChurnArgs, setup: &mut Setup) -> anyhow::Result<Outcome> {
    let agents = setup
        .common
        .agents
        .unwrap_or((args.rate / RATE_PER_AGENT).ceil() as usize)
        .max(1);
    let plan = RoomPlan::Spread {
        prefix: setup.prefix.clone(),
        rooms: 100,
    };
    // Attempts get disjoint numbers (and so source addresses) per agent.
    let span = (args.rate * args.duration.as_secs_f64()).ceil() as u64 + 1;
    let mut jobs = setup.jobs(JobKind::Churn, span * agents as u64, plan);
    jobs.truncate(agents);
    for (i, job) in jobs.iter_mut().enumerate() {
        job.first = i as u64 * span;
        job.count = 0;
        job.churn_rate = args.rate / agents as f64;
        job.duration_ms = args.duration.as_millis() as u64;
    }
    let cpu0 = setup.cpu();
    let mut fleet = Fleet::spawn(jobs).await?;
    setup.progress.set_generator(&fleet.pids);
    setup.progress.phase = "churn";
    let churned = fleet
        .gather(
            |e| matches!(e, Event::Churned { .. }),
            args.duration + CONNECT_LIMIT.min(Duration::from_secs(120)),
            &mut setup.progress,
        )
        .await?;
    let cpu1 = setup.cpu();
    let (mut attempts, mut ok, mut failed, mut skipped) = (0, 0, 0, 0);
    let mut connect = Histogram::new();
    let mut errors: HashMap<String, u64> = HashMap::new();
    for event in churned {
        if let Event::Churned {
            attempts: a,
            ok: o,
            failed: f,
            skipped: s,
            connect: c,
            errors: e,
        } = event
        {
            attempts += a;
            ok += o;
            failed += f;
            skipped += s;
            connect.merge_sparse(&c);
            for (kind, n) in e {
                *errors.entry(kind).or_default() += n;
            }
        }
    }
    fleet.stop(&mut setup.progress).await?;
    let window = cpu1.at.duration_since(cpu0.at).as_secs_f64().max(1e-9);
    let server_cpu = cpu1.servers.saturating_sub(cpu0.servers).as_secs_f64();
    let bench_cpu = cpu1.generator.saturating_sub(cpu0.generator).as_secs_f64();
    let achieved = ok as f64 / args.duration.as_secs_f64();
    let lines = vec![
        format!(
            "churn       {} connects/s asked for {:.1}s: {attempts} attempts, {ok} ok ({achieved:.0}/s), {failed} failed, {skipped} skipped (too many in flight)",
            args.rate,
            args.duration.as_secs_f64()
        ),
        format!(
            "connect     to subscribed: p50 {} p90 {} p99 {} max {}",
            fmt_ms(connect.quantile(0.5)),
            fmt_ms(connect.quantile(0.9)),
            fmt_ms(connect.quantile(0.99)),
            fmt_ms(connect.max())
        ),
        format!("errors      {errors:?}"),
        format!(
            "server cpu  {:.0}% ({:.0} µs per connect); bench cpu {:.0}% ({:.0} µs per connect)",
            server_cpu / window * 100.0,
            server_cpu * 1e6 / ok.max(1) as f64,
            bench_cpu / window * 100.0,
            bench_cpu * 1e6 / ok.max(1) as f64
        ),
    ];
    Ok(Outcome {
        json: serde_json::json!({
            "rate": args.rate,
            "duration_seconds": args.duration.as_secs_f64(),
            "attempts": attempts,
            "ok": ok,
            "ok_per_sec": achieved.round(),
            "failed": failed,
            "skipped": skipped,
            "errors": errors,
            "connect_ms": connect.summary_ms(),
            "server_cpu_percent": (server_cpu / window * 1000.0).round() / 10.0,
            "server_cpu_us_per_connect": (server_cpu * 1e6 / ok.max(1) as f64).round(),
            "bench_cpu_percent": (bench_cpu / window * 1000.0).round() / 10.0,
        }),
        lines,
        charts: None,
    })
}
