#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, then runs every test.
# The tests need Rust and nats-server (the testkit starts real nats-server processes;
# everything else they talk to, such as TLS, WebSocket clients, gateways, workers and
# loopback proxies, is started by the tests themselves).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed: install Rust from https://rustup.rs and run this again" >&2
  exit 1
fi

# nats-server: the testkit looks on PATH, then at Debian's /usr/sbin/nats-server.
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "error: nats-server is not installed and this is not root with no sudo: install it (apt-get install nats-server, or https://github.com/nats-io/nats-server/releases) and run this again" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: nats-server is not installed and there is no apt-get: install it from https://github.com/nats-io/nats-server/releases and run this again" >&2
    exit 1
  fi
  echo "installing nats-server with apt-get" >&2
  # (The ${a[@]+...} form keeps an empty array from tripping `set -u` in older bash.)
  ${as_root[@]+"${as_root[@]}"} apt-get update
  ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server
  if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    echo "error: apt-get installed no nats-server binary (looked on PATH and at /usr/sbin/nats-server)" >&2
    exit 1
  fi
fi

cargo test --workspace --locked "$@"
