//! `switchyard worker` and `switchyard gateway` processes started from config files the
//! test writes: the keys of README's configuration reference, wired by `main.rs`. Each
//! logs to a file beside its config; killed on `Drop`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::{sleep, Instant};

/// How long a role has to connect to NATS, set up, and log its address.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const WORKER_LISTENING: &str = "worker listening for hand-offs";
pub(crate) const GATEWAY_LISTENING: &str = "gateway listening";

pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_switchyard"))
}

pub(crate) struct Role {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Role {
    /// `switchyard <role> --config <dir>/<name>.toml`, stderr to `<dir>/<name>.log`.
    pub(crate) fn spawn(role: &str, name: &str, dir: &Path, config: &str) -> Role {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).expect("write a role config");
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create a role log");
        let mut cmd = Command::new(binary());
        cmd.args([role, "--config"])
            .arg(&path)
            .env("SWITCHYARD_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("SWITCHYARD__") {
                cmd.env_remove(var);
            }
        }
        let child = cmd.spawn().expect("spawn switchyard");
        Role {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `addr=` of the first log line holding `marker`.
    pub(crate) async fn addr(&mut self, marker: &str) -> SocketAddr {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let found = self.log_text().lines().find_map(|line| {
                line.contains(marker)
                    .then(|| {
                        line.split_whitespace()
                            .find_map(|f| f.strip_prefix("addr="))
                    })
                    .flatten()
                    .and_then(|a| a.parse().ok())
            });
            if let Some(addr) = found {
                return addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}); its log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not log {marker:?} within {START_TIMEOUT:?}; its log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.name, self.log_text());
        }
    }
}

/// Creates the dev state (public CA and certificate, `jwt.secret`, `api.key`,
/// `identity.secret`) with `switchyard token --state-dir`.
pub(crate) fn dev_state(dir: &Path) {
    let out = Command::new(binary())
        .args(["token", "--user", "x", "--state-dir"])
        .arg(dir)
        .output()
        .expect("run switchyard token");
    assert!(
        out.status.success(),
        "switchyard token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Exit code and stderr of `switchyard <role> --config <file> --check-config`.
pub(crate) fn check_config(role: &str, dir: &Path, config: &str) -> (Option<i32>, String) {
    let path = dir.join(format!("check-{role}.toml"));
    std::fs::write(&path, config).expect("write a config");
    let out = Command::new(binary())
        .args([role, "--config"])
        .arg(&path)
        .arg("--check-config")
        .env("NO_COLOR", "1")
        .output()
        .expect("run switchyard");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TOML basic string.
pub(crate) fn quote(text: impl AsRef<str>) -> String {
    serde_json::to_string(text.as_ref()).expect("a string serializes")
}

pub(crate) fn path(p: impl AsRef<Path>) -> String {
    quote(p.as_ref().display().to_string())
}
