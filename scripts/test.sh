#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, then runs every test.
# The tests need Rust, nats-server and promtool (the testkit starts real nats-server processes;
# everything else they talk to, such as TLS, WebSocket clients, gateways, workers and
# loopback proxies, is started by the tests themselves). The browser client (client/js)
# needs Node.js 18+ and its npm dev-dependencies (`npm ci`: typescript, playwright-core);
# the browser test (tests/browser) drives Debian's chromium through playwright-core.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed: install Rust from https://rustup.rs and run this again" >&2
  exit 1
fi

# Installs Debian packages, as root or through sudo; `apt-get update` runs once.
apt_updated=0
apt_install() {
  local what="$1"
  shift
  local as_root
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "error: $what is not installed and this is not root with no sudo: install it (apt-get install $*) and run this again" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $what is not installed and there is no apt-get: install it and run this again" >&2
    exit 1
  fi
  echo "installing $what with apt-get" >&2
  # (The ${a[@]+...} form keeps an empty array from tripping `set -u` in older bash.)
  if [ "$apt_updated" -eq 0 ]; then
    ${as_root[@]+"${as_root[@]}"} apt-get update
    apt_updated=1
  fi
  ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# nats-server: the testkit looks on PATH, then at Debian's /usr/sbin/nats-server.
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  apt_install nats-server nats-server
  if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    echo "error: apt-get installed no nats-server binary (looked on PATH and at /usr/sbin/nats-server)" >&2
    exit 1
  fi
fi

# promtool (Debian's prometheus package): the tests check the shipped Prometheus config,
# alert rules and dashboard queries with it, and lint a live /metrics scrape.
if ! command -v promtool >/dev/null 2>&1; then
  apt_install promtool prometheus
fi

# Python 3 with venv, for the config checks: Envoy's API schema (xds-protos) lives in a
# virtualenv of its own under target/.
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt_install "python3 with venv" python3 python3-venv
fi

# Node.js and npm, for the browser client's build and tests.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install "Node.js and npm" nodejs npm
fi

# Chromium for tests/browser (it skips, saying so, only when no Chromium is found).
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium chromium
fi

# The browser client: its dev-dependencies exactly as locked, then its unit tests
# (which also check that the committed dist/ matches a fresh build). npm has been seen
# to leave a package out of node_modules once (TAR_ENTRY_ERROR): check, retry once.
npm_ci() {
  npm ci --no-audit --no-fund && [ -x node_modules/.bin/tsc ] && [ -d node_modules/playwright-core ]
}
(
  cd client/js
  npm_ci || { echo "npm ci left node_modules incomplete; once more" >&2; npm_ci; }
  npm test
)

# The shipped Envoy configs against Envoy's API (with a self-test that broken ones fail).
scripts/check-envoy.sh

# The Dockerfile's dependency layer against the workspace's members (no Docker needed).
python3 scripts/check-dockerfile.py --self-test
python3 scripts/check-dockerfile.py

cargo test --workspace --locked "$@"

# The Kubernetes manifests: rendered with kubectl's kustomize, checked offline by
# kubernetes-validate --strict, and each pod's config by the switchyard binary the tests
# just built (scripts/check-deploy.sh says what it needs when something is missing).
scripts/check-deploy.sh
