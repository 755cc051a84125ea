//! One live line per second on stderr: phase, connections, publishes, deliveries/s,
//! p99 of the last second, duplicates, and the CPU of the servers and of the generator
//! itself (so a saturated generator shows).

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::fleet::Aggregate;
use super::procfs;
use super::publish::PubCounters;
use super::stats::fmt_ms;

pub struct Progress {
    start: Instant,
    last: Instant,
    pub phase: &'static str,
    pub servers: Vec<u32>,
    pub generator: Vec<u32>,
    pub publish: Option<Arc<PubCounters>>,
    last_cpu: (Duration, Duration),
    last_sent: u64,
    quiet: bool,
    tty: bool,
}

impl Progress {
    pub fn new(servers: Vec<u32>, quiet: bool) -> Progress {
        let now = Instant::now();
        let generator = vec![std::process::id()];
        Progress {
            start: now,
            last: now,
            phase: "connect",
            last_cpu: (procfs::cpu_sum(&servers), procfs::cpu_sum(&generator)),
            servers,
            generator,
            publish: None,
            last_sent: 0,
            quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// The bench's own processes: this one and its agents.
    pub fn set_generator(&mut self, agents: &[u32]) {
        self.generator = std::iter::once(std::process::id())
            .chain(agents.iter().copied())
            .collect();
        self.last_cpu.1 = procfs::cpu_sum(&self.generator);
    }

    /// Time until the next line is due.
    pub fn due_in(&self) -> Duration {
        (self.last + Duration::from_secs(1)).saturating_duration_since(Instant::now())
    }

    pub fn maybe_print(&mut self, agg: &Aggregate) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last);
        if elapsed < Duration::from_secs(1) {
            return;
        }
        self.last = now;
        let cpu = (
            procfs::cpu_sum(&self.servers),
            procfs::cpu_sum(&self.generator),
        );
        let pct = |now: Duration, before: Duration| {
            now.saturating_sub(before).as_secs_f64() / elapsed.as_secs_f64() * 100.0
        };
        let (srv, gen) = (pct(cpu.0, self.last_cpu.0), pct(cpu.1, self.last_cpu.1));
        self.last_cpu = cpu;
        if self.quiet {
            return;
        }
        let mut line = format!(
            "[{:>6.1}s] {:<9} conns {}",
            now.duration_since(self.start).as_secs_f64(),
            self.phase,
            agg.connected()
        );
        if agg.failed() > 0 {
            line.push_str(&format!(" ({} failed)", agg.failed()));
        }
        if let Some(publish) = &self.publish {
            let sent = publish.sent.load(Ordering::Relaxed);
            line.push_str(&format!(
                "  sent {sent} ({:.0}/s)",
                (sent - self.last_sent) as f64 / elapsed.as_secs_f64()
            ));
            self.last_sent = sent;
        }
        if let Some((n, p99)) = agg.last_second().filter(|_| agg.deliveries > 0) {
            line.push_str(&format!("  recv {}/s  p99 {}", human(n), fmt_ms(p99)));
        }
        if agg.dups > 0 {
            line.push_str(&format!("  dups {}", agg.dups));
        }
        line.push_str(&format!("  cpu server {srv:.0}% bench {gen:.0}%"));
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Ends the live line (on a terminal it is rewritten in place).
    pub fn finish(&self) {
        if self.tty && !self.quiet {
            eprintln!();
        }
    }
}

/// 12345678 → "12.3M".
pub fn human(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}
