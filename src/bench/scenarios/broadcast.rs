//! `broadcast --subs S --rate R --duration T`: S subscribers in one room (the gateway
//! spreads them over the workers), publishers at a fixed open-loop rate.

use super::{finish_traffic, start_traffic, stop_publishing};
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
    let jobs = setup.jobs(JobKind::Hold, args.subs, plan);
    let mut traffic = start_traffic(jobs, setup, vec![room.clone()], args.rate).await?;
    let until = traffic.publishing.started + args.duration;
    traffic.fleet.pump_until(until, &mut setup.progress).await;
    let run = stop_publishing(traffic, &mut setup.progress).await;
    let expected = run.expected(run.acked(&room) * args.subs, args.subs);
    let headline = format!(
        "broadcast   {} subscribers in one room, {} msg/s for {:.1}s",
        args.subs,
        args.rate,
        args.duration.as_secs_f64()
    );
    let fields = vec![("subs", args.subs.into()), ("rate", args.rate.into())];
    finish_traffic(setup, run, expected, headline, Vec::new(), fields, warnings).await
}
