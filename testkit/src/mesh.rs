//! A production-shaped mesh of real processes: gateways and workers started from the
//! `switchyard` binary with config files, on a NATS server or cluster the test owns.
//!
//! [`Mesh::start`] makes a temporary dir, creates the dev state in it once
//! (`switchyard token --state-dir`: CA, server certificate for `localhost`,
//! `jwt.secret`, `api.key`, `identity.secret`), writes `w1.toml`..`wN.toml` and
//! `gateway0.toml`.. (`config`), and spawns the processes (`process`), each logging to
//! its own file beside its config. Every process binds port 0 and logs its address;
//! the kit reads it and writes it into the config, so a restart keeps the port. The mesh
//! is ready when every gateway places a sticky connection (`/ws/<id>/probe`) on every
//! worker. Tests then kill, stop, pause and restart processes; when a test fails, the
//! tail of every log is printed, and every process dies with the value.

mod config;
mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use switchyard_client::{ConnectOptions, Connection, Incoming, TlsTrust, TokenVia};
use tokio::time::{sleep, timeout, Instant};

use crate::api::Api;
use crate::{now, Welcome};
use process::Process;

/// How long a process has to log its address.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long every gateway has to route to a worker after it starts.
pub const ROUTABLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a worker has to exit after SIGTERM (it drains for up to 30 s).
pub const TERM_TIMEOUT: Duration = Duration::from_secs(40);
/// Log lines of each process printed when a test fails.
pub const TAIL_LINES: usize = 30;

const WORKER_LISTENING: &str = "worker listening for hand-offs";
const GATEWAY_LISTENING: &str = "gateway listening";
const PROBE_WAIT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(50);

/// What [`Mesh::start`] builds.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// Workers `w1`..`wN`.
    pub workers: usize,
    pub gateways: usize,
    /// NATS URLs, comma-separated (`NatsCluster::url_list`).
    pub nats_url: String,
    /// Replicas of the stream and buckets (1, or 3 on a cluster).
    pub replicas: usize,
    /// `nats.registry_ttl`: short, so that a dead worker leaves the registry soon.
    pub registry_ttl: Duration,
    /// Extra lines of every `[worker]` table, e.g. `heartbeat = "2s"`. Without an
    /// `announce_every` line, workers announce three times per `registry_ttl`.
    pub worker_settings: Vec<String>,
    /// Extra lines of every `[nats]` table, e.g. `presence_ttl = "3s"`.
    pub nats_settings: Vec<String>,
    /// Extra lines at the top of every gateway file, e.g. `connect_timeout = "1s"`.
    pub gateway_settings: Vec<String>,
    /// `SWITCHYARD_LOG` of every process.
    pub log: String,
    /// Start the processes one at a time, each once the previous one listens, instead
    /// of all at once.
    pub staggered: bool,
}

impl MeshOptions {
    /// One gateway and three workers on the NATS at `nats_url`, R1.
    pub fn new(nats_url: impl Into<String>) -> MeshOptions {
        MeshOptions {
            workers: 3,
            gateways: 1,
            nats_url: nats_url.into(),
            replicas: 1,
            registry_ttl: Duration::from_secs(3),
            worker_settings: Vec::new(),
            nats_settings: Vec::new(),
            gateway_settings: Vec::new(),
            log: "info".into(),
            staggered: false,
        }
    }

    pub fn staggered(mut self) -> MeshOptions {
        self.staggered = true;
        self
    }

    pub fn workers(mut self, n: usize) -> MeshOptions {
        self.workers = n;
        self
    }

    pub fn gateways(mut self, n: usize) -> MeshOptions {
        self.gateways = n;
        self
    }

    pub fn replicas(mut self, n: usize) -> MeshOptions {
        self.replicas = n;
        self
    }

    pub fn worker_setting(mut self, line: impl Into<String>) -> MeshOptions {
        self.worker_settings.push(line.into());
        self
    }

    pub fn nats_setting(mut self, line: impl Into<String>) -> MeshOptions {
        self.nats_settings.push(line.into());
        self
    }

    pub fn gateway_setting(mut self, line: impl Into<String>) -> MeshOptions {
        self.gateway_settings.push(line.into());
        self
    }
}

