//! Process-level faults of the mesh: real `switchyard` gateway and worker processes
//! (`testkit::mesh`) on real nats-server processes, reconnecting clients under load, a
//! fault injected while it runs (SIGKILL, SIGTERM drain, a NATS restart, a stream
//! leader killed), then every client's history checked (`testkit::checker`): each
//! acknowledged message delivered once, in order. One binary, one module per fault.
//!
//! Each scenario prints one `[faults]` line with its numbers (`--nocapture` shows it).

mod backend;
mod fanout;
mod load;
mod nats;
mod presence;
mod workers;

use std::path::Path;
use std::time::Duration;

use switchyard_testkit::checker::Verdict;

/// The binary under test.
pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_switchyard"))
}

/// How long clients have to catch up once publishing stopped.
pub(crate) const CATCH_UP: Duration = Duration::from_secs(15);

/// Prints a scenario's numbers on one line.
pub(crate) fn report(scenario: &str, verdict: &Verdict, extra: &str) {
    println!(
        "[faults] {scenario}: {} clients, {} acked, {} deliveries checked ({} owed, {} unacked extra), {} violations; {extra}",
        verdict.clients,
        verdict.acked,
        verdict.deliveries,
        verdict.expected,
        verdict.unacked_deliveries,
        verdict.violation_count
    );
}
