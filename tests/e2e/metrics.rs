//! The admin listener: a known workload through a stack with two workers, then
//! `/metrics` must count it exactly, and `/healthz` and `/readyz` answer.

use std::time::Duration;

use switchyard_testkit::{metric_sum, Stack, WAIT};

use crate::{next_msg, publish, subscribe};

const ROOM: &str = "metrics.room";
const MESSAGES: u64 = 5;

async fn stack() -> Stack {
    Stack::start_with(|o| {
        o.workers = 2;
        o.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

/// Scrapes until `check` holds (counters land right after the socket write that a client
/// may already have read), or fails with the last scrape.
async fn scrape_until(stack: &Stack, check: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, text) = stack.admin_get("/metrics").await;
        assert_eq!(status, 200);
        if check(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never matched:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_count_a_known_workload() {
    let stack = stack().await;
    let token = stack.token("alice", &["metrics.>"], &["metrics.>"]);
    // Two subscribers on w1, one on w2: every message crosses to both workers.
    let (mut a, wa) = stack.connect_path("/ws/w1/x", &token).await;
    let (mut b, wb) = stack.connect_path("/ws/w1/y", &token).await;
    let (mut c, wc) = stack.connect_path("/ws/w2/z", &token).await;
    // The publisher is not subscribed (its acks and messages would interleave).
    let (mut p, wp) = stack.connect_path("/ws/w2/p", &token).await;
    assert_eq!(
        [wa.worker, wb.worker, wc.worker, wp.worker].map(|w| w == "w1"),
        [true, true, false, false]
    );
    for conn in [&mut a, &mut b, &mut c] {
        subscribe(conn, ROOM).await;
    }
    for i in 0..MESSAGES {
        publish(&mut p, ROOM, &format!(r#"{{"n":{i}}}"#), &format!("p{i}")).await;
    }
    for conn in [&mut a, &mut b, &mut c] {
        for _ in 0..MESSAGES {
            next_msg(conn, ROOM).await;
        }
    }
    let deliveries = 3 * MESSAGES;
    let text = scrape_until(&stack, |t| {
        metric_sum(t, "switchyard_worker_deliveries_total", &[]) == deliveries as f64
    })
    .await;
    let sum = |name: &str, labels: &[(&str, &str)]| metric_sum(&text, name, labels);
    let w1 = [("worker", "w1")];
    let w2 = [("worker", "w2")];

    assert_eq!(sum("switchyard_worker_connections", &w1), 2.0);
    assert_eq!(sum("switchyard_worker_connections", &w2), 2.0);
    assert_eq!(
        sum("switchyard_gateway_upgrades_total", &[("outcome", "ok")]),
        4.0
    );
    assert_eq!(
        sum("switchyard_gateway_connections_accepted_total", &[]),
        4.0
    );
    assert_eq!(
        sum("switchyard_worker_frames_in_total", &[("op", "sub")]),
        3.0
    );
    assert_eq!(
        sum("switchyard_worker_frames_in_total", &[("op", "pub")]),
        MESSAGES as f64
    );
    assert_eq!(
        sum("switchyard_worker_publishes_total", &w2),
        MESSAGES as f64
    );
    assert_eq!(
        sum("switchyard_worker_publish_acks_total", &w2),
        MESSAGES as f64
    );
    assert_eq!(
        sum("switchyard_worker_frames_out_total", &[("op", "ack")]),
        MESSAGES as f64
    );
    assert_eq!(
        sum("switchyard_worker_frames_out_total", &[("op", "welcome")]),
        4.0
    );
    assert_eq!(
        sum("switchyard_worker_frames_out_total", &[("op", "other")]),
        0.0
    );
    // One fan-out per message per worker, one delivery per message per subscriber.
    assert_eq!(
        sum("switchyard_worker_fanout_messages_total", &w1),
        MESSAGES as f64
    );
    assert_eq!(
        sum("switchyard_worker_fanout_messages_total", &w2),
        MESSAGES as f64
    );
    assert_eq!(
        sum("switchyard_worker_deliveries_total", &w1),
        2.0 * MESSAGES as f64
    );
    assert_eq!(
        sum("switchyard_worker_deliveries_total", &w2),
        MESSAGES as f64
    );
    assert_eq!(
        sum("switchyard_worker_frames_out_total", &[("op", "msg")]),
        deliveries as f64
    );
    // The fan-out histogram saw every delivery, and each was fast (same process).
    for (worker, n) in [(&w1, 2 * MESSAGES), (&w2, MESSAGES)] {
        assert_eq!(
            sum("switchyard_fanout_latency_seconds_count", worker),
            n as f64
        );
        let inf = [worker[0], ("le", "+Inf")];
        assert_eq!(
            sum("switchyard_fanout_latency_seconds_bucket", &inf),
            n as f64
        );
        let within_1s = [worker[0], ("le", "1")];
        assert_eq!(
            sum("switchyard_fanout_latency_seconds_bucket", &within_1s),
            n as f64
        );
    }
    assert!(sum("switchyard_worker_received_bytes_total", &[]) > 0.0);
    assert!(sum("switchyard_worker_sent_bytes_total", &[]) > 0.0);
    assert_eq!(sum("switchyard_gateway_routable_workers", &[]), 2.0);
    assert_eq!(sum("switchyard_worker_slow_consumer_drops_total", &[]), 0.0);
    // No user or room ids as label values.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(!line.contains("alice") && !line.contains(ROOM), "{line}");
    }

    assert_eq!(stack.admin_get("/healthz").await.0, 200);
    assert_eq!(stack.admin_get("/readyz").await.0, 200);
    assert_eq!(stack.admin_get("/nope").await.0, 404);
    check_with_promtool(&text);
    drop((a, b, c, p));
    stack.dev.drain(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn openmetrics_is_served_when_asked_for() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stack = stack().await;
    let mut tcp = tokio::net::TcpStream::connect(stack.dev.admin_addr.unwrap())
        .await
        .unwrap();
    tcp.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.contains("application/openmetrics-text"), "{out}");
    assert!(
        out.contains("# TYPE switchyard_worker_deliveries counter"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("# EOF"), "{out}");
}

/// `promtool check metrics` lints the scrape (names, units, help) when it is installed.
fn check_with_promtool(text: &str) {
    use std::io::Write as _;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not found: the scrape is not linted");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
