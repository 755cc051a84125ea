//! `rooms --conns N --rooms M --rate R`: many small rooms, connection `n` in room
//! `n % M`, publishes spread round robin over the rooms.

use super::{bring_up, delivered, settle, start_publishing, stop_publishing, traffic, Published};
use crate::bench::agent::{JobKind, RoomPlan};
use crate::bench::cli::RoomsArgs;
use crate::bench::{Outcome, Setup};

pub(super) async fn run(args: &RoomsArgs, setup: &mut Setup) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.rooms >= 1, "--rooms must be at least 1");
    let warnings = setup.file_warnings(args.conns);
    let plan = RoomPlan::Spread {
        prefix: setup.prefix.clone(),
        rooms: args.rooms,
    };
    let rooms: Vec<String> = (0..args.rooms).map(|r| plan.room(r)).collect();
    let (mut fleet, connected) =
        bring_up(setup.jobs(JobKind::Hold, args.conns, plan), setup).await?;
    let cpu0 = setup.cpu();
    let mut publishing = start_publishing(setup, rooms, args.rate).await?;
    fleet
        .pump_until(publishing.started + args.duration, &mut setup.progress)
        .await;
    let (acked, publish_for) =
        stop_publishing(&mut publishing, &mut fleet, &mut setup.progress).await;
    // Room r holds the connections n < N with n % M == r (failed ones aside).
    let members = |r: u64| args.conns / args.rooms + u64::from(r < args.conns % args.rooms);
    let mut expected: u64 = (0..args.rooms)
        .map(|r| {
            acked
                .get(&format!("{}{r}", setup.prefix))
                .copied()
                .unwrap_or(0)
                * members(r)
        })
        .sum();
    if connected.failed > 0 {
        // Which rooms lost members is not known here: scale the expectation.
        expected = expected * connected.ok / args.conns.max(1);
    }
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
    let (mut json, mut lines, charts) = traffic(&fleet, &d, &published);
    json["conns"] = args.conns.into();
    json["rooms"] = args.rooms.into();
    json["rate"] = args.rate.into();
    json["connect"] = connected.json();
    json["warnings"] = warnings.clone().into();
    lines.insert(0, connected.line());
    lines.insert(
        0,
        format!(
            "rooms       {} connections in {} rooms, {} msg/s for {:.1}s",
            args.conns,
            args.rooms,
            args.rate,
            args.duration.as_secs_f64()
        ),
    );
    lines.extend(warnings.into_iter().map(|w| format!("WARNING     {w}")));
    Ok(Outcome {
        json,
        lines,
        charts: Some(charts),
    })
}
