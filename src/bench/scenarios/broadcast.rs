//! `broadcast --subs S --rate R --duration T`: S subscribers in one room (the gateway
//! spreads them over the workers), publishers at a fixed open-loop rate.

use super::{bring_up, delivered, settle, start_publishing, stop_publishing, traffic, Published};
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
    json["subs"] = args.subs.into();
    json["rate"] = args.rate.into();
    json["connect"] = connected.json();
    json["warnings"] = warnings.clone().into();
    lines.insert(0, connected.line());
    lines.insert(
        0,
        format!(
            "broadcast   {} subscribers in one room, {} msg/s for {:.1}s",
            args.subs,
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
