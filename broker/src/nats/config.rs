//! Configuration of the NATS engine: the `[nats]` table of a role's TOML.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
pub const DEFAULT_STREAM: &str = "SY_ROOMS";
pub const DEFAULT_MAX_MSGS_PER_SUBJECT: i64 = 1000;
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
pub const DEFAULT_MAX_MESSAGE_BYTES: i32 = 1024 * 1024;
pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(30);
pub const DEFAULT_REGISTRY_TTL: Duration = Duration::from_secs(10);
pub const DEFAULT_REVOCATION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
pub const DEFAULT_MAX_ACK_INFLIGHT: usize = 4096;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a starting process keeps trying to set the NATS side up (a fresh cluster
/// elects its leaders while every pod starts at once).
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    File,
    Memory,
}

/// TLS to the NATS servers; with `cert` and `key` the client authenticates (mTLS).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsTls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URLs, comma-separated (`nats://a:4222,nats://b:4222`).
    pub url: String,
    /// Client name shown by the server (`switchyard-w1`).
    pub name: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls: Option<NatsTls>,
    pub stream: String,
    /// Stream replicas: 3 in production (R3), 1 for a single server.
    pub replicas: usize,
    pub storage: Storage,
    /// Messages retained per room.
    pub max_msgs_per_subject: i64,
    /// Age after which messages are dropped.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Window in which a repeated `Nats-Msg-Id` is stored once.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    pub max_message_bytes: i32,
    /// A presence entry not refreshed this long is gone.
    #[serde(with = "humantime_serde")]
    pub presence_ttl: Duration,
    /// A registry entry not refreshed this long is gone.
    #[serde(with = "humantime_serde")]
    pub registry_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub revocation_ttl: Duration,
    /// JetStream publishes awaiting their ack at once; more wait (backpressure).
    pub max_ack_inflight: usize,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub setup_timeout: Duration,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: DEFAULT_URL.into(),
            name: None,
            user: None,
            password: None,
            tls: None,
            stream: DEFAULT_STREAM.into(),
            replicas: 1,
            storage: Storage::File,
            max_msgs_per_subject: DEFAULT_MAX_MSGS_PER_SUBJECT,
            max_age: DEFAULT_MAX_AGE,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            presence_ttl: DEFAULT_PRESENCE_TTL,
            registry_ttl: DEFAULT_REGISTRY_TTL,
            revocation_ttl: DEFAULT_REVOCATION_TTL,
            max_ack_inflight: DEFAULT_MAX_ACK_INFLIGHT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            setup_timeout: DEFAULT_SETUP_TIMEOUT,
        }
    }
}

impl NatsConfig {
    /// Every problem, each naming its key under `prefix` (`nats.`).
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, what: &str| {
            if !ok {
                problems.push(format!("{prefix}{key}: {what}"));
            }
        };
        check(
            self.url.split(',').all(|u| {
                let u = u.trim();
                !u.is_empty()
                    && (u.starts_with("nats://") || u.starts_with("tls://") || !u.contains("://"))
            }),
            "url",
            "must be nats:// or tls:// URLs, comma-separated",
        );
        check(
            !self.stream.is_empty()
                && self
                    .stream
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "stream",
            "must be a stream name of A-Z a-z 0-9 _ -",
        );
        check(
            (1..=5).contains(&self.replicas),
            "replicas",
            "must be between 1 and 5",
        );
        check(
            self.max_msgs_per_subject > 0,
            "max_msgs_per_subject",
            "must be greater than 0",
        );
        check(!self.max_age.is_zero(), "max_age", "must be greater than 0");
        check(
            !self.duplicate_window.is_zero() && self.duplicate_window <= self.max_age,
            "duplicate_window",
            "must be greater than 0 and at most max_age",
        );
        check(
            self.max_message_bytes > 0,
            "max_message_bytes",
            "must be greater than 0",
        );
        check(
            self.presence_ttl >= Duration::from_secs(1),
            "presence_ttl",
            "must be at least 1s",
        );
        check(
            self.registry_ttl >= Duration::from_secs(1),
            "registry_ttl",
            "must be at least 1s",
        );
        check(
            self.max_ack_inflight > 0,
            "max_ack_inflight",
            "must be greater than 0",
        );
        check(
            !self.request_timeout.is_zero(),
            "request_timeout",
            "must be greater than 0",
        );
        check(
            self.user.is_some() == self.password.is_some(),
            "user",
            "user and password go together",
        );
        if let Some(tls) = &self.tls {
            check(tls.ca.is_file(), "tls.ca", "is not a readable file");
            check(
                tls.cert.is_some() == tls.key.is_some(),
                "tls.cert",
                "cert and key go together",
            );
            for (key, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if let Some(path) = path {
                    check(path.is_file(), key, "is not a readable file");
                }
            }
        }
        problems
    }

    /// How often a holder refreshes an entry with this TTL: three times per TTL.
    pub fn refresh_every(ttl: Duration) -> Duration {
        ttl / 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_problems_name_keys() {
        assert!(NatsConfig::default().problems("nats.").is_empty());
        let bad = NatsConfig {
            replicas: 0,
            url: "http://x".into(),
            user: Some("u".into()),
            ..NatsConfig::default()
        };
        let keys: Vec<String> = bad
            .problems("nats.")
            .iter()
            .map(|p| p.split(':').next().unwrap().to_string())
            .collect();
        assert_eq!(keys, ["nats.url", "nats.replicas", "nats.user"]);
    }
}
