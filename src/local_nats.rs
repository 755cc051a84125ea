//! `switchyard dev --cluster`: a nats-server with JetStream started by the dev command
//! itself, on a free loopback port with its store in the state dir, stopped with it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

pub struct LocalNats {
    pub url: String,
    _child: Child,
}

/// Where Debian's package puts the server, when it is not on PATH.
const SBIN: &str = "/usr/sbin/nats-server";

impl LocalNats {
    pub async fn start(state_dir: &Path) -> anyhow::Result<LocalNats> {
        let binary = which("nats-server")
            .or_else(|| Path::new(SBIN).is_file().then(|| SBIN.into()))
            .context(
                "nats-server is not installed: apt-get install nats-server (or use --nats URL)",
            )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let store = state_dir.join("nats");
        std::fs::create_dir_all(&store)
            .with_context(|| format!("cannot create {}", store.display()))?;
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start nats-server")?;
        let url = format!("nats://127.0.0.1:{port}");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(LocalNats { url, _child: child });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        anyhow::bail!("nats-server did not listen on port {port} within 5 s")
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}
