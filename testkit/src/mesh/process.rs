//! One `switchyard` role process of a [`Mesh`](super::Mesh): its config file, its log
//! file (stderr, kept over every run, with the kit's own notes between runs), the
//! address it logged, and the signals a test sends it.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::{sleep, Instant};

const POLL: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub(crate) struct Process {
    /// `w1`, `gateway0`: how logs and failures name it.
    pub(crate) name: String,
    /// `worker` or `gateway`: the subcommand.
    role: &'static str,
    pub(crate) config: PathBuf,
    pub(crate) log: PathBuf,
    child: Option<Child>,
    /// Where the log of the current run starts.
    run_from: u64,
    paused: bool,
    /// The address the first run logged; later runs reuse it (the config is rewritten).
    pub(crate) addr: Option<SocketAddr>,
}

impl Process {
    pub(crate) fn new(name: &str, role: &'static str, dir: &Path) -> Process {
        Process {
            name: name.to_string(),
            role,
            config: dir.join(format!("{name}.toml")),
            log: dir.join(format!("{name}.log")),
            child: None,
            run_from: 0,
            paused: false,
            addr: None,
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts `binary <role> --config <config>` with stderr appended to the log.
    pub(crate) fn spawn(&mut self, binary: &Path, log_filter: &str) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log.display()));
        self.run_from = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(binary);
        cmd.args([self.role, "--config"])
            .arg(&self.config)
            .env("SWITCHYARD_LOG", log_filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.try_clone().expect("clone the log file handle"));
        // The test's own environment must not reconfigure the mesh.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SWITCHYARD__") {
                cmd.env_remove(name);
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let _ = writeln!(
            log,
            "--- testkit: started {} pid {} ---",
            self.name,
            child.id()
        );
        self.child = Some(child);
    }

    /// Waits for the current run to log `marker` with an `addr=` field, and returns it.
    /// Fails when the process exits first or after `wait`.
    pub(crate) async fn wait_listening(&mut self, marker: &str, wait: Duration) -> SocketAddr {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(addr) = self.run_log().lines().find_map(|line| {
                line.contains(marker)
                    .then(|| field(line, "addr"))
                    .flatten()
                    .and_then(|a| a.parse().ok())
            }) {
                return addr;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited with {status} before listening; its log:\n{}",
                    self.name,
                    self.tail(40)
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} logged no {marker:?} within {wait:?}; its log:\n{}",
                    self.name,
                    self.tail(40)
                );
            }
            sleep(POLL).await;
        }
    }

    /// The exit status, when the process has ended (reaping it).
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        self.note(&format!("exited with {status}"));
        Some(status)
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.exited().is_none() && self.child.is_some()
    }

    /// SIGKILL and reap: a crash.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if std::mem::take(&mut self.paused) {
                signal(child.id(), "CONT");
            }
            let _ = child.kill();
            let _ = child.wait();
            self.note(&format!("killed pid {}", child.id()));
        }
    }

    /// SIGTERM, then waits up to `wait` for the exit; `None` if it did not come (the
    /// process is killed then).
    pub(crate) async fn terminate(&mut self, wait: Duration) -> Option<ExitStatus> {
        let pid = self.pid()?;
        if std::mem::take(&mut self.paused) {
            signal(pid, "CONT");
        }
        self.note(&format!("SIGTERM to pid {pid}"));
        signal(pid, "TERM");
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                self.note(&format!("still running {wait:?} after SIGTERM; killing it"));
                self.kill();
                return None;
            }
            sleep(POLL).await;
        }
    }

    /// SIGSTOP: sockets stay open, nothing is answered.
    pub(crate) fn pause(&mut self) {
        let pid = self.pid().expect("pause: not running");
        assert!(signal(pid, "STOP"), "SIGSTOP to {pid} failed");
        self.paused = true;
        self.note("paused (SIGSTOP)");
    }

    pub(crate) fn resume(&mut self) {
        let pid = self.pid().expect("resume: not running");
        assert!(signal(pid, "CONT"), "SIGCONT to {pid} failed");
        self.paused = false;
        self.note("resumed (SIGCONT)");
    }

    /// The whole log, over every run.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| strip_ansi(&String::from_utf8_lossy(&bytes)))
            .unwrap_or_default()
    }

    fn run_log(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let from = (self.run_from as usize).min(bytes.len());
        strip_ansi(&String::from_utf8_lossy(&bytes[from..]))
    }

    /// The last `n` lines of the log.
    pub(crate) fn tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// A line of the kit's own in the log, between the process' lines.
    fn note(&self, what: &str) {
        if let Ok(mut log) = OpenOptions::new().append(true).open(&self.log) {
            let _ = writeln!(log, "--- testkit: {} {what} ---", self.name);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes a config file.
pub(crate) fn write(path: &Path, text: &str) {
    let mut file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The value of `name=value` in a text log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..].split_whitespace().next()
}

/// Removes terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Sends `sig` (`TERM`, `STOP`...) with the shell's `kill`; false when it failed.
fn signal(pid: u32, sig: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("kill -s {sig} {pid}"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_coloured_or_plain_lines() {
        let plain = "2025-01-01T00:00:00Z  INFO switchyard: gateway listening addr=127.0.0.1:4321";
        assert_eq!(field(plain, "addr"), Some("127.0.0.1:4321"));
        let coloured = "\u{1b}[2m2025\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m worker listening for hand-offs \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:9 worker.id=w1";
        assert_eq!(field(&strip_ansi(coloured), "addr"), Some("127.0.0.1:9"));
        assert_eq!(field(plain, "port"), None);
    }
}
