//! The shipped `observability/` files: Prometheus' config and rules pass `promtool`,
//! and every query of the Grafana dashboard and of the rules parses and names only
//! metrics a running stack exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use switchyard_testkit::{NatsServer, Stack};

fn observability() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("observability")
}

fn promtool() -> Option<PathBuf> {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    if !found {
        eprintln!("promtool not found (Debian: apt-get install prometheus): skipping its checks");
    }
    found.then(|| PathBuf::from("promtool"))
}

fn promtool_check(promtool: &Path, what: &str, file: &Path) {
    let out = Command::new(promtool)
        .args(["check", what])
        .arg(file)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check {what} {}:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_config_and_rules_pass_promtool() {
    let Some(promtool) = promtool() else { return };
    let dir = observability().join("prometheus");
    promtool_check(&promtool, "config", &dir.join("prometheus.yml"));
    promtool_check(&promtool, "rules", &dir.join("rules/switchyard.rules.yml"));
}

/// Every `(panel title, expr)` of the dashboard.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = observability().join("grafana/dashboards/switchyard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("dashboard is JSON");
    let mut ids = BTreeSet::new();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "panel ids are unique"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "prometheus",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has a query", panel["title"]);
        for target in targets {
            queries.push((
                panel["title"].as_str().unwrap().to_string(),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    queries
}

/// The metric names a query reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("switchyard_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // `switchyard:...` recording rules are not exported metrics.
        if !rest[..at].ends_with(':') {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn dashboard_queries_parse() {
    let Some(promtool) = promtool() else { return };
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in dashboard_queries().iter().enumerate() {
        let expr = expr.replace("$__rate_interval", "1m");
        rules.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard.rules.yml");
    std::fs::write(&file, rules).unwrap();
    promtool_check(&promtool, "rules", &file);
}

#[tokio::test]
async fn dashboards_and_rules_name_only_exported_metrics() {
    // A stack on NATS exports every family: gateway, workers and the NATS engine's.
    let nats = NatsServer::start().await;
    let stack = Stack::start_nats(&nats.url(), "o", |o| {
        o.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let (status, text) = stack.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let mut exported = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        exported.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                exported.insert(format!("{name}{suffix}"));
            }
        }
    }
    let rules =
        std::fs::read_to_string(observability().join("prometheus/rules/switchyard.rules.yml"))
            .unwrap();
    let mut queries = dashboard_queries();
    queries.push(("alert rules".into(), rules));
    for (title, expr) in &queries {
        let names = metric_names(expr);
        assert!(
            !names.is_empty() || title == "alert rules",
            "{title}: {expr}"
        );
        for name in names {
            assert!(exported.contains(&name), "{title}: {name} is not exported");
        }
    }
    stack.dev.stop().await;
}
