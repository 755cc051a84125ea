//! The `switchyard` binary's library: it wires the crates into running roles.
//!
//! - [`wiring`] adapts a [`switchyard_worker::Worker`] to the gateway's in-process
//!   hand-off and the gateway's token verifier to the worker's `refresh` checks: the
//!   gateway and the worker never import each other.
//! - [`dev`] runs a gateway and N workers in one process on the memory engine, with the
//!   files of [`dev_state`] (dev CA, server certificate, secrets).
//! - [`roles`] reads the TOML of standalone `gateway` and `worker` processes.
//! - [`token`] mints tokens for `switchyard token`, `dev` and tests.
//!
//! `main.rs` parses flags, installs tracing and calls into these.

pub mod dev;
pub mod dev_state;
pub mod roles;
pub mod token;
pub mod wiring;
