//! Process-level faults of the mesh: real `switchyard` gateway and worker processes
//! (`testkit::mesh`) on real nats-server processes, reconnecting clients under load, a
//! fault injected while it runs (SIGKILL, SIGTERM drain, SIGSTOP, a NATS restart, a
//! cluster node lost and returned, sockets cut all at once, clients that stop
//! reading), then every client's history checked (`testkit::checker`): each
//! acknowledged message delivered once, in order. One binary, one module per fault;
//! `broken` proves that the checker fails a worker broken on purpose.
//!
//! Every scenario is bounded in count and time; its size comes from
//! `SWITCHYARD_CHAOS_SCALE` (`scale`: `small` in CI, `large` for RELIABILITY.md). Each
//! prints one `[faults]` line with its numbers and one `[faults-row]` line, the row of
//! RELIABILITY.md's table (`--nocapture` shows them).

mod backend;
mod broken;
mod cluster_node;
mod fanout;
mod kill_loop;
mod load;
mod lost_answer;
mod nats;
mod pause;
mod presence;
mod rolling;
mod scale;
mod slow;
mod storm;
mod workers;

use std::path::Path;
use std::time::Duration;

use switchyard_testkit::checker::Verdict;

use scale::Scale;

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

/// One row of RELIABILITY.md's table.
pub(crate) struct Row<'a> {
    pub(crate) scenario: &'a str,
    /// The test's path in this binary (`kill_loop::`): the reproducing command.
    pub(crate) test: &'a str,
    pub(crate) clients: usize,
    /// Acknowledged messages per second while the load ran.
    pub(crate) rate: f64,
    /// The load's run, from the first publish to the last.
    pub(crate) duration: Duration,
    pub(crate) faults: String,
}

impl Row<'_> {
    /// Prints the row as markdown, with the verdict's numbers.
    pub(crate) fn print(&self, verdict: &Verdict) {
        let scale = Scale::get();
        println!(
            "[faults-row] | {} ({}) | {} clients, {:.0} msg/s | {:.0} s | {} | {} acked, {} deliveries | {} | `{}` |",
            self.scenario,
            scale.name(),
            self.clients,
            self.rate,
            self.duration.as_secs_f64(),
            self.faults,
            verdict.acked,
            verdict.deliveries,
            verdict.violation_count,
            scale.command(self.test),
        );
    }
}
