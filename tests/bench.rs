//! `switchyard bench` end to end: a short broadcast against a dev stack (two workers,
//! TLS, memory engine) in this process; the JSON line must show deliveries and no loss.

use std::time::Duration;

use switchyard::dev::{DevOptions, DevStack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_smoke_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DevOptions::new(dir.path().to_path_buf());
    options.listen = "127.0.0.1:0".parse().unwrap();
    options.workers = 2;
    options.demo = false;
    let stack = DevStack::start(options).await.unwrap();
    let url = format!("wss://localhost:{}/ws", stack.addr.port());
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "bench",
            "broadcast",
            "--subs",
            "20",
            "--rate",
            "50",
            "--duration",
            "2s",
        ])
        .args(["--json", "--quiet", "--url", &url, "--state-dir"])
        .arg(dir.path())
        .args(["--pid", &std::process::id().to_string()])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the bench finishes within a minute")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().expect("a JSON line");
    let result: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(result["scenario"], "broadcast");
    assert_eq!(result["connect"]["ok"], 20);
    assert!(result["acked"].as_u64().unwrap() >= 90, "{result}");
    let deliveries = result["deliveries"].as_u64().unwrap();
    assert!(deliveries > 0);
    assert_eq!(deliveries, result["expected"].as_u64().unwrap(), "{result}");
    assert_eq!(result["lost"], 0, "{result}");
    assert_eq!(result["duplicates"], 0, "{result}");
    assert!(result["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    stack.stop().await;
}
