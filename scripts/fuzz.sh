#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: ./scripts/fuzz.sh [seconds per target]
#   protocol: client_frame (any bytes a client sends), server_frame (what clients read)
#   gateway:  upgrade_request (request target, query and token before anything is trusted)
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable toolchain build
# them, as no other toolchain is available here. A crash stops the run with the input
# saved under <crate>/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

run() {
  local crate="$1" target="$2"
  echo "== fuzzing $crate/$target for ${seconds}s" >&2
  (cd "$crate" && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$seconds")
}

run protocol client_frame
run protocol server_frame
run gateway upgrade_request
echo "fuzzing: no failure in ${seconds}s per target" >&2
