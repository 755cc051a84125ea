#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, then runs every test.
# Today the tests need only Rust: everything they talk to (TLS, WebSocket clients,
# gateways, workers, loopback proxies) is started by the tests themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed: install Rust from https://rustup.rs and run this again" >&2
  exit 1
fi

cargo test --workspace --locked "$@"
