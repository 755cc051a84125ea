//! Reading a role's TOML file with environment overrides.
//!
//! Any variable `SWITCHYARD__A__B=value` sets key `a.b` of the file (keys lower-cased,
//! `__` between levels), so a container can change `SWITCHYARD__LISTEN` or
//! `SWITCHYARD__WORKER__ID` without a new file. The value is read as a TOML value
//! (`8`, `true`, `"x"`, `["a"]`), or as a string when it is not one.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use switchyard_broker::nats::NatsConfig;

use crate::telemetry::TelemetryConfig;

pub const ENV_PREFIX: &str = "SWITCHYARD__";

/// The file's text with every override applied, ready for the role's own parser.
pub fn read_with_env(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    apply_env(&text, std::env::vars())
        .with_context(|| format!("{} is not valid TOML", path.display()))
}

pub fn apply_env(
    text: &str,
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<String> {
    let mut table: toml::Table = text.parse()?;
    let mut changed = false;
    for (name, value) in vars {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        anyhow::ensure!(
            keys.iter().all(|k| !k.is_empty()),
            "{name}: empty key in the override path"
        );
        let value = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        set(&mut table, &keys, value).with_context(|| format!("{name}: cannot override"))?;
        changed = true;
    }
    Ok(if changed {
        toml::to_string(&table)?
    } else {
        text.to_string()
    })
}

fn set(table: &mut toml::Table, keys: &[String], value: toml::Value) -> anyhow::Result<()> {
    let (last, parents) = keys.split_last().context("no key")?;
    let mut at = table;
    for key in parents {
        let entry = at
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = entry
            .as_table_mut()
            .with_context(|| format!("{key} is not a table"))?;
    }
    at.insert(last.clone(), value);
    Ok(())
}

/// A role's file split in two: the process-wide settings the binary acts on (the broker,
/// the admin listener, telemetry) and the role's own TOML.
#[derive(Debug, Clone)]
pub struct RoleFile {
    /// The role's own keys, for its parser.
    pub text: String,
    /// `[nats]`; none means the memory engine.
    pub nats: Option<NatsConfig>,
    /// `admin_listen`: where `/metrics`, `/healthz` and `/readyz` are served.
    pub admin_listen: Option<SocketAddr>,
    /// `listen_backlog`: connections the kernel may queue for accept.
    pub listen_backlog: u32,
    /// `[telemetry]`: traces over OTLP (off without an endpoint).
    pub telemetry: TelemetryConfig,
}

/// Reads a role's file and takes out what the binary builds: `[nats]`, `admin_listen`
/// and `[telemetry]`; the rest is the role's.
pub fn read_role(path: &Path) -> anyhow::Result<RoleFile> {
    let text = read_with_env(path)?;
    let mut table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let admin_listen = match table.remove("admin_listen") {
        None => None,
        Some(value) => Some(
            value
                .as_str()
                .and_then(|v| v.parse::<SocketAddr>().ok())
                .with_context(|| {
                    format!(
                        "{}: admin_listen must be an address such as \"127.0.0.1:9464\"",
                        path.display()
                    )
                })?,
        ),
    };
    let listen_backlog = match table.remove("listen_backlog") {
        None => crate::listen::DEFAULT_BACKLOG,
        Some(value) => value
            .as_integer()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| (1..=65_535).contains(v))
            .with_context(|| {
                format!(
                    "{}: listen_backlog must be a number from 1 to 65535 (the kernel caps it at net.core.somaxconn)",
                    path.display()
                )
            })?,
    };
    let telemetry = match table.remove("telemetry") {
        None => TelemetryConfig::default(),
        Some(value) => {
            let config: TelemetryConfig = value.try_into().with_context(|| {
                format!("{}: the [telemetry] table is not valid", path.display())
            })?;
            let problems = config.problems("telemetry.");
            anyhow::ensure!(
                problems.is_empty(),
                "{}: {}",
                path.display(),
                problems.join("; ")
            );
            config
        }
    };
    let nats = match table.remove("nats") {
        None => None,
        Some(value) => {
            let config: NatsConfig = value
                .try_into()
                .with_context(|| format!("{}: the [nats] table is not valid", path.display()))?;
            let problems = config.problems("nats.");
            anyhow::ensure!(
                problems.is_empty(),
                "{}: {}",
                path.display(),
                problems.join("; ")
            );
            Some(config)
        }
    };
    Ok(RoleFile {
        text: toml::to_string(&table)?,
        nats,
        admin_listen,
        listen_backlog,
        telemetry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_set_nested_keys_with_typed_values() {
        let text = "listen = \"127.0.0.1:1\"\n[worker]\nid = \"w1\"\n";
        let vars = [
            ("SWITCHYARD__LISTEN".to_string(), "0.0.0.0:443".to_string()),
            (
                "SWITCHYARD__WORKER__MAX_CONNECTIONS".to_string(),
                "500".to_string(),
            ),
            (
                "SWITCHYARD__LIMITS__UPGRADE_BURST".to_string(),
                "7".to_string(),
            ),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let out: toml::Table = apply_env(text, vars.into_iter()).unwrap().parse().unwrap();
        assert_eq!(out["listen"].as_str(), Some("0.0.0.0:443"));
        assert_eq!(out["worker"]["max_connections"].as_integer(), Some(500));
        assert_eq!(out["worker"]["id"].as_str(), Some("w1"));
        assert_eq!(out["limits"]["upgrade_burst"].as_integer(), Some(7));
    }

    #[test]
    fn process_settings_are_taken_out_of_a_role_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:9464\"\n\
             [telemetry]\notlp_endpoint = \"http://127.0.0.1:4317\"\nsample_ratio = 0.5\n",
        )
        .unwrap();
        let file = read_role(&path).unwrap();
        assert_eq!(file.admin_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(file.telemetry.sample_ratio, 0.5);
        assert!(file.telemetry.parent_based);
        assert!(!file.text.contains("admin_listen") && !file.text.contains("telemetry"));
        assert_eq!(file.listen_backlog, crate::listen::DEFAULT_BACKLOG);
        std::fs::write(&path, "admin_listen = \"nope\"\n").unwrap();
        assert!(read_role(&path).is_err());
        std::fs::write(&path, "listen_backlog = 4096\n").unwrap();
        assert_eq!(read_role(&path).unwrap().listen_backlog, 4096);
        std::fs::write(&path, "listen_backlog = 0\n").unwrap();
        assert!(read_role(&path).is_err());
        std::fs::write(&path, "[telemetry]\nsample_ratio = 2.0\n").unwrap();
        assert!(read_role(&path).is_err());
    }

    #[test]
    fn an_override_through_a_value_is_an_error() {
        let vars = [("SWITCHYARD__LISTEN__PORT".to_string(), "1".to_string())];
        assert!(apply_env("listen = \"x\"", vars.into_iter()).is_err());
    }
}
