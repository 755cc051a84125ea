//! The gateway's configuration: TOML with `deny_unknown_fields`, defaults as `DEFAULT_*`
//! consts beside it, and [`GatewayConfig::validate`] that names every bad key at once.
//!
//! Durations are strings with a unit: `"500ms"`, `"10s"`, `"2m"`, `"1h"`.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Longest a client may take from TCP accept to a complete upgrade request.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Upgrades per second one client IP may start; the burst is the same unless set.
pub const DEFAULT_MAX_UPGRADES_PER_SEC_PER_IP: u32 = 100;
/// Largest request head (request line and headers) read before the upgrade.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// hyper refuses a read buffer smaller than this.
pub const MIN_MAX_HEADER_BYTES: usize = 8 * 1024;
/// Open client connections one gateway holds at most.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Client IPs the upgrade rate limiter remembers at most.
pub const DEFAULT_RATE_LIMIT_TRACKED_IPS: usize = 100_000;
/// Connections a remote worker is assumed to hold when its config names no capacity.
pub const DEFAULT_REMOTE_CAPACITY: u64 = 100_000;
/// How long to wait for a remote worker's TCP connect and its answer to the upgrade.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whether a gateway given a broker routes to the workers of its registry.
pub const DEFAULT_USE_REGISTRY: bool = true;
/// Largest HTTP API request body.
pub const DEFAULT_MAX_API_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Serve plain WebSocket without TLS. Must be explicit; only behind a TLS proxy.
    #[serde(default)]
    pub plain: bool,
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// HMAC secret shared with remote workers for the signed identity headers.
    #[serde(default)]
    pub identity_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// mTLS to remote workers: their certificates must chain to `ca`, and the gateway
    /// presents `cert`. Without it hand-offs go over plain TCP.
    #[serde(default)]
    pub internal_tls: Option<InternalTlsConfig>,
    pub auth: AuthConfig,
    #[serde(default)]
    pub api: Option<ApiConfig>,
    #[serde(default)]
    pub workers: Vec<RemoteWorkerConfig>,
    /// Route to the workers of the broker's registry as well as `[[workers]]` (when the
    /// gateway has a broker). Their hand-offs need `identity_secret_file`.
    #[serde(default = "default_use_registry")]
    pub registry: bool,
    #[serde(default)]
    pub limits: LimitsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[internal_tls]`: how the gateway dials workers' internal listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalTlsConfig {
    /// PEM CA certificate(s) that workers' certificates chain to.
    pub ca: PathBuf,
    /// The gateway's client certificate chain (PEM, leaf first), signed by the CA that
    /// workers take as `worker.tls.client_ca`.
    pub cert: PathBuf,
    /// Its PEM private key.
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// File whose first line is the HS256 secret.
    #[serde(default)]
    pub hs256_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub public_keys: Vec<PublicKeyConfig>,
    /// A JWKS document (`{"keys":[...]}`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Allowed algorithms; by default those of the configured keys.
    #[serde(default)]
    pub algorithms: Option<Vec<KeyAlgorithm>>,
}

/// The token algorithms Switchyard accepts. `none` is not one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum KeyAlgorithm {
    HS256,
    RS256,
    ES256,
    EdDSA,
}

impl KeyAlgorithm {
    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            KeyAlgorithm::HS256 => jsonwebtoken::Algorithm::HS256,
            KeyAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            KeyAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            KeyAlgorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }

    pub fn from_jwt(alg: jsonwebtoken::Algorithm) -> Option<KeyAlgorithm> {
        match alg {
            jsonwebtoken::Algorithm::HS256 => Some(KeyAlgorithm::HS256),
            jsonwebtoken::Algorithm::RS256 => Some(KeyAlgorithm::RS256),
            jsonwebtoken::Algorithm::ES256 => Some(KeyAlgorithm::ES256),
            jsonwebtoken::Algorithm::EdDSA => Some(KeyAlgorithm::EdDSA),
            _ => None,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyConfig {
    pub alg: KeyAlgorithm,
    pub pem_file: PathBuf,
    #[serde(default)]
    pub kid: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// File whose first line is the API key.
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWorkerConfig {
    pub id: String,
    /// `host:port` of the worker's internal listener.
    pub address: String,
    #[serde(default = "default_remote_capacity")]
    pub capacity: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "default_upgrades_per_sec")]
    pub max_upgrades_per_sec_per_ip: u32,
    /// Bucket size of the per-IP limiter; the per-second rate when unset.
    #[serde(default)]
    pub upgrade_burst: Option<u32>,
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_tracked_ips")]
    pub rate_limit_tracked_ips: usize,
    #[serde(default = "default_max_api_body_bytes")]
    pub max_api_body_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_upgrades_per_sec_per_ip: DEFAULT_MAX_UPGRADES_PER_SEC_PER_IP,
            upgrade_burst: None,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            rate_limit_tracked_ips: DEFAULT_RATE_LIMIT_TRACKED_IPS,
            max_api_body_bytes: DEFAULT_MAX_API_BODY_BYTES,
        }
    }
}

fn default_handshake_timeout() -> Duration {
    DEFAULT_HANDSHAKE_TIMEOUT
}
fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}
fn default_leeway() -> Duration {
    switchyard_protocol::limits::DEFAULT_LEEWAY
}
fn default_use_registry() -> bool {
    DEFAULT_USE_REGISTRY
}
fn default_remote_capacity() -> u64 {
    DEFAULT_REMOTE_CAPACITY
}
fn default_upgrades_per_sec() -> u32 {
    DEFAULT_MAX_UPGRADES_PER_SEC_PER_IP
}
fn default_max_header_bytes() -> usize {
    DEFAULT_MAX_HEADER_BYTES
}
fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
fn default_tracked_ips() -> usize {
    DEFAULT_RATE_LIMIT_TRACKED_IPS
}
fn default_max_api_body_bytes() -> usize {
    DEFAULT_MAX_API_BODY_BYTES
}

/// One problem with the configuration, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid configuration:\n{}", list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The keys named by an [`ConfigError::Invalid`], for tests and `--check-config`.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            ConfigError::Invalid(problems) => problems.iter().map(|p| p.key.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

impl GatewayConfig {
    pub fn from_toml_str(text: &str) -> Result<GatewayConfig, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    pub fn from_file(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        GatewayConfig::from_toml_str(&text)
    }

    /// Checks everything that can be checked without serving, and reports every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                key: key.to_string(),
                message,
            })
        };
        let file = |key: &str, path: &Path, problem: &mut dyn FnMut(&str, String)| {
            if !path.is_file() {
                problem(key, format!("file {} not found", path.display()));
            }
        };

        match (&self.tls, self.plain) {
            (Some(tls), false) => {
                file("tls.cert", &tls.cert, &mut problem);
                file("tls.key", &tls.key, &mut problem);
            }
            (Some(_), true) => problem(
                "plain",
                "plain = true and a [tls] section exclude each other".into(),
            ),
            (None, false) => problem(
                "tls",
                "missing: give cert and key, or set plain = true explicitly".into(),
            ),
            (None, true) => {}
        }
        if let Some(internal) = &self.internal_tls {
            file("internal_tls.ca", &internal.ca, &mut problem);
            file("internal_tls.cert", &internal.cert, &mut problem);
            file("internal_tls.key", &internal.key, &mut problem);
        }
        if self.handshake_timeout.is_zero() {
            problem("handshake_timeout", "must be greater than zero".into());
        }
        if self.connect_timeout.is_zero() {
            problem("connect_timeout", "must be greater than zero".into());
        }

        let auth = &self.auth;
        let mut configured: HashSet<KeyAlgorithm> = HashSet::new();
        if let Some(path) = &auth.hs256_secret_file {
            file("auth.hs256_secret_file", path, &mut problem);
            configured.insert(KeyAlgorithm::HS256);
        }
        for (i, key) in auth.public_keys.iter().enumerate() {
            if key.alg == KeyAlgorithm::HS256 {
                problem(
                    &format!("auth.public_keys[{i}].alg"),
                    "HS256 is a shared secret: use auth.hs256_secret_file".into(),
                );
            }
            file(
                &format!("auth.public_keys[{i}].pem_file"),
                &key.pem_file,
                &mut problem,
            );
            configured.insert(key.alg);
        }
        if let Some(path) = &auth.jwks_file {
            file("auth.jwks_file", path, &mut problem);
        }
        if auth.hs256_secret_file.is_none()
            && auth.public_keys.is_empty()
            && auth.jwks_file.is_none()
        {
            problem(
                "auth",
                "no key: set hs256_secret_file, public_keys or jwks_file".into(),
            );
        }
        if let Some(algorithms) = &auth.algorithms {
            if algorithms.is_empty() {
                problem(
                    "auth.algorithms",
                    "must allow at least one algorithm".into(),
                );
            }
            // A JWKS file may hold keys of any algorithm; only its absence makes a
            // listed algorithm certainly useless.
            if auth.jwks_file.is_none() {
                for alg in algorithms {
                    if !configured.contains(alg) {
                        problem(
                            "auth.algorithms",
                            format!("{alg} is allowed but no {alg} key is configured"),
                        );
                    }
                }
            }
        }
        if matches!(&auth.audience, Some(a) if a.is_empty()) {
            problem("auth.audience", "must not be empty".into());
        }
        if matches!(&auth.issuer, Some(i) if i.is_empty()) {
            problem("auth.issuer", "must not be empty".into());
        }

        if let Some(api) = &self.api {
            file("api.key_file", &api.key_file, &mut problem);
        }

        let mut ids = HashSet::new();
        for (i, worker) in self.workers.iter().enumerate() {
            if !is_segment(&worker.id) {
                problem(
                    &format!("workers[{i}].id"),
                    "must be 1-64 bytes of A-Z a-z 0-9 _ -".into(),
                );
            }
            if !ids.insert(worker.id.as_str()) {
                problem(
                    &format!("workers[{i}].id"),
                    format!("{} is listed twice", worker.id),
                );
            }
            if !is_host_port(&worker.address) {
                problem(
                    &format!("workers[{i}].address"),
                    format!("{:?} is not host:port", worker.address),
                );
            }
            if worker.capacity == 0 {
                problem(
                    &format!("workers[{i}].capacity"),
                    "must be greater than zero".into(),
                );
            }
        }
        match &self.identity_secret_file {
            Some(path) => file("identity_secret_file", path, &mut problem),
            None if !self.workers.is_empty() => problem(
                "identity_secret_file",
                "required when [[workers]] are configured".into(),
            ),
            None => {}
        }

        let limits = &self.limits;
        if limits.max_upgrades_per_sec_per_ip == 0 {
            problem(
                "limits.max_upgrades_per_sec_per_ip",
                "must be greater than zero".into(),
            );
        }
        if limits.upgrade_burst == Some(0) {
            problem("limits.upgrade_burst", "must be greater than zero".into());
        }
        if limits.max_header_bytes < MIN_MAX_HEADER_BYTES {
            problem(
                "limits.max_header_bytes",
                format!("must be at least {MIN_MAX_HEADER_BYTES}"),
            );
        }
        if limits.max_connections == 0 {
            problem("limits.max_connections", "must be greater than zero".into());
        }
        if limits.rate_limit_tracked_ips == 0 {
            problem(
                "limits.rate_limit_tracked_ips",
                "must be greater than zero".into(),
            );
        }
        if limits.max_api_body_bytes == 0 {
            problem(
                "limits.max_api_body_bytes",
                "must be greater than zero".into(),
            );
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// A worker id or connection id: one path segment.
pub(crate) fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_host_port(address: &str) -> bool {
    match address.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

/// Reads the first line of a secret file (without its newline).
pub fn read_first_line(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests;
