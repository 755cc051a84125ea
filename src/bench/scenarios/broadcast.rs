//! `broadcast --subs S --rate R --duration T`: S subscribers in one room (the gateway
//! spreads them over the workers), publishers at a fixed open-loop rate.

use super::{bring_up, finish_traffic, start_publishing, stop_publishing, Stopped};
use crate::bench::agent::{JobKind, RoomPlan};
use crate::bench::cli::BroadcastArgs;
use crate::bench::{Outcome, Setup};

pub(super) async fn run(args: &BroadcastArgs, setup: &mut Setup) -> anyhow::Result<Outcome> {
    let warnings = setup.file_warnings(args.subs);
    let plan = RoomPlan::Block {
        prefix: setup.prefix.clone(),
        per_room: args.subs,
    };
    let room = plan.room(0);
    let (mut fleet, connected) =
        bring_up(setup.jobs(JobKind::Hold, args.subs, plan), setup).await?;
    let cpu0 = setup.cpu();
    let mut publishing = start_publishing(setup, vec![room.clone()], args.rate).await?;
    fleet
        .pump_until(publishing.started + args.duration, &mut setup.progress)
        .await;
    let (acked, publish_for) =
        stop_publishing(&mut publishing, &mut fleet, &mut setup.progress).await;
    let expected = acked.get(&room).copied().unwrap_or(0) * connected.ok;
    let headline = format!(
        "broadcast   {} subscribers in one room, {} msg/s for {:.1}s",
        args.subs,
        args.rate,
        args.duration.as_secs_f64()
    );
    let fields = vec![("subs", args.subs.into()), ("rate", args.rate.into())];
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
