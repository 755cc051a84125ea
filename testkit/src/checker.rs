//! Recording what clients saw, and checking it against what was acknowledged
//! (PROTOCOL §3: every acknowledged message reaches every subscriber once, in order).
//!
//! Client loops feed one cloneable [`Recorder`]: the publisher's acks
//! ([`Recorder::acked`]), each subscriber's `subscribed` answers
//! ([`Recorder::subscribed`]) and its messages ([`Recorder::delivered`]), in the order
//! the client saw them. [`Recorder::check`] then judges the whole history at once and
//! returns a [`Verdict`]; a test polls it while clients catch up
//! ([`Verdict::missing`] falls to 0) and ends with [`Verdict::assert_clean`].
//!
//! The rules, per client and room:
//! - **Window.** A client owes every acked message with a seq above its subscription
//!   point: the `seq` of its first `subscribed`, or of its last `subscribed` with
//!   `recovered: false` (the store told it that history was lost: what came before that
//!   point may be gone, and replay may start over).
//! - **No loss.** Every acked seq in the window was delivered after that point.
//! - **No duplicate, in order.** Since the last reset, delivered seqs strictly grow: a
//!   seq seen again is a duplicate, a smaller unseen one is out of order.
//! - **Acks agree.** One seq is acked to one publish, and one publish gets one seq.
//!
//! Deliveries that were never acked (a publish whose ack was lost, a backend that did
//! not report) are allowed and only counted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Violations described in detail; past this, they are only counted.
pub const MAX_DETAILED: usize = 20;
/// How often [`Recorder::wait_caught_up`] judges the history, at most.
const POLL: Duration = Duration::from_millis(50);
/// Missing seqs named per client and room in one violation.
const MAX_SEQS_NAMED: usize = 10;

/// What one client saw in one room, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Subscribed { seq: u64, recovered: bool },
    Delivered { seq: u64 },
}

#[derive(Debug, Default)]
struct History {
    /// room → seq → the publishes acked with it (one, unless the store is wrong).
    acks: BTreeMap<String, BTreeMap<u64, BTreeSet<String>>>,
    /// publish id → (room, seqs it was acked with).
    publishes: HashMap<String, (String, BTreeSet<u64>)>,
    /// (client, room) → what the client saw there.
    clients: BTreeMap<(String, String), Vec<Seen>>,
}

/// The shared history of a test run. Clones record into the same history.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    history: Arc<Mutex<History>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }

    fn lock(&self) -> MutexGuard<'_, History> {
        // A panicking recorder call leaves plain collections: still readable.
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A publish identified by `publish` (unique per test: publisher and its counter)
    /// was acknowledged in `room` with `seq`.
    pub fn acked(&self, room: &str, publish: &str, seq: u64) {
        let mut history = self.lock();
        history
            .acks
            .entry(room.to_string())
            .or_default()
            .entry(seq)
            .or_default()
            .insert(publish.to_string());
        history
            .publishes
            .entry(publish.to_string())
            .or_insert_with(|| (room.to_string(), BTreeSet::new()))
            .1
            .insert(seq);
    }

    /// `client` got `subscribed` for `room`: `seq` is the room's seq then (its
    /// subscription point), `recovered` whether the store could bring it up to date.
    pub fn subscribed(&self, client: &str, room: &str, seq: u64, recovered: bool) {
        self.push(client, room, Seen::Subscribed { seq, recovered });
    }

    /// `client` got the message `seq` of `room`.
    pub fn delivered(&self, client: &str, room: &str, seq: u64) {
        self.push(client, room, Seen::Delivered { seq });
    }

    fn push(&self, client: &str, room: &str, seen: Seen) {
        self.lock()
            .clients
            .entry((client.to_string(), room.to_string()))
            .or_default()
            .push(seen);
    }

    /// The highest seq acked in `room`.
    pub fn last_acked(&self, room: &str) -> Option<u64> {
        self.lock()
            .acks
            .get(room)
            .and_then(|seqs| seqs.keys().next_back().copied())
    }

    /// How many publishes were acked, over all rooms.
    pub fn acked_count(&self) -> usize {
        self.lock().publishes.len()
    }

    /// Judges the history recorded so far.
    pub fn check(&self) -> Verdict {
        let history = self.lock();
        let mut verdict = Verdict {
            acked: history.publishes.len(),
            clients: history
                .clients
                .keys()
                .map(|(c, _)| c)
                .collect::<BTreeSet<_>>()
                .len(),
            ..Verdict::default()
        };
        check_acks(&history, &mut verdict);
        let empty = BTreeMap::new();
        for ((client, room), seen) in &history.clients {
            let acked = history.acks.get(room).unwrap_or(&empty);
            check_client(client, room, seen, acked, &mut verdict);
        }
        verdict
    }

    /// Polls [`check`](Self::check) until nothing is missing (what is still missing may
    /// yet arrive; duplicates and disorder never heal) or `wait` is over, and returns
    /// the last verdict.
    pub async fn wait_caught_up(&self, wait: Duration) -> Verdict {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let judged = std::time::Instant::now();
            let verdict = self.check();
            if verdict.missing == 0 || tokio::time::Instant::now() >= deadline {
                return verdict;
            }
            // Judging a long history holds the lock that every client records through:
            // poll at most a fifth of the time.
            tokio::time::sleep(POLL.max(judged.elapsed() * 4)).await;
        }
    }
}

