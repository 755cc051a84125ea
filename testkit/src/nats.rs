//! Real nats-server processes for tests (nats.rs `nats-server/src/lib.rs` does the same).
//!
//! - [`NatsServer`] runs one `nats-server` on `127.0.0.1` with JetStream and a temporary
//!   store. The port is random (`-p -1`), read from the server's log, and kept across
//!   [`NatsServer::restart`], as is the store. The process is killed on `Drop`.
//! - [`NatsCluster`] runs three of them as the JetStream cluster `sy` (`n1`..`n3`).
//! - `log` reads each process' stderr on a thread: the last lines for failure messages,
//!   and the start-up progress that [`NatsServer::start`] waits for (no sleeps).

mod cluster;
mod log;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::{sleep, timeout, Instant};

pub use cluster::{NatsCluster, CLUSTER_NAME, CLUSTER_TIMEOUT};

/// How long a server has to log "Server is ready".
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server has to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

const POLL: Duration = Duration::from_millis(20);
const DEBIAN_PATH: &str = "/usr/sbin/nats-server";

/// How to start a [`NatsServer`]. The kit always sets the address (`127.0.0.1`) and
/// the client port; `name`, `jetstream` and the store are passed as flags too, so they
/// win over the same keys in `config`.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Full config file text (TLS, accounts, permissions, a cluster block). Written to
    /// the server's temporary dir and passed with `-c`. Paths in it must be absolute.
    pub config: Option<String>,
    /// `server_name` (`-n`); nats-server picks one when unset.
    pub name: Option<String>,
    /// `-js` (on by default).
    pub jetstream: bool,
    /// The JetStream store; a dir inside the server's temporary dir when unset.
    pub store_dir: Option<PathBuf>,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            config: None,
            name: None,
            jetstream: true,
            store_dir: None,
        }
    }
}

/// One nats-server process, killed on `Drop`.
#[derive(Debug)]
pub struct NatsServer {
    options: NatsOptions,
    /// Holds the config file and (unless given) the store for the server's whole life.
    dir: tempfile::TempDir,
    store: PathBuf,
    config: Option<PathBuf>,
    /// 0 until the first start has logged its port; fixed after that.
    port: u16,
    child: Option<Child>,
    paused: bool,
    log: log::Log,
}

impl NatsServer {
    /// A server with JetStream on a random port and a temporary store.
    pub async fn start() -> NatsServer {
        NatsServer::start_with(NatsOptions::default()).await
    }

    pub async fn start_with(options: NatsOptions) -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("nats-server-")
            .tempdir()
            .expect("temp dir for nats-server");
        let store = options
            .store_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("store"));
        let config = options.config.as_ref().map(|text| {
            let path = dir.path().join("nats-server.conf");
            std::fs::write(&path, text).expect("write the nats-server config");
            path
        });
        let mut server = NatsServer {
            options,
            dir,
            store,
            config,
            port: 0,
            child: None,
            paused: false,
            log: log::Log::default(),
        };
        server.spawn().await;
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The running process' id; `None` after [`stop`](Self::stop) or [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether a process is running (started and not stopped or killed by the kit).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn name(&self) -> Option<&str> {
        self.options.name.as_deref()
    }

    pub fn store_dir(&self) -> &Path {
        &self.store
    }

    /// The temporary dir holding the config file (and the store unless one was given).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines the server logged, over all its runs, with the kit's notes.
    pub fn log_tail(&self) -> String {
        self.log.tail()
    }

    /// Stops the server gracefully (SIGTERM) and waits for it to exit; SIGKILL after
    /// [`STOP_TIMEOUT`]. Does nothing when it is not running.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        if std::mem::take(&mut self.paused) {
            signal(pid, "CONT");
        }
        signal(pid, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => sleep(POLL).await,
                _ => {
                    self.log.push(format!(
                        "testkit: pid {pid} still running {STOP_TIMEOUT:?} after SIGTERM; killing it"
                    ));
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        self.log.push(format!("testkit: stopped pid {pid}"));
    }

    /// Kills the server (SIGKILL) and reaps it: a crash, with no clean shutdown.
    /// Does nothing when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if std::mem::take(&mut self.paused) {
                signal(child.id(), "CONT");
            }
            let _ = child.kill();
            let _ = child.wait();
            self.log.push(format!("testkit: killed pid {}", child.id()));
        }
    }

    /// Stops the server (if running) and starts it again on the same port with the same
    /// store, config and name, so JetStream data survives. Also brings back a server
    /// after [`kill`](Self::kill) or [`stop`](Self::stop).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Freezes the process (SIGSTOP): sockets stay open but nothing is answered.
    pub fn pause(&mut self) {
        let pid = self.pid().expect("pause: the nats-server is not running");
        assert!(signal(pid, "STOP"), "pause: SIGSTOP to {pid} failed");
        self.paused = true;
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&mut self) {
        let pid = self.pid().expect("resume: the nats-server is not running");
        assert!(signal(pid, "CONT"), "resume: SIGCONT to {pid} failed");
        self.paused = false;
    }

    /// Starts the process and waits for "Server is ready"; on the first start, learns
    /// the port from the log, later reuses it.
    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "nats-server already running");
        let mut cmd = Command::new(nats_server_path());
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        cmd.args(["-a", "127.0.0.1", "-p"]);
        match self.port {
            0 => cmd.arg("-1"),
            port => cmd.arg(port.to_string()),
        };
        if let Some(name) = &self.options.name {
            cmd.arg("-n").arg(name);
        }
        if self.options.jetstream {
            cmd.arg("-js").arg("-sd").arg(&self.store);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("nats-server starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        self.log
            .push(format!("testkit: started pid {}: {cmd:?}", child.id()));
        let mut startup = self.log.follow(stderr);
        // Owned by `self` before waiting, so a failed start is still killed on Drop.
        self.child = Some(child);

        let state = timeout(START_TIMEOUT, startup.wait_for(|s| s.ready || s.exited))
            .await
            .map(|state| state.map(|s| *s).unwrap_or_default());
        let state = match state {
            Ok(state) if state.ready => state,
            Ok(_) => {
                self.kill();
                self.fail("exited during start-up")
            }
            Err(_) => {
                self.kill();
                self.fail(&format!("was not ready within {START_TIMEOUT:?}"))
            }
        };
        match (self.port, state.port) {
            (_, None) => self.fail("logged no client port"),
            (0, Some(port)) => self.port = port,
            (expected, Some(port)) if expected != port => {
                self.fail(&format!("listens on {port} instead of {expected}"))
            }
            _ => {}
        }
    }

    fn fail(&self, what: &str) -> ! {
        let name = self.options.name.as_deref().unwrap_or("(unnamed)");
        panic!("nats-server {name} {what}; its log:\n{}", self.log_tail())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `nats-server` binary: the first on `PATH`, else Debian's `/usr/sbin/nats-server`.
/// Panics with how to install it when there is none.
pub fn nats_server_path() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"));
    on_path
        .chain([PathBuf::from(DEBIAN_PATH)])
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server not found: run ./scripts/test.sh (it installs it) or apt-get install nats-server"
            )
        })
}

/// Sends `sig` (a name such as `STOP`) with the shell's `kill` builtin: no `procps` or
/// signal crate needed. False when it could not be sent (the process is gone).
fn signal(pid: u32, sig: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("kill -s {sig} {pid}"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
