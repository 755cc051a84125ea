//! `scripts/local-cluster.sh`, run as a user runs it, with a temporary state dir and the
//! ports it picks: it must print its `ready:` line with the 3-node mTLS NATS cluster, 3
//! workers and 2 gateways up; a client on each gateway, each pinned to another worker,
//! must get the other's messages (so every message crosses NATS); SIGTERM must stop
//! every process it started. And when a process dies while starting, the script must
//! stop the others and show that process' log.
//!
//! Processes are found by their command line naming the state dir (`/proc`), so the
//! test sees what the script left behind, not what it says it started; whatever is
//! left when the test ends is killed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_client::{ConnectOptions, Connection, Incoming, TlsTrust, TokenVia};
use switchyard_protocol::frame::ServerFrame;
use switchyard_testkit::expect;
use tokio::time::{sleep, timeout, Instant};

/// Start-up: certificates, the cluster electing a meta leader, workers setting up the
/// R3 stream and buckets, gateways seeing every worker in the registry.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// Stopping: workers drain for up to 30 s, the script kills what outlives 45 s.
const STOP_TIMEOUT: Duration = Duration::from_secs(90);
/// A message published on one worker reaching a subscriber on another.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_switchyard"))
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/local-cluster.sh")
}

fn has_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Processes (pid, command line) whose command line names `dir`, but not `except`.
fn processes_under(dir: &Path, except: u32) -> Vec<(u32, String)> {
    let needle = format!("{}/", dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != except && pid != std::process::id())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            line.contains(&needle)
                .then(|| (pid, line.trim().to_string()))
        })
        .collect()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// One run of the script; on `Drop` it is stopped and anything left is killed.
struct Launch {
    child: Child,
    state: tempfile::TempDir,
    stdout: Arc<Mutex<String>>,
    stderr: PathBuf,
}

