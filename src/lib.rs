//! The `switchyard` binary's library: it wires the crates into running roles.
//!
//! - [`wiring`] adapts a [`switchyard_worker::Worker`] to the gateway's in-process
//!   hand-off and the gateway's token verifier to the worker's `refresh` checks: the
//!   gateway and the worker never import each other.
//! - [`dev`] runs a gateway and N workers in one process on the memory engine, with the
//!   files of [`dev_state`] (dev CA, server certificate, secrets).
//! - [`roles`] reads the TOML of standalone `gateway` and `worker` processes.
//! - [`telemetry`] installs logs and OpenTelemetry traces (`[telemetry]`, `--otlp-*`).
//! - [`token`] mints tokens for `switchyard token`, `dev` and tests.
//! - [`config_file`] applies `SWITCHYARD__*` environment overrides to a role's TOML.
//! - [`admin`] serves `/metrics`, `/healthz` and `/readyz` on the admin listener.
//! - [`chat`] is a terminal client over `switchyard-client`, for trying a stack.
//! - [`bench`] is `switchyard bench`, a load generator driving a running stack.
//! - [`Usage`] marks errors the user fixes (bad flags or configuration): exit 64.
//!
//! `main.rs` parses flags, installs tracing and calls into these.

pub mod admin;
pub mod bench;
pub mod chat;
pub mod config_file;
pub mod dev;
pub mod dev_state;
pub mod listen;
pub mod local_nats;
pub mod roles;
pub mod telemetry;
pub mod token;
pub mod wiring;

/// An error in what the user gave (flags, configuration): `main` exits with 64.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Usage(#[from] pub anyhow::Error);

/// Marks an error as the user's to fix.
pub fn usage<E: Into<anyhow::Error>>(err: E) -> anyhow::Error {
    Usage(err.into()).into()
}