/// What clients and tools need from the dev state dir.
#[derive(Debug, Clone)]
struct State {
    dir: PathBuf,
    ca_pem: Vec<u8>,
    jwt_secret: String,
    api_key: String,
}

/// Gateways and workers as separate processes; all killed on `Drop`.
pub struct Mesh {
    binary: PathBuf,
    options: MeshOptions,
    state: State,
    gateways: Vec<Process>,
    workers: Vec<Process>,
    /// Last: the files outlive the processes that write them.
    dir: tempfile::TempDir,
}

impl Mesh {
    /// Starts the mesh and waits until every gateway routes to every worker.
    pub async fn start(binary: &Path, options: MeshOptions) -> Mesh {
        assert!(
            options.workers >= 1 && options.gateways >= 1,
            "a mesh needs a gateway and a worker"
        );
        let dir = tempfile::Builder::new()
            .prefix("switchyard-mesh-")
            .tempdir()
            .expect("temp dir for the mesh");
        let state = make_state(binary, &dir.path().join("state"));
        let workers = (1..=options.workers)
            .map(|i| Process::new(&format!("w{i}"), "worker", dir.path()))
            .collect();
        let gateways = (0..options.gateways)
            .map(|i| Process::new(&format!("gateway{i}"), "gateway", dir.path()))
            .collect();
        let mut mesh = Mesh {
            binary: binary.to_path_buf(),
            options,
            state,
            gateways,
            workers,
            dir,
        };
        let staggered = mesh.options.staggered;
        for i in 0..mesh.workers.len() {
            let text = config::worker(&mesh.options, &mesh.state.dir, &mesh.workers[i].name, None);
            process::write(&mesh.workers[i].config, &text);
            mesh.workers[i].spawn(&mesh.binary, &mesh.options.log);
            if staggered {
                mesh.learn_worker_addr(i).await;
            }
        }
        for i in 0..mesh.gateways.len() {
            process::write(
                &mesh.gateways[i].config,
                &config::gateway(&mesh.options, &mesh.state.dir, None),
            );
            mesh.gateways[i].spawn(&mesh.binary, &mesh.options.log);
            if staggered {
                mesh.learn_gateway_addr(i).await;
            }
        }
        for i in 0..mesh.workers.len() {
            mesh.learn_worker_addr(i).await;
        }
        for i in 0..mesh.gateways.len() {
            mesh.learn_gateway_addr(i).await;
        }
        for id in mesh.worker_ids() {
            mesh.wait_routable(&id).await;
        }
        mesh
    }

    async fn learn_worker_addr(&mut self, i: usize) {
        let addr = self.workers[i]
            .wait_listening(WORKER_LISTENING, START_TIMEOUT)
            .await;
        if self.workers[i].addr.is_none() {
            self.workers[i].addr = Some(addr);
            let text = config::worker(
                &self.options,
                &self.state.dir,
                &self.workers[i].name,
                Some(addr),
            );
            process::write(&self.workers[i].config, &text);
        }
    }

    async fn learn_gateway_addr(&mut self, i: usize) {
        let addr = self.gateways[i]
            .wait_listening(GATEWAY_LISTENING, START_TIMEOUT)
            .await;
        if self.gateways[i].addr.is_none() {
            self.gateways[i].addr = Some(addr);
            let text = config::gateway(&self.options, &self.state.dir, Some(addr));
            process::write(&self.gateways[i].config, &text);
        }
    }

    /// `w1`..`wN`.
    pub fn worker_ids(&self) -> Vec<String> {
        self.workers.iter().map(|w| w.name.clone()).collect()
    }

    fn worker(&self, id: &str) -> &Process {
        self.workers
            .iter()
            .find(|w| w.name == id)
            .unwrap_or_else(|| panic!("no worker {id} in this mesh"))
    }

    fn worker_mut(&mut self, id: &str) -> &mut Process {
        self.workers
            .iter_mut()
            .find(|w| w.name == id)
            .unwrap_or_else(|| panic!("no worker {id} in this mesh"))
    }

    /// The worker's internal (hand-off) address.
    pub fn worker_addr(&self, id: &str) -> SocketAddr {
        self.worker(id)
            .addr
            .expect("a started worker has an address")
    }

    pub fn worker_pid(&self, id: &str) -> Option<u32> {
        self.worker(id).pid()
    }

