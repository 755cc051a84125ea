//! Standalone roles: `switchyard gateway --config F` and `switchyard worker --config F`.
//!
//! A worker's file has a `[worker]` table and an `[auth]` table (the same keys as the
//! gateway's, so that workers can check `refresh` tokens); a gateway's file is the
//! gateway's own configuration. Either may have a `[nats]` table: the NATS engine, the
//! only one that lets separate processes share rooms, presence and the registry.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use switchyard_broker::memory::{MemoryBroker, MemoryConfig};
use switchyard_broker::nats::{NatsBroker, NatsConfig};
use switchyard_broker::Broker;
use switchyard_gateway::config::AuthConfig;

use crate::config_file::RoleFile;
use switchyard_worker::WorkerConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerRoleConfig {
    pub worker: WorkerConfig,
    pub auth: AuthConfig,
}

impl WorkerRoleConfig {
    /// Reads the file with `SWITCHYARD__*` overrides and validates every key; the
    /// process-wide settings (`[nats]`, `admin_listen`, `[telemetry]`) come back beside it.
    pub fn from_file(path: &Path) -> anyhow::Result<(WorkerRoleConfig, RoleFile)> {
        let file = crate::config_file::read_role(path)?;
        Ok((WorkerRoleConfig::from_role_file(&file, path)?, file))
    }

    /// The worker's part of a role file already read (`path` names it in errors).
    pub fn from_role_file(file: &RoleFile, path: &Path) -> anyhow::Result<WorkerRoleConfig> {
        let config: WorkerRoleConfig = toml::from_str(&file.text)
            .with_context(|| format!("{} is not a valid worker configuration", path.display()))?;
        config.worker.validate()?;
        Ok(config)
    }
}

/// The broker a role runs on: NATS when configured, else a memory broker of its own.
pub async fn broker(
    nats: Option<NatsConfig>,
    client_name: &str,
) -> anyhow::Result<Arc<dyn Broker>> {
    Ok(match nats {
        Some(config) => {
            let config = NatsConfig {
                name: Some(config.name.unwrap_or_else(|| client_name.into())),
                ..config
            };
            NatsBroker::connect(config).await? as Arc<dyn Broker>
        }
        None => Arc::new(MemoryBroker::new(MemoryConfig::default())),
    })
}