fn check_acks(history: &History, verdict: &mut Verdict) {
    for (room, seqs) in &history.acks {
        for (seq, publishes) in seqs {
            if publishes.len() > 1 {
                verdict.violation(
                    Kind::Conflict,
                    format!("room {room}: seq {seq} acked to several publishes: {publishes:?}"),
                );
            }
        }
    }
    let mut publishes: Vec<_> = history.publishes.iter().collect();
    publishes.sort();
    for (publish, (room, seqs)) in publishes {
        if seqs.len() > 1 {
            verdict.violation(
                Kind::Conflict,
                format!("room {room}: publish {publish} acked with several seqs: {seqs:?}"),
            );
        }
    }
}

fn check_client(
    client: &str,
    room: &str,
    seen: &[Seen],
    acked: &BTreeMap<u64, BTreeSet<String>>,
    verdict: &mut Verdict,
) {
    // The subscription point and what was delivered since the last reset.
    let mut start: Option<u64> = None;
    let mut delivered = BTreeSet::new();
    let mut last: Option<u64> = None;
    for (at, item) in seen.iter().enumerate() {
        match *item {
            Seen::Subscribed { seq, recovered } => {
                if start.is_none() || !recovered {
                    start = Some(seq);
                    delivered.clear();
                    last = None;
                }
            }
            Seen::Delivered { seq } => {
                verdict.deliveries += 1;
                if !acked.contains_key(&seq) {
                    verdict.unacked_deliveries += 1;
                }
                if start.is_none() {
                    verdict.violation(
                        Kind::Unsubscribed,
                        format!("{client} in {room}: seq {seq} delivered before any subscribed (event {at})"),
                    );
                    continue;
                }
                if !delivered.insert(seq) {
                    verdict.violation(
                        Kind::Duplicate,
                        format!("{client} in {room}: seq {seq} delivered twice (event {at})"),
                    );
                } else if let Some(prev) = last.filter(|prev| seq < *prev) {
                    verdict.violation(
                        Kind::OutOfOrder,
                        format!(
                            "{client} in {room}: seq {seq} delivered after seq {prev} (event {at})"
                        ),
                    );
                }
                last = Some(last.map_or(seq, |prev| prev.max(seq)));
            }
        }
    }
    let Some(start) = start else {
        return;
    };
    let expected: Vec<u64> = acked
        .range(start.saturating_add(1)..)
        .map(|(seq, _)| *seq)
        .collect();
    verdict.expected += expected.len();
    let missing: Vec<u64> = expected
        .into_iter()
        .filter(|seq| !delivered.contains(seq))
        .collect();
    if !missing.is_empty() {
        verdict.missing += missing.len();
        let named: Vec<String> = missing
            .iter()
            .take(MAX_SEQS_NAMED)
            .map(u64::to_string)
            .collect();
        let more = missing.len().saturating_sub(MAX_SEQS_NAMED);
        verdict.violation(
            Kind::Missing,
            format!(
                "{client} in {room}: {} acked message(s) after seq {start} never delivered: {}{}",
                missing.len(),
                named.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        );
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Missing,
    Duplicate,
    OutOfOrder,
    Conflict,
    Unsubscribed,
}

/// The judgement of a history.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// The first [`MAX_DETAILED`] violations, described.
    pub violations: Vec<String>,
    /// Every violation, described or not (a missing entry counts once per client/room).
    pub violation_count: usize,
    /// Acked messages owed to some client and not delivered (one per client and seq).
    pub missing: usize,
    pub duplicates: usize,
    pub out_of_order: usize,
    /// Acks that disagree (one seq for two publishes, two seqs for one publish).
    pub conflicts: usize,
    /// Publishes acked.
    pub acked: usize,
    /// Clients that recorded anything.
    pub clients: usize,
    /// (client, acked seq) pairs owed: the deliveries the check expected.
    pub expected: usize,
    /// Deliveries recorded and checked.
    pub deliveries: usize,
    /// Deliveries of seqs nobody recorded an ack for (allowed).
    pub unacked_deliveries: usize,
}

impl Verdict {
    fn violation(&mut self, kind: Kind, detail: String) {
        match kind {
            Kind::Missing => {}
            Kind::Duplicate => self.duplicates += 1,
            Kind::OutOfOrder => self.out_of_order += 1,
            Kind::Conflict => self.conflicts += 1,
            Kind::Unsubscribed => {}
        }
        self.violation_count += 1;
        if self.violations.len() < MAX_DETAILED {
            self.violations.push(detail);
        }
    }

    pub fn is_clean(&self) -> bool {
        self.violation_count == 0
    }

    /// Panics with the report unless the history broke no rule.
    #[track_caller]
    pub fn assert_clean(&self) {
        assert!(self.is_clean(), "delivery check failed:\n{self}");
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} publishes acked; {} clients; {} deliveries checked against {} owed; {} unacked deliveries",
            self.acked, self.clients, self.deliveries, self.expected, self.unacked_deliveries
        )?;
        writeln!(
            f,
            "{} violation(s): {} missing, {} duplicate, {} out of order, {} ack conflicts",
            self.violation_count, self.missing, self.duplicates, self.out_of_order, self.conflicts
        )?;
        for violation in &self.violations {
            writeln!(f, "  - {violation}")?;
        }
        if self.violation_count > self.violations.len() {
            writeln!(
                f,
                "  ... and {} more",
                self.violation_count - self.violations.len()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Acks seqs 1..=n in `room` (publishes `p-1`..).
    fn acked(n: u64) -> Recorder {
        let recorder = Recorder::new();
        for seq in 1..=n {
            recorder.acked("r", &format!("p-{seq}"), seq);
        }
        recorder
    }

    #[test]
    fn a_complete_history_is_clean() {
        let recorder = acked(5);
        recorder.subscribed("a", "r", 0, true);
        for seq in 1..=5 {
            recorder.delivered("a", "r", seq);
        }
        // Subscribed at 2: owes 3..=5 only; an unacked delivery is allowed.
        recorder.subscribed("b", "r", 2, true);
        for seq in [3, 4, 5, 6] {
            recorder.delivered("b", "r", seq);
        }
        let verdict = recorder.check();
        verdict.assert_clean();
        assert_eq!(
            (
                verdict.acked,
                verdict.clients,
                verdict.expected,
                verdict.deliveries
            ),
            (5, 2, 8, 9)
        );
        assert_eq!(verdict.unacked_deliveries, 1);
        assert_eq!(recorder.last_acked("r"), Some(5));
        assert_eq!(recorder.last_acked("other"), None);
    }

    #[test]
    fn a_missing_message_fails() {
        let recorder = acked(4);
        recorder.subscribed("a", "r", 0, true);
        for seq in [1, 2, 4] {
            recorder.delivered("a", "r", seq);
        }
        let verdict = recorder.check();
        assert!(!verdict.is_clean());
        assert_eq!((verdict.missing, verdict.violation_count), (1, 1));
        assert!(verdict.violations[0].contains("a in r") && verdict.violations[0].contains(": 3"));
        let report = std::panic::catch_unwind(|| verdict.assert_clean()).unwrap_err();
        let report = report.downcast_ref::<String>().unwrap();
        assert!(report.contains("1 missing"), "{report}");
    }

    #[test]
    fn a_duplicate_fails() {
        let recorder = acked(3);
        recorder.subscribed("a", "r", 0, true);
        for seq in [1, 2, 2, 3] {
            recorder.delivered("a", "r", seq);
        }
        let verdict = recorder.check();
        assert_eq!((verdict.duplicates, verdict.missing), (1, 0));
        assert!(verdict.violations[0].contains("seq 2 delivered twice"));
    }

    #[test]
    fn an_out_of_order_pair_fails() {
        let recorder = acked(3);
        recorder.subscribed("a", "r", 0, true);
        for seq in [1, 3, 2] {
            recorder.delivered("a", "r", seq);
        }
        let verdict = recorder.check();
        assert_eq!((verdict.out_of_order, verdict.missing), (1, 0));
        assert!(verdict.violations[0].contains("seq 2 delivered after seq 3"));
    }

    #[test]
    fn a_recovered_false_reset_moves_the_window_and_restarts_the_order() {
        let recorder = acked(8);
        recorder.subscribed("a", "r", 0, true);
        recorder.delivered("a", "r", 1);
        // History lost: 2..=5 may be gone; replay may repeat what was seen.
        recorder.subscribed("a", "r", 5, false);
        for seq in [1, 6, 7, 8] {
            recorder.delivered("a", "r", seq);
        }
        recorder.check().assert_clean();

        // After the reset, losing 7 is still a loss.
        let recorder = acked(8);
        recorder.subscribed("a", "r", 0, true);
        recorder.subscribed("a", "r", 5, false);
        for seq in [6, 8] {
            recorder.delivered("a", "r", seq);
        }
        assert_eq!(recorder.check().missing, 1);
    }

    #[test]
    fn a_recovered_resubscription_keeps_the_first_point() {
        let recorder = acked(4);
        recorder.subscribed("a", "r", 0, true);
        recorder.delivered("a", "r", 1);
        // A fresh reconnect resubscribes with since: it still owes 2 and 3.
        recorder.subscribed("a", "r", 4, true);
        recorder.delivered("a", "r", 4);
        assert_eq!(recorder.check().missing, 2);
    }

    #[test]
    fn disagreeing_acks_and_unsubscribed_deliveries_fail() {
        let recorder = Recorder::new();
        recorder.acked("r", "p-1", 1);
        recorder.acked("r", "p-2", 1);
        recorder.acked("r", "p-3", 2);
        recorder.acked("r", "p-3", 3);
        recorder.delivered("a", "r", 1);
        let verdict = recorder.check();
        assert_eq!(verdict.conflicts, 2);
        assert_eq!(verdict.violation_count, 3);
        assert!(verdict
            .violations
            .iter()
            .any(|v| v.contains("before any subscribed")));
    }

    #[test]
    fn the_report_stays_short() {
        let recorder = acked(100);
        for client in 0..(MAX_DETAILED + 5) {
            recorder.subscribed(&format!("c{client}"), "r", 0, true);
        }
        let verdict = recorder.check();
        assert_eq!(verdict.violations.len(), MAX_DETAILED);
        assert_eq!(verdict.violation_count, MAX_DETAILED + 5);
        assert_eq!(verdict.missing, 100 * (MAX_DETAILED + 5));
        assert!(verdict.violations[0].contains("and 90 more"));
        assert!(verdict.to_string().contains("... and 5 more"));
    }

    #[tokio::test]
    async fn waiting_returns_once_caught_up_or_at_the_deadline() {
        let recorder = acked(2);
        recorder.subscribed("a", "r", 0, true);
        recorder.delivered("a", "r", 1);
        let late = recorder.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            late.delivered("a", "r", 2);
        });
        let verdict = recorder.wait_caught_up(Duration::from_secs(10)).await;
        verdict.assert_clean();
        recorder.acked("r", "p-3", 3);
        let verdict = recorder.wait_caught_up(Duration::from_millis(200)).await;
        assert_eq!(verdict.missing, 1);
    }
}
