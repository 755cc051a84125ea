//! `idle --conns N --per-room K`: N authenticated connections subscribed K per room;
//! after settling, the resident memory each server process gained per connection.

use tokio::time::Instant;

use super::bring_up;
use crate::bench::agent::{JobKind, RoomPlan};
use crate::bench::cli::IdleArgs;
use crate::bench::{procfs, Outcome, Setup};

pub(super) async fn run(args: &IdleArgs, setup: &mut Setup) -> anyhow::Result<Outcome> {
    let warnings = setup.file_warnings(args.conns);
    let before: Vec<(u32, Option<u64>)> = setup
        .servers
        .iter()
        .map(|p| (*p, procfs::rss_bytes(*p)))
        .collect();
    let plan = RoomPlan::Block {
        prefix: setup.prefix.clone(),
        per_room: args.per_room,
    };
    let (mut fleet, connected) =
        bring_up(setup.jobs(JobKind::Hold, args.conns, plan), setup).await?;
    setup.progress.phase = "settle";
    fleet
        .pump_until(Instant::now() + args.settle, &mut setup.progress)
        .await;
    let mut servers = Vec::new();
    let mut lines = vec![
        format!(
            "idle        {} connections, {} per room, settled {:.1}s",
            args.conns,
            args.per_room,
            args.settle.as_secs_f64()
        ),
        connected.line(),
    ];
    for (pid, rss0) in before {
        let rss1 = procfs::rss_bytes(pid);
        let files = procfs::files(pid);
        let per_conn = match (rss0, rss1) {
            (Some(a), Some(b)) if connected.ok > 0 => Some(b.saturating_sub(a) / connected.ok),
            _ => None,
        };
        lines.push(format!(
            "server      {}: rss {} → {} MiB, {} per connection, open files {}",
            procfs::describe(pid),
            rss0.map(|b| format!("{:.1}", b as f64 / 1048576.0))
                .unwrap_or("?".into()),
            rss1.map(|b| format!("{:.1}", b as f64 / 1048576.0))
                .unwrap_or("?".into()),
            per_conn
                .map(|b| format!("{:.1} KiB", b as f64 / 1024.0))
                .unwrap_or("?".into()),
            files
                .map(|(o, l)| format!("{o} of {l}"))
                .unwrap_or("?".into()),
        ));
        servers.push(serde_json::json!({
            "pid": pid,
            "process": procfs::describe(pid),
            "rss_before_bytes": rss0,
            "rss_after_bytes": rss1,
            "rss_per_conn_bytes": per_conn,
            "open_files": files.map(|f| f.0),
            "open_files_limit": files.map(|f| f.1),
        }));
    }
    let bench_rss: u64 = setup
        .progress
        .generator
        .iter()
        .filter_map(|p| procfs::rss_bytes(*p))
        .sum();
    lines.push(format!(
        "bench       rss {:.1} MiB in {} process(es) ({:.1} KiB per connection)",
        bench_rss as f64 / 1048576.0,
        setup.progress.generator.len(),
        bench_rss as f64 / 1024.0 / connected.ok.max(1) as f64
    ));
    lines.extend(warnings.iter().map(|w| format!("WARNING     {w}")));
    fleet.stop(&mut setup.progress).await?;
    Ok(Outcome {
        json: serde_json::json!({
            "conns": args.conns,
            "per_room": args.per_room,
            "connect": connected.json(),
            "memory": servers,
            "bench_rss_bytes": bench_rss,
            "warnings": warnings,
        }),
        lines,
        charts: None,
    })
}
