//! Standalone roles: `switchyard gateway --config F` and `switchyard worker --config F`.
//!
//! A worker's file has a `[worker]` table and an `[auth]` table (the same keys as the
//! gateway's, so that workers can check `refresh` tokens); a gateway's file is the
//! gateway's own configuration.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use switchyard_gateway::config::AuthConfig;
use switchyard_worker::WorkerConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerRoleConfig {
    pub worker: WorkerConfig,
    pub auth: AuthConfig,
}

impl WorkerRoleConfig {
    /// Reads the file with `SWITCHYARD__*` overrides and validates every key.
    pub fn from_file(path: &Path) -> anyhow::Result<WorkerRoleConfig> {
        let text = crate::config_file::read_with_env(path)?;
        let config: WorkerRoleConfig = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid worker configuration", path.display()))?;
        config.worker.validate()?;
        Ok(config)
    }
}
