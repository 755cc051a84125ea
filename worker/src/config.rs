//! Worker configuration: the `[worker]` table of a worker's TOML file, or built in
//! memory by `switchyard dev`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use switchyard_protocol::limits;

pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// How often a worker refreshes its registry entry (below the registry's TTL).
pub const DEFAULT_ANNOUNCE_EVERY: Duration = Duration::from_secs(3);
pub const DEFAULT_OUTBOX_CAPACITY: usize = 256;
pub const DEFAULT_PUBLISH_RATE: u32 = 100;
pub const DEFAULT_PUBLISH_BURST: u32 = 200;
/// Errors (bad frames, rate limits) tolerated within [`STRIKE_WINDOW`] before 1008.
pub const DEFAULT_MAX_STRIKES: u32 = 50;
pub const STRIKE_WINDOW: Duration = Duration::from_secs(10);
pub const DEFAULT_DRAIN_WINDOW: Duration = Duration::from_secs(10);
/// How long a drain waits for its sessions to leave before the worker exits anyway.
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(30);
/// Messages read from the store per page during catch-up.
pub const DEFAULT_CATCH_UP_PAGE: usize = 500;
/// How often a room checks the store's head for a last message its live feed lost.
pub const DEFAULT_HEAD_CHECK: Duration = Duration::from_secs(30);
/// Recent frames each room with local members keeps for replays and catch-ups.
pub const DEFAULT_ROOM_WINDOW: usize = 256;
/// Most bytes the writer batches into one text frame.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 64 * 1024;

/// Durations are written with a unit, as everywhere in Switchyard: `heartbeat = "25s"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Stable id: it is the `{worker}` of sticky paths `/ws/{worker}/{conn}`.
    pub id: String,
    /// Internal listener that gateways hand connections to (absent in `dev`).
    pub listen: Option<SocketAddr>,
    /// The address gateways dial, when it is not `listen` (behind NAT, `0.0.0.0`).
    pub advertise: Option<String>,
    #[serde(with = "humantime_serde")]
    pub announce_every: Duration,
    /// File holding the HMAC secret shared with gateways, for signed identities.
    pub identity_secret_file: Option<PathBuf>,
    /// mTLS on the internal listener: gateways must present a certificate signed by
    /// `client_ca`. Without it the listener is plain TCP (signed identities only).
    pub tls: Option<ListenerTls>,
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    pub outbox_capacity: usize,
    /// Publishes per second per connection, and the burst above it.
    pub publish_rate: u32,
    pub publish_burst: u32,
    pub max_strikes: u32,
    #[serde(with = "humantime_serde")]
    pub drain_window: Duration,
    /// After SIGTERM, how long the drain waits for every session to leave (clients are
    /// told to reconnect over `drain_window`); a pod's termination grace period must
    /// exceed it.
    #[serde(with = "humantime_serde")]
    pub drain_grace: Duration,
    /// A socket write that makes no progress this long means the peer is gone. Unset,
    /// it is two heartbeats: the same rule as a silent peer, so a client that merely
    /// reads slowly is never dropped for it (PROTOCOL §4).
    #[serde(with = "humantime_serde")]
    pub write_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    pub catch_up_page: usize,
    pub room_window: usize,
    /// How often each room with local members compares the last seq it forwarded with
    /// the store's head, to fill a last message its live feed lost (a feed shows a gap
    /// only when a later message arrives).
    #[serde(with = "humantime_serde")]
    pub head_check: Duration,
    pub max_batch_bytes: usize,
    /// Deliberate faults, for chaos tests only: they make this worker wrong on purpose
    /// so that a test can show the history checker notices.
    pub fault_injection: FaultInjection,
}

/// `[worker.tls]`: the internal listener's certificate and the CA of gateway clients.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM certificate chain, leaf first: the name gateways dial must be in it.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificate(s): a hand-off without a client certificate they signed is
    /// refused during the TLS handshake.
    pub client_ca: PathBuf,
}

