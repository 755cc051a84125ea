//! The `switchyard` binary as a user runs it: `token`, `--check-config`, and a gateway
//! process handing connections to two worker processes over the signed splice.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchyard_client::{ConnectOptions, Connection, TlsTrust, TokenVia};
use switchyard_testkit::expect;

use crate::{next_msg, publish, subscribe};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn token(state: &Path, user: &str, sub: &str, publish: &str) -> String {
    let out = Command::new(BIN)
        .args([
            "token",
            "--user",
            user,
            "--sub",
            sub,
            "--pub",
            publish,
            "--ttl",
            "10m",
            "--state-dir",
        ])
        .arg(state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn configs(dir: &Path, state: &Path, gateway_port: u16, worker_ports: [u16; 2]) {
    let s = state.display();
    std::fs::write(
        dir.join("gateway.toml"),
        format!(
            "listen = \"127.0.0.1:{gateway_port}\"\nidentity_secret_file = \"{s}/identity.secret\"\n\
             [tls]\ncert = \"{s}/server.pem\"\nkey = \"{s}/server.key\"\n\
             [auth]\nhs256_secret_file = \"{s}/jwt.secret\"\n\
             [[workers]]\nid = \"w1\"\naddress = \"127.0.0.1:{}\"\n\
             [[workers]]\nid = \"w2\"\naddress = \"127.0.0.1:{}\"\n",
            worker_ports[0], worker_ports[1]
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("worker.toml"),
        format!(
            "[worker]\nid = \"w1\"\nlisten = \"127.0.0.1:{}\"\nidentity_secret_file = \"{s}/identity.secret\"\n\
             [auth]\nhs256_secret_file = \"{s}/jwt.secret\"\n",
            worker_ports[0]
        ),
    )
    .unwrap();
}

async fn wait_until_listening(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {port}");
}

#[test]
fn check_config_names_every_bad_key_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:1\"\nhandshake_timeout = \"soon\"\n[auth]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["gateway", "--check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("handshake_timeout"), "{err}");

    std::fs::write(&path, "listen = \"127.0.0.1:1\"\n[tls]\ncert = \"/nope.pem\"\nkey = \"/nope.key\"\n[auth]\nhs256_secret_file = \"/nope\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["gateway", "--check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["tls.cert", "tls.key", "auth.hs256_secret_file"] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }

    let worker = dir.path().join("worker.toml");
    std::fs::write(&worker, "[worker]\nid = \"bad id\"\nmax_connections = 0\n[auth]\nhs256_secret_file = \"/dev/null\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["worker", "--check-config", "--config"])
        .arg(&worker)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("worker.id") && err.contains("worker.max_connections"),
        "{err}"
    );
}

#[test]
fn the_shipped_example_configs_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".switchyard/dev");
    token(&state, "x", "a", "a");
    for (role, file) in [("gateway", "gateway.toml"), ("worker", "worker.toml")] {
        let config = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/config")
            .join(file);
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .args([role, "--check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn a_gateway_process_splices_clients_to_worker_processes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (gateway_port, w1, w2) = (free_port(), free_port(), free_port());
    let alice = token(&state, "alice", "lobby", "lobby");
    configs(dir.path(), &state, gateway_port, [w1, w2]);
    let quiet = || Command::new(BIN);
    let _worker1 = Killed(
        quiet()
            .args(["worker", "--config"])
            .arg(dir.path().join("worker.toml"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let _worker2 = Killed(
        quiet()
            .args(["worker", "--config"])
            .arg(dir.path().join("worker.toml"))
            .env("SWITCHYARD__WORKER__ID", "w2")
            .env("SWITCHYARD__WORKER__LISTEN", format!("127.0.0.1:{w2}"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut gateway = Killed(
        quiet()
            .args(["gateway", "--config"])
            .arg(dir.path().join("gateway.toml"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for port in [w1, w2, gateway_port] {
        wait_until_listening(port).await;
    }
    let ca = std::fs::read(state.join("ca.pem")).unwrap();
    let connect = |path: &str| {
        let mut options = ConnectOptions::new(format!("wss://localhost:{gateway_port}{path}"))
            .token(&alice, TokenVia::Header);
        options.tls = TlsTrust::CaPem(ca.clone());
        options
    };
    let mut on_w2 = Connection::connect(&connect("/ws/w2/x")).await.unwrap();
    assert_eq!(expect::welcome(&mut on_w2).await.worker, "w2");
    let mut conn = Connection::connect(&connect("/ws/w1/x")).await.unwrap();
    let welcome = expect::welcome(&mut conn).await;
    assert_eq!(welcome.worker, "w1");
    subscribe(&mut conn, "lobby").await;
    let seq = publish(&mut conn, "lobby", r#"{"via":"splice"}"#, "1").await;
    assert_eq!(
        next_msg(&mut conn, "lobby").await,
        (Some(seq), "alice".into(), r#"{"via":"splice"}"#.into())
    );
    // A lost socket resumes through the gateway to the same worker process.
    drop(conn);
    let mut again = Connection::connect(&connect(&welcome.resume_path()))
        .await
        .unwrap();
    let resumed = expect::welcome(&mut again).await;
    assert!(resumed.resumed);
    assert_eq!(resumed.worker, "w1");

    // Stopped, the gateway ends the splices it holds and exits: it waits for them.
    let term = Command::new("kill")
        .args(["-TERM", &gateway.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exited = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(status) = gateway.0.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the gateway exits with a splice open");
    assert!(exited.success(), "the gateway exited with {exited}");
    drop(again);
}
