//! `storm --conns N`: N subscribers (K per room) while messages flow; all drop their
//! sockets at once, stay away `--down`, and reconnect together with `since`. Reports
//! the time from reconnect to caught up (the room's seq at the new subscription point
//! reached) and how many messages were replayed, then checks nothing was lost.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::{finish_traffic, start_traffic, stop_publishing};
use crate::bench::agent::{Command, Event, JobKind, RoomPlan};
use crate::bench::cli::StormArgs;
use crate::bench::stats::{fmt_ms, Histogram};
use crate::bench::{Outcome, Setup};

/// Publishing before the storm, and after everyone caught up.
const BEFORE: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(2);
/// Longest the storm's reconnects may take.
const STORM_LIMIT: Duration = Duration::from_secs(180);

pub(super) async fn run(args: &StormArgs, setup: &mut Setup) -> anyhow::Result<Outcome> {
    let warnings = setup.file_warnings(args.conns);
    let per_room = args.per_room.max(1);
    let plan = RoomPlan::Block {
        prefix: setup.prefix.clone(),
        per_room,
    };
    let room_count = args.conns.div_ceil(per_room);
    let rooms: Vec<String> = (0..room_count).map(|r| plan.room(r * per_room)).collect();
    let jobs = setup.jobs(JobKind::Hold, args.conns, plan);
    let mut traffic = start_traffic(jobs, setup, rooms.clone(), args.rate).await?;
    let fleet = &mut traffic.fleet;
    fleet
        .pump_until(traffic.publishing.started + BEFORE, &mut setup.progress)
        .await;
    setup.progress.phase = "storm";
    let storm_at = Instant::now();
    let reconnect_at_ns = setup.now_ns() + args.down.as_nanos() as u64;
    fleet.send_all(&Command::Drop { reconnect_at_ns }).await?;
    let stormed = fleet
        .gather(
            |e| matches!(e, Event::Stormed { .. }),
            STORM_LIMIT + args.down,
            &mut setup.progress,
        )
        .await?;
    let storm_took = storm_at.elapsed();
    setup.progress.phase = "publish";
    fleet
        .pump_until(Instant::now() + AFTER, &mut setup.progress)
        .await;
    let run = stop_publishing(traffic, &mut setup.progress).await;
    let members = |r: u64| per_room.min(args.conns - r * per_room);
    let planned = (0..room_count)
        .map(|r| run.acked(&rooms[r as usize]) * members(r))
        .sum();
    let expected = run.expected(planned, args.conns);
    let (mut reconnected, mut failed, mut retries, mut replayed, mut caught_up) = (0, 0, 0, 0, 0);
    let mut from_storm = Histogram::new();
    let mut from_attempt = Histogram::new();
    let mut errors: HashMap<String, u64> = HashMap::new();
    for event in stormed {
        if let Event::Stormed {
            reconnected: a,
            failed: b,
            retries: c,
            replayed: r,
            caught_up: u,
            from_storm: s,
            from_attempt: t,
            errors: e,
        } = event
        {
            reconnected += a;
            failed += b;
            retries += c;
            replayed += r;
            caught_up += u;
            from_storm.merge_sparse(&s);
            from_attempt.merge_sparse(&t);
            for (kind, n) in e {
                *errors.entry(kind).or_default() += n;
            }
        }
    }
    let fields = vec![
        ("conns", args.conns.into()),
        ("per_room", per_room.into()),
        ("rate", args.rate.into()),
        ("down_seconds", args.down.as_secs_f64().into()),
        (
            "storm",
            serde_json::json!({
                "reconnected": reconnected,
                "failed": failed,
                "retries": retries,
                "errors": errors,
                "caught_up": caught_up,
                "not_caught_up": reconnected.saturating_sub(caught_up),
                "replayed": replayed,
                "catch_up_ms": from_storm.summary_ms(),
                "catch_up_from_attempt_ms": from_attempt.summary_ms(),
                "seconds": (storm_took.as_secs_f64() * 1000.0).round() / 1000.0,
            }),
        ),
    ];
    let headline = format!(
        "storm       {} connections ({per_room} per room, {room_count} rooms), {} msg/s, away {:.1}s",
        args.conns,
        args.rate,
        args.down.as_secs_f64()
    );
    let details = vec![
        format!(
            "reconnect   {reconnected} back ({failed} failed, {retries} retries {errors:?}), {caught_up} caught up, {replayed} messages replayed"
        ),
        format!(
            "caught up   from reconnect: p50 {} p99 {} max {}; from each client's attempt: p50 {} p99 {}",
            fmt_ms(from_storm.quantile(0.5)),
            fmt_ms(from_storm.quantile(0.99)),
            fmt_ms(from_storm.max()),
            fmt_ms(from_attempt.quantile(0.5)),
            fmt_ms(from_attempt.quantile(0.99)),
        ),
    ];
    finish_traffic(setup, run, expected, headline, details, fields, warnings).await
}