/// Ways to break a worker on purpose (chaos tests prove the checker catches them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultInjection {
    /// Deliver past gaps instead of filling them from the store.
    pub skip_gap_fill: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            id: "w1".into(),
            listen: None,
            advertise: None,
            announce_every: DEFAULT_ANNOUNCE_EVERY,
            identity_secret_file: None,
            tls: None,
            heartbeat: limits::DEFAULT_HEARTBEAT,
            session_ttl: limits::DEFAULT_SESSION_TTL,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_frame_bytes: limits::DEFAULT_MAX_FRAME_BYTES,
            outbox_capacity: DEFAULT_OUTBOX_CAPACITY,
            publish_rate: DEFAULT_PUBLISH_RATE,
            publish_burst: DEFAULT_PUBLISH_BURST,
            max_strikes: DEFAULT_MAX_STRIKES,
            drain_window: DEFAULT_DRAIN_WINDOW,
            drain_grace: DEFAULT_DRAIN_GRACE,
            write_timeout: None,
            leeway: limits::DEFAULT_LEEWAY,
            catch_up_page: DEFAULT_CATCH_UP_PAGE,
            room_window: DEFAULT_ROOM_WINDOW,
            head_check: DEFAULT_HEAD_CHECK,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            fault_injection: FaultInjection::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid worker configuration:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl WorkerConfig {
    /// The write timeout in force: as configured, or two heartbeats.
    pub fn write_timeout(&self) -> Duration {
        self.write_timeout.unwrap_or(self.heartbeat * 2)
    }

    /// Checks every key and reports all problems at once, each naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };
        check(
            !self.id.is_empty()
                && self.id.len() <= 64
                && self
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            format!(
                "worker.id: {:?} must be 1-64 characters of A-Z a-z 0-9 _ -",
                self.id
            ),
        );
        check(
            self.heartbeat >= Duration::from_millis(100),
            "worker.heartbeat: must be at least 100ms".into(),
        );
        check(
            !self.session_ttl.is_zero(),
            "worker.session_ttl: must be greater than 0".into(),
        );
        check(
            self.announce_every >= Duration::from_millis(100),
            "worker.announce_every: must be at least 100ms".into(),
        );
        check(
            self.listen.is_none_or(|l| !l.ip().is_unspecified()) || self.advertise.is_some(),
            "worker.advertise: required when worker.listen is a wildcard address".into(),
        );
        check(
            self.max_connections > 0,
            "worker.max_connections: must be greater than 0".into(),
        );
        check(
            self.drain_grace >= self.drain_window,
            "worker.drain_grace: must be at least worker.drain_window (clients are still leaving until then)".into(),
        );
        check(
            (128..=16 << 20).contains(&self.max_frame_bytes),
            "worker.max_frame_bytes: must be between 128 and 16777216".into(),
        );
        check(
            (2..=65_536).contains(&self.outbox_capacity),
            "worker.outbox_capacity: must be between 2 and 65536".into(),
        );
        check(
            self.publish_rate > 0,
            "worker.publish_rate: must be greater than 0".into(),
        );
        check(
            self.publish_burst >= self.publish_rate,
            "worker.publish_burst: must be at least worker.publish_rate".into(),
        );
        check(
            self.max_strikes > 0,
            "worker.max_strikes: must be greater than 0".into(),
        );
        check(
            self.write_timeout.is_none_or(|t| t >= self.heartbeat),
            "worker.write_timeout: must be at least worker.heartbeat".into(),
        );
        check(
            (1..=10_000).contains(&self.catch_up_page),
            "worker.catch_up_page: must be between 1 and 10000".into(),
        );
        check(
            self.max_batch_bytes >= 1024,
            "worker.max_batch_bytes: must be at least 1024".into(),
        );
        if let Some(path) = &self.identity_secret_file {
            check(
                path.is_file(),
                format!(
                    "worker.identity_secret_file: {} is not a readable file",
                    path.display()
                ),
            );
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [
                ("worker.tls.cert", &tls.cert),
                ("worker.tls.key", &tls.key),
                ("worker.tls.client_ca", &tls.client_ca),
            ] {
                check(
                    path.is_file(),
                    format!("{key}: {} is not a readable file", path.display()),
                );
            }
            check(
                self.listen.is_some(),
                "worker.tls: needs worker.listen (it secures the internal listener)".into(),
            );
        }
        check(
            self.listen.is_none() || self.identity_secret_file.is_some(),
            "worker.identity_secret_file: required when worker.listen is set (gateways sign the identities they hand over)".into(),
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        WorkerConfig::default().validate().unwrap();
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let config = WorkerConfig {
            id: "bad id".into(),
            max_connections: 0,
            drain_grace: Duration::from_secs(5),
            publish_burst: 1,
            listen: Some("127.0.0.1:1".parse().unwrap()),
            ..WorkerConfig::default()
        };
        let err = config.validate().unwrap_err();
        let keys: Vec<&str> = err
            .problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "worker.id",
                "worker.max_connections",
                "worker.drain_grace",
                "worker.publish_burst",
                "worker.identity_secret_file"
            ]
        );
    }

    #[test]
    fn listener_tls_names_each_missing_file_and_needs_listen() {
        let config: WorkerConfig = toml::from_str(
            "[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\nclient_ca = \"/nonexistent/ca.pem\"",
        )
        .unwrap();
        let err = config.validate().unwrap_err();
        let keys: Vec<&str> = err
            .problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "worker.tls.cert",
                "worker.tls.key",
                "worker.tls.client_ca",
                "worker.tls"
            ]
        );
        assert!(
            toml::from_str::<WorkerConfig>("[tls]\ncert = \"c\"\nkey = \"k\"").is_err(),
            "client_ca is required: the listener always verifies gateways"
        );
    }

    #[test]
    fn toml_durations_have_units_and_unknown_keys_are_refused() {
        let config: WorkerConfig = toml::from_str("id = \"w7\"\nheartbeat = \"1500ms\"").unwrap();
        assert_eq!(config.heartbeat, Duration::from_millis(1500));
        assert!(
            toml::from_str::<WorkerConfig>("heartbeat = 3").is_err(),
            "a duration needs a unit"
        );
        assert!(
            toml::from_str::<WorkerConfig>("heartbeat_secs = 3").is_err(),
            "unknown keys are refused"
        );
    }
}
