//! A server's stderr: one thread per process reads it to the end, keeps the last lines
//! for failure messages and reports start-up progress (port, ready, exited) on a `watch`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::ChildStderr;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// How many log lines a server keeps (over all its runs).
pub(super) const LOG_LINES: usize = 200;

const LISTENING: &str = "Listening for client connections on ";
const READY: &str = "Server is ready";

/// What the current process has said about its start-up so far.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Startup {
    pub(super) port: Option<u16>,
    pub(super) ready: bool,
    /// stderr reached EOF: the process is gone (or closed it, which nats-server doesn't).
    pub(super) exited: bool,
}

/// The last [`LOG_LINES`] lines, shared with the reader threads.
#[derive(Debug, Clone, Default)]
pub(super) struct Log {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl Log {
    /// Adds a line (also used for the kit's own notes, prefixed `testkit:`).
    pub(super) fn push(&self, line: String) {
        // A poisoned lock only means a reader thread panicked mid-push; the lines are
        // still whole, so keep using them.
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == LOG_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    pub(super) fn tail(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Reads `stderr` on a thread of its own until EOF. The thread ends with the process.
    pub(super) fn follow(&self, stderr: ChildStderr) -> watch::Receiver<Startup> {
        let (tx, rx) = watch::channel(Startup::default());
        let log = self.clone();
        std::thread::Builder::new()
            .name("nats-server-log".into())
            .spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                    let port = listening_port(&line);
                    let ready = line.ends_with(READY);
                    // The line goes into the log before anyone waiting on the watch
                    // wakes, so a caller that saw "ready" also finds it in the tail.
                    log.push(line);
                    if let Some(port) = port {
                        tx.send_modify(|s| s.port = Some(port));
                    } else if ready {
                        tx.send_modify(|s| s.ready = true);
                    }
                }
                tx.send_modify(|s| s.exited = true);
            })
            .expect("spawn the nats-server log thread");
        rx
    }
}

/// The port of `... Listening for client connections on 127.0.0.1:PORT`.
fn listening_port(line: &str) -> Option<u16> {
    let (_, addr) = line.split_once(LISTENING)?;
    addr.trim().rsplit(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_port_of_the_listening_line() {
        let line = "[1854] 2026/11/22 08:14:13.140906 [INF] Listening for client connections on 127.0.0.1:35613";
        assert_eq!(listening_port(line), Some(35613));
        assert_eq!(listening_port("[1] [INF] Server is ready"), None);
    }

    #[test]
    fn keeps_only_the_last_lines() {
        let log = Log::default();
        for i in 0..LOG_LINES + 5 {
            log.push(format!("line {i}"));
        }
        let tail = log.tail();
        assert_eq!(tail.lines().count(), LOG_LINES);
        assert!(tail.starts_with("line 5\n"));
        assert!(tail.ends_with(&format!("line {}", LOG_LINES + 4)));
    }
}