    pub fn gateway_addr(&self, gateway: usize) -> SocketAddr {
        self.gateways[gateway]
            .addr
            .expect("a started gateway has an address")
    }

    /// `wss://localhost:PORT` of gateway `gateway`, followed by `path`.
    pub fn url(&self, gateway: usize, path: &str) -> String {
        format!(
            "wss://localhost:{}{path}",
            self.gateway_addr(gateway).port()
        )
    }

    /// The dev state dir (`ca.pem`, `jwt.secret`, `api.key`, `identity.secret`).
    pub fn state_dir(&self) -> &Path {
        &self.state.dir
    }

    /// The mesh's temporary dir: configs and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca_pem(&self) -> &[u8] {
        &self.state.ca_pem
    }

    /// A token for `user` with these scope patterns, valid for an hour.
    pub fn token(&self, user: &str, sub: &[&str], publish: &[&str]) -> String {
        let claims = serde_json::json!({
            "sub": user,
            "exp": now() + 3600.0,
            "iat": now(),
            "scope": {"sub": sub, "pub": publish},
        });
        let key = jsonwebtoken::EncodingKey::from_secret(self.state.jwt_secret.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("claims sign")
    }

    /// Options for `path` on gateway 0, trusting the mesh's CA, token in the header.
    pub fn connect_options(&self, path: &str, token: &str) -> ConnectOptions {
        self.gateway_options(0, path, token)
    }

    /// Options for `path` on gateway `gateway`.
    pub fn gateway_options(&self, gateway: usize, path: &str, token: &str) -> ConnectOptions {
        let mut options =
            ConnectOptions::new(self.url(gateway, path)).token(token, TokenVia::Header);
        options.tls = TlsTrust::CaPem(self.state.ca_pem.clone());
        options
    }

    /// The HTTP API of gateway `gateway`, with the mesh's API key.
    pub fn api(&self, gateway: usize) -> Api {
        Api::new(
            self.gateway_addr(gateway),
            &self.state.ca_pem,
            Some(self.state.api_key.clone()),
        )
    }

    /// SIGKILL: the worker dies with its sockets, no drain, no withdrawal.
    pub fn kill_worker(&mut self, id: &str) {
        self.worker_mut(id).kill();
    }

    /// SIGTERM, then waits for the exit (the worker drains first). Panics when it
    /// does not exit within [`TERM_TIMEOUT`].
    pub async fn term_worker(&mut self, id: &str) -> ExitStatus {
        let worker = self.worker_mut(id);
        match worker.terminate(TERM_TIMEOUT).await {
            Some(status) => status,
            None => panic!(
                "worker {id} did not exit within {TERM_TIMEOUT:?} of SIGTERM; its log:\n{}",
                worker.tail(TAIL_LINES)
            ),
        }
    }

    /// SIGSTOP: the worker holds its sockets and answers nothing.
    pub fn pause_worker(&mut self, id: &str) {
        self.worker_mut(id).pause();
    }

    /// SIGCONT after [`pause_worker`](Self::pause_worker).
    pub fn resume_worker(&mut self, id: &str) {
        self.worker_mut(id).resume();
    }

    /// Whether the worker process is running (not killed, not exited).
    pub fn worker_running(&mut self, id: &str) -> bool {
        self.worker_mut(id).is_running()
    }

    /// Starts a stopped or killed worker again with the same config and port, and
    /// waits until every gateway routes to it. A running worker is killed first.
    pub async fn restart_worker(&mut self, id: &str) {
        let (binary, log) = (self.binary.clone(), self.options.log.clone());
        let i = self
            .workers
            .iter()
            .position(|w| w.name == id)
            .unwrap_or_else(|| panic!("no worker {id} in this mesh"));
        self.workers[i].kill();
        self.workers[i].spawn(&binary, &log);
        self.learn_worker_addr(i).await;
        self.wait_routable(id).await;
    }

    /// A crash and its replacement, as an orchestrator would do it: SIGKILL of worker
    /// `id`, `down` of absence, then the same worker started again on its port. Returns
    /// once every gateway routes to it again, with how long it was away.
    pub async fn crash_worker(&mut self, id: &str, down: Duration) -> Duration {
        let killed = Instant::now();
        self.kill_worker(id);
        sleep(down).await;
        self.restart_worker(id).await;
        killed.elapsed()
    }

    /// SIGKILL of gateway `gateway`.
    pub fn kill_gateway(&mut self, gateway: usize) {
        self.gateways[gateway].kill();
    }

    /// Starts gateway `gateway` again on its port (killing it first if it runs), and
    /// waits until it routes to every running worker.
    pub async fn restart_gateway(&mut self, gateway: usize) {
        let (binary, log) = (self.binary.clone(), self.options.log.clone());
        self.gateways[gateway].kill();
        self.gateways[gateway].spawn(&binary, &log);
        self.learn_gateway_addr(gateway).await;
        let running: Vec<String> = self
            .workers
            .iter_mut()
            .filter_map(|w| w.is_running().then(|| w.name.clone()))
            .collect();
        for id in running {
            self.wait_routable_via(gateway, &id).await;
        }
    }

    /// The worker's log over all its runs, with the kit's notes (start, kill, exit).
    pub fn worker_log(&self, id: &str) -> String {
        self.worker(id).log_text()
    }

    pub fn gateway_log(&self, gateway: usize) -> String {
        self.gateways[gateway].log_text()
    }

    /// The last [`TAIL_LINES`] of every process' log.
    pub fn log_tails(&self) -> String {
        self.gateways
            .iter()
            .chain(&self.workers)
            .map(|p| {
                format!(
                    "--- {} ({}) ---\n{}",
                    p.name,
                    p.log.display(),
                    p.tail(TAIL_LINES)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until every running gateway places a sticky connection on worker `id`.
    pub async fn wait_routable(&self, id: &str) {
        for gateway in 0..self.gateways.len() {
            if self.gateways[gateway].pid().is_some() {
                self.wait_routable_via(gateway, id).await;
            }
        }
    }

    async fn wait_routable_via(&self, gateway: usize, id: &str) {
        let deadline = Instant::now() + ROUTABLE_TIMEOUT;
        let last = loop {
            match self.probe(gateway, id).await {
                Ok(()) => return,
                Err(why) if Instant::now() >= deadline => break why,
                Err(_) => sleep(POLL).await,
            }
        };
        panic!(
            "gateway{gateway} did not route to {id} within {ROUTABLE_TIMEOUT:?} (last: {last}); the logs:\n{}",
            self.log_tails()
        );
    }

    /// One sticky connection to `/ws/<id>/probe`: `Ok` when its `welcome` names `id`.
    async fn probe(&self, gateway: usize, id: &str) -> Result<(), String> {
        let token = self.token("probe", &[], &[]);
        let mut options = self.gateway_options(gateway, &format!("/ws/{id}/probe"), &token);
        options.connect_timeout = PROBE_WAIT;
        options.upgrade_timeout = PROBE_WAIT;
        let mut conn = timeout(PROBE_WAIT * 2, Connection::connect(&options))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let welcome = match conn.recv_timeout(PROBE_WAIT).await {
            Ok(Incoming::Frame(frame)) => Welcome::from_frame(frame),
            Ok(Incoming::Closed { code, .. }) => return Err(format!("closed with {code:?}")),
            Err(e) => return Err(format!("no welcome: {e}")),
        };
        let _ = timeout(PROBE_WAIT, conn.close(1000)).await;
        match welcome {
            Some(w) if w.worker == id => Ok(()),
            Some(w) => Err(format!("placed on {} instead", w.worker)),
            None => Err("first frame is not welcome".into()),
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "mesh in {} failed; the logs' tails:\n{}",
                self.dir.path().display(),
                self.log_tails()
            );
        }
        for process in self.gateways.iter_mut().chain(self.workers.iter_mut()) {
            process.kill();
        }
    }
}

/// Creates the dev state once with `switchyard token --state-dir` and reads it.
fn make_state(binary: &Path, dir: &Path) -> State {
    let out = Command::new(binary)
        .args(["token", "--user", "x", "--state-dir"])
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
    assert!(
        out.status.success(),
        "switchyard token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| {
        std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("read state file {name}: {e}"))
    };
    let line = |name: &str| {
        String::from_utf8_lossy(&read(name))
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    State {
        dir: dir.to_path_buf(),
        ca_pem: read("ca.pem"),
        jwt_secret: line("jwt.secret"),
        api_key: line("api.key"),
    }
}
