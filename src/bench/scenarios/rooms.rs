//! `rooms --conns N --rooms M --rate R`: many small rooms, connection `n` in room
//! `n % M`, publishes spread round robin over the rooms.

use super::{finish_traffic, start_traffic, stop_publishing};
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
    let jobs = setup.jobs(JobKind::Hold, args.conns, plan);
    let mut traffic = start_traffic(jobs, setup, rooms.clone(), args.rate).await?;
    let until = traffic.publishing.started + args.duration;
    traffic.fleet.pump_until(until, &mut setup.progress).await;
    let run = stop_publishing(traffic, &mut setup.progress).await;
    // Room r holds the connections n < N with n % M == r.
    let members = |r: u64| args.conns / args.rooms + u64::from(r < args.conns % args.rooms);
    let planned = (0..args.rooms)
        .map(|r| run.acked(&rooms[r as usize]) * members(r))
        .sum();
    let expected = run.expected(planned, args.conns);
    let headline = format!(
        "rooms       {} connections in {} rooms, {} msg/s for {:.1}s",
        args.conns,
        args.rooms,
        args.rate,
        args.duration.as_secs_f64()
    );
    let fields = vec![
        ("conns", args.conns.into()),
        ("rooms", args.rooms.into()),
        ("rate", args.rate.into()),
    ];
    finish_traffic(setup, run, expected, headline, Vec::new(), fields, warnings).await
}
