//! `rooms --conns N --rooms M --rate R`: many small rooms, connection `n` in room
//! `n % M`, publishes spread round robin over the rooms.

use super::{bring_up, finish_traffic, start_publishing, stop_publishing, Stopped};
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
    let run = Stopped {
        fleet,
        connected: &connected,
        publishing: &publishing,
        acked: &acked,
        publish_for,
        expected,
        cpu0,
    };
    finish_traffic(setup, run, headline, Vec::new(), fields, warnings).await
}