impl Launch {
    /// `scripts/local-cluster.sh --state-dir <temp> --binary <this build>`, with
    /// `wrapper` (a shell script) in place of the binary when given.
    fn start(wrapper: Option<&str>) -> Launch {
        let state = tempfile::Builder::new()
            .prefix("switchyard-local-cluster-")
            .tempdir()
            .expect("temp state dir");
        let mut exe = binary().to_path_buf();
        if let Some(text) = wrapper {
            exe = state.path().join("switchyard-wrapper");
            std::fs::write(&exe, text).expect("write the wrapper");
            Command::new("chmod")
                .arg("+x")
                .arg(&exe)
                .status()
                .expect("chmod the wrapper");
        }
        let stderr = state.path().join("script.stderr");
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .arg("--state-dir")
            .arg(state.path().join("run"))
            .arg("--binary")
            .arg(&exe)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("script stderr file"));
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("SWITCHYARD") {
                cmd.env_remove(var);
            }
        }
        let mut child = cmd.spawn().expect("run scripts/local-cluster.sh");
        let stdout = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stdout.take().expect("piped stdout");
        let sink = stdout.clone();
        std::thread::spawn(move || {
            use std::io::Read as _;
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("stdout lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Launch {
            child,
            state,
            stdout,
            stderr,
        }
    }

    fn dir(&self) -> PathBuf {
        self.state.path().join("run")
    }

    fn stdout(&self) -> String {
        self.stdout.lock().expect("stdout lock").clone()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// What the script started and still runs.
    fn started(&self) -> Vec<(u32, String)> {
        processes_under(&self.dir(), self.child.id())
    }

    /// Waits for the `ready:` line, failing when the script exits first.
    async fn ready(&mut self) -> String {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let out = self.stdout();
            if out.lines().any(|l| l.starts_with("ready:")) {
                return out;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the script exited ({status}) before it was ready\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no ready line within {READY_TIMEOUT:?}\n{}",
                self.output()
            );
            sleep(POLL).await;
        }
    }

    /// Waits for the script to exit.
    async fn exited(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the script still runs {within:?} later\n{}",
                self.output()
            );
            sleep(POLL).await;
        }
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), "TERM");
            let deadline = std::time::Instant::now() + STOP_TIMEOUT;
            while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline
            {
                std::thread::sleep(POLL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for (pid, _) in processes_under(&self.dir(), 0) {
            signal(pid, "KILL");
        }
        if std::thread::panicking() {
            eprintln!("{}", self.output());
            for log in ["n1", "n2", "n3", "w1", "w2", "w3", "g1", "g2"] {
                let path = self.dir().join(format!("logs/{log}.log"));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                eprintln!("--- {} ---", path.display());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// The `wss://` URL of each `gateway` line of the banner.
fn gateway_urls(banner: &str) -> Vec<String> {
    banner
        .lines()
        .filter(|l| l.trim_start().starts_with("gateway "))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("wss://")))
        .map(str::to_string)
        .collect()
}

/// A token as the banner says to make one: `switchyard token --state-dir <dir>/dev`.
fn token(state: &Path, user: &str) -> String {
    let out = Command::new(binary())
        .args(["token", "--user", user, "--sub", "lobby", "--pub", "lobby"])
        .arg("--state-dir")
        .arg(state.join("dev"))
        .output()
        .expect("run switchyard token");
    assert!(
        out.status.success(),
        "switchyard token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Connects to `url` (a sticky path naming the worker), trusting the generated CA, and
/// checks that the worker named took the connection.
async fn connect(state: &Path, url: String, user: &str, worker: &str) -> Connection {
    let ca = std::fs::read(state.join("dev/ca.pem")).expect("the generated public CA");
    let mut options = ConnectOptions::new(url.clone()).token(token(state, user), TokenVia::Header);
    options.tls = TlsTrust::CaPem(ca);
    let mut conn = timeout(Duration::from_secs(15), Connection::connect(&options))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let welcome = expect::welcome(&mut conn).await;
    assert_eq!(welcome.worker, worker, "{url} placed {user} elsewhere");
    conn
}

async fn subscribe(conn: &mut Connection, room: &str) {
    let sub = format!(r#"{{"op":"sub","room":"{room}","since":0,"ref":"s"}}"#);
    conn.send_text(sub.as_bytes()).await.expect("send sub");
    expect::until(conn, |f| match f {
        ServerFrame::Subscribed { room: r, .. } if r == room => Some(()),
        ServerFrame::Error { code, message, .. } => panic!("sub refused: {code:?} {message}"),
        _ => None,
    })
    .await
}

/// Waits for message `seq` of `room` and returns its data.
async fn received(conn: &mut Connection, room: &str, seq: u64) -> String {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv_timeout(left).await {
            Ok(Incoming::Frame(ServerFrame::Msg {
                room: r,
                seq: Some(s),
                data,
                ..
            })) if r == room && s == seq => return data.get().to_string(),
            Ok(Incoming::Frame(_)) => {}
            Ok(Incoming::Closed { code, reason }) => panic!("closed with {code:?} ({reason})"),
            Err(e) => {
                panic!("message {seq} of {room} did not arrive within {DELIVERY_TIMEOUT:?}: {e}")
            }
        }
    }
}

#[tokio::test]
async fn the_local_cluster_carries_messages_across_gateways_and_workers_and_stops_cleanly() {
    if !has_openssl() {
        eprintln!(
            "skipped: no openssl for nats/gen-certs.sh (the script refuses to run without it)"
        );
        return;
    }
    let started_at = Instant::now();
    let mut launch = Launch::start(None);
    let banner = launch.ready().await;
    eprintln!("ready after {:?}", started_at.elapsed());
    let state = launch.dir();

    let started = launch.started();
    let count = |what: &str| started.iter().filter(|(_, l)| l.contains(what)).count();
    assert_eq!(
        (
            count("nats-server"),
            count(" worker --config"),
            count(" gateway --config")
        ),
        (3, 3, 2),
        "not the processes of the topology: {started:#?}"
    );
    let urls = gateway_urls(&banner);
    assert_eq!(urls.len(), 2, "two gateway URLs in the banner:\n{banner}");
    for hint in ["switchyard token", "switchyard chat", "/jsz", "logs/"] {
        assert!(
            banner.contains(hint),
            "the banner says nothing of {hint}:\n{banner}"
        );
    }

    // Alice on gateway 1 and worker w1, bob on gateway 2 and worker w2: a message from
    // one to the other is stored on the R3 stream and reaches the other worker through
    // NATS.
    let ws = |i: usize, path: &str| urls[i].replacen("/ws", path, 1);
    let mut alice = connect(&state, ws(0, "/ws/w1/alice"), "alice", "w1").await;
    let mut bob = connect(&state, ws(1, "/ws/w2/bob"), "bob", "w2").await;
    subscribe(&mut alice, "lobby").await;
    subscribe(&mut bob, "lobby").await;
    let seq = expect::publish(&mut alice, "lobby", r#"{"text":"from g1"}"#, "a1").await;
    assert!(received(&mut bob, "lobby", seq).await.contains("from g1"));
    let seq = expect::publish(&mut bob, "lobby", r#"{"text":"from g2"}"#, "b1").await;
    assert!(received(&mut alice, "lobby", seq).await.contains("from g2"));
    let _ = timeout(Duration::from_secs(5), alice.close(1000)).await;
    let _ = timeout(Duration::from_secs(5), bob.close(1000)).await;

    let stopping = Instant::now();
    signal(launch.child.id(), "TERM");
    let status = launch.exited(STOP_TIMEOUT).await;
    eprintln!(
        "stopped {:?} after SIGTERM; {:?} in all",
        stopping.elapsed(),
        started_at.elapsed()
    );
    assert!(
        status.success(),
        "the script exited with {status}\n{}",
        launch.output()
    );
    let left = launch.started();
    assert!(left.is_empty(), "left running after SIGTERM: {left:#?}");
    assert!(launch.stderr().contains("stopped"), "{}", launch.output());
}

#[tokio::test]
async fn a_process_dying_at_start_stops_every_other_and_shows_its_log() {
    if !has_openssl() {
        eprintln!("skipped: no openssl for nats/gen-certs.sh");
        return;
    }
    // Worker w2 gets a bad heartbeat when it runs (not when its file is checked), as a
    // misconfigured process would: it exits at start, after the NATS nodes and the other
    // workers were started.
    let wrapper = format!(
        "#!/bin/sh\ncase \"$*\" in *--check-config*) ;; */w2.toml*) export SWITCHYARD__WORKER__HEARTBEAT=not-a-duration ;; esac\nexec {} \"$@\"\n",
        binary().display()
    );
    let mut launch = Launch::start(Some(&wrapper));
    let status = launch.exited(READY_TIMEOUT).await;
    assert_eq!(status.code(), Some(1), "{}", launch.output());
    let stderr = launch.stderr();
    assert!(
        stderr.contains("w2 exited while starting (status 64)"),
        "{}",
        launch.output()
    );
    assert!(
        stderr.contains("heartbeat"),
        "the tail of w2's log names what is wrong\n{}",
        launch.output()
    );
    assert!(!launch.stdout().contains("ready:"), "{}", launch.output());
    let left = launch.started();
    assert!(left.is_empty(), "left running after w2 died: {left:#?}");
}
