//! The TOML files of a [`Mesh`](super::Mesh)'s processes (README "Configuration
//! reference"): TLS, tokens and the API key from the dev state dir, `[nats]` from the
//! options, and no `[[workers]]`: gateways learn workers from the registry.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::MeshOptions;

/// Upgrades per second per IP: every test client comes from 127.0.0.1.
const UPGRADES_PER_SEC: u32 = 100_000;

/// A worker's file; `addr` is its port once known (`None`: port 0).
pub(crate) fn worker(
    options: &MeshOptions,
    state: &Path,
    id: &str,
    addr: Option<SocketAddr>,
) -> String {
    let listen = addr.map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
    let mut text = format!(
        "[worker]\nid = {}\nlisten = {}\nidentity_secret_file = {}\n",
        quote(id),
        quote(&listen),
        path(state, "identity.secret"),
    );
    if !options
        .worker_settings
        .iter()
        .any(|line| line.trim_start().starts_with("announce_every"))
    {
        text.push_str(&format!(
            "announce_every = {}\n",
            duration((options.registry_ttl / 3).max(Duration::from_millis(100)))
        ));
    }
    for line in &options.worker_settings {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!(
        "[auth]\nhs256_secret_file = {}\n",
        path(state, "jwt.secret")
    ));
    text.push_str(&nats(options));
    text
}

/// A gateway's file; `addr` is its address once known (`None`: port 0).
pub(crate) fn gateway(options: &MeshOptions, state: &Path, addr: Option<SocketAddr>) -> String {
    let listen = addr.map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
    let mut text = format!(
        "listen = {}\nidentity_secret_file = {}\n",
        quote(&listen),
        path(state, "identity.secret")
    );
    for line in &options.gateway_settings {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!(
        "[tls]\ncert = {}\nkey = {}\n[auth]\nhs256_secret_file = {}\n[api]\nkey_file = {}\n\
         [limits]\nmax_upgrades_per_sec_per_ip = {UPGRADES_PER_SEC}\nupgrade_burst = {UPGRADES_PER_SEC}\n",
        path(state, "server.pem"),
        path(state, "server.key"),
        path(state, "jwt.secret"),
        path(state, "api.key"),
    ));
    text.push_str(&nats(options));
    text
}

fn nats(options: &MeshOptions) -> String {
    let mut text = format!(
        "[nats]\nurl = {}\nreplicas = {}\nregistry_ttl = {}\n",
        quote(&options.nats_url),
        options.replicas,
        duration(options.registry_ttl)
    );
    for line in &options.nats_settings {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// A TOML basic string (JSON string escapes are valid TOML).
fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

fn path(dir: &Path, name: &str) -> String {
    quote(&dir.join(name).display().to_string())
}

fn duration(d: Duration) -> String {
    quote(&format!("{}ms", d.as_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_name_the_state_and_nats_and_announce_within_the_ttl() {
        let options = MeshOptions::new("nats://127.0.0.1:1,nats://127.0.0.1:2")
            .replicas(3)
            .nats_setting("presence_ttl = \"3s\"")
            .worker_setting("drain_window = \"1s\"");
        let worker = worker(&options, Path::new("/s"), "w2", None);
        assert!(
            worker.contains("id = \"w2\"\nlisten = \"127.0.0.1:0\""),
            "{worker}"
        );
        assert!(worker.contains("announce_every = \"1000ms\""), "{worker}");
        assert!(worker.contains("drain_window = \"1s\"\n[auth]"), "{worker}");
        assert!(worker.contains("replicas = 3\nregistry_ttl = \"3000ms\"\npresence_ttl"));
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let gateway = gateway(&options, Path::new("/s"), Some(addr));
        assert!(
            gateway.starts_with("listen = \"127.0.0.1:4000\""),
            "{gateway}"
        );
        assert!(
            gateway.contains("[api]\nkey_file = \"/s/api.key\""),
            "{gateway}"
        );
        assert!(!gateway.contains("[[workers]]"));
        let custom = MeshOptions::new("nats://x:1").worker_setting("announce_every = \"2s\"");
        assert_eq!(
            super::worker(&custom, Path::new("/s"), "w1", None)
                .matches("announce_every")
                .count(),
            1
        );
    }
}
