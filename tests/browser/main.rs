//! The browser client and the demo page in a real browser: headless Chromium (Debian's
//! `chromium`) driven by playwright-core from `client/js/e2e/chat.mjs`, against a mesh of
//! real processes: two `switchyard worker` processes on a real nats-server
//! (`testkit::mesh`), behind a gateway that serves the demo (`gateway`).
//!
//! Two pages (alice on one worker, bob on the other) chat through the gateway; the test
//! then SIGKILLs the worker holding alice's socket while bob keeps sending, and the
//! script checks that alice's page reconnects on the other worker and shows every
//! message exactly once, in order, the same list as bob's page. A screenshot of the demo
//! is saved to `target/artifacts/demo.png` (bob's page beside it as `demo-bob.png`).
//!
//! The two halves speak in lines: the script prints JSON events (`placed`, `kill`,
//! `done`, `fail`) and the test answers `kill` with `killed <worker>` on its stdin.
//!
//! Skips, saying so, only when Chromium cannot be found (`./scripts/test.sh` installs
//! it); a missing `node` or `npm ci` is a failure. `endpoints` checks the demo's HTTP
//! side (page, module, tokens, dev mode only) without a browser.

mod endpoints;
mod gateway;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use switchyard_broker::nats::NatsConfig;
use switchyard_testkit::mesh::{Mesh, MeshOptions};
use switchyard_testkit::NatsServer;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::Command;
use tokio::time::{timeout_at, Instant};

use gateway::DemoGateway;

/// The whole browser scenario, start to screenshot.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_switchyard"))
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$CHROMIUM`, else Debian's `/usr/bin/chromium`, else `chromium` on `PATH`.
fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM").map(PathBuf::from) {
        return path.is_file().then_some(path);
    }
    let debian = PathBuf::from("/usr/bin/chromium");
    if debian.is_file() {
        return Some(debian);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
}

/// Where test artifacts go: `target/artifacts` (or under `$CARGO_TARGET_DIR`).
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("artifacts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_chat_and_a_page_survives_its_worker_being_killed() {
    let Some(chromium) = find_chromium() else {
        println!(
            "SKIPPED browser e2e: Chromium not found ($CHROMIUM, /usr/bin/chromium, chromium on PATH); \
             ./scripts/test.sh installs Debian's chromium"
        );
        return;
    };
    let js = workspace().join("client/js");
    assert!(
        js.join("node_modules/playwright-core").is_dir(),
        "client/js/node_modules/playwright-core is missing: run `npm ci` in client/js (./scripts/test.sh does)"
    );

    let nats = NatsServer::start().await;
    let options = MeshOptions::new(nats.url()).workers(2);
    let nats_config = NatsConfig {
        url: options.nats_url.clone(),
        replicas: options.replicas,
        registry_ttl: options.registry_ttl,
        ..NatsConfig::default()
    };
    let mut mesh = Mesh::start(binary(), options).await;
    let demo = DemoGateway::start(&mesh, nats_config).await;
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).expect("create target/artifacts");
    let screenshot = artifacts.join("demo.png");
    let workers = mesh.worker_ids().join(",");

    let mut child = Command::new("node")
        .arg("e2e/chat.mjs")
        .args(["--base", &demo.base_url(), "--workers", &workers])
        .arg("--screenshot")
        .arg(&screenshot)
        .current_dir(&js)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node (Node.js 18 or later must be installed)");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut events = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    // The script's progress, shown with the test's output (and on failure).
    let mut progress = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let echo = tokio::spawn(async move {
        while let Ok(Some(line)) = progress.next_line().await {
            eprintln!("{line}");
        }
    });

    let deadline = Instant::now() + SCENARIO_TIMEOUT;
    let mut done: Option<Value> = None;
    let mut failure: Option<String> = None;
    let mut killed: Option<String> = None;
    loop {
        let line = match timeout_at(deadline, events.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(_) => break,
            Err(_) => {
                failure = Some(format!(
                    "the browser scenario took longer than {SCENARIO_TIMEOUT:?}"
                ));
                break;
            }
        };
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            eprintln!("chat.mjs: {line}");
            continue;
        };
        match event["event"].as_str() {
            Some("placed") => println!("[browser] alice on {}, bob on {}", event["a"], event["b"]),
            Some("kill") => {
                let worker = event["worker"]
                    .as_str()
                    .expect("kill names a worker")
                    .to_string();
                assert!(
                    mesh.worker_ids().contains(&worker),
                    "page A claims worker {worker:?}, not one of {:?}",
                    mesh.worker_ids()
                );
                mesh.kill_worker(&worker);
                println!("[browser] killed {worker} (SIGKILL), the worker holding alice's socket");
                stdin
                    .write_all(format!("killed {worker}\n").as_bytes())
                    .await
                    .expect("answer the script");
                stdin.flush().await.expect("answer the script");
                killed = Some(worker);
            }
            Some("done") => done = Some(event),
            Some("fail") => failure = Some(event["error"].as_str().unwrap_or("?").to_string()),
            _ => eprintln!("chat.mjs: {line}"),
        }
    }
    drop(stdin);
    let status = timeout_at(deadline + Duration::from_secs(10), child.wait()).await;
    let _ = echo.await;
    demo.stop().await;
    if let Some(failure) = failure {
        panic!(
            "the browser scenario failed: {failure} (screenshots in {})",
            artifacts.display()
        );
    }
    let status = status
        .expect("the script exits")
        .expect("wait for the script");
    assert!(status.success(), "chat.mjs exited with {status}");
    let done = done.expect("the script reported `done`");
    let killed = killed.expect("the script asked for a kill");
    assert_eq!(done["killed"].as_str(), Some(killed.as_str()));
    assert_ne!(done["back_on"].as_str(), Some(killed.as_str()));
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    println!(
        "[browser] alice's page lost its socket (close code {}) and came back on {}; the store replayed the {} messages she missed (bob sent {} in all); her page shows {} messages, each once, in order, the same as bob's",
        done["close_code"], done["back_on"], done["replayed"], done["sent_by_bob"], done["messages_on_a"]
    );
    println!("[browser] screenshot saved to {}", screenshot.display());
}
