#!/bin/sh
# Checks envoy/*.yaml against Envoy's API (scripts/check-envoy.py): first its self-test
# (broken copies of the shipped files must be refused), then every file.
#
#   scripts/check-envoy.sh
#
# No Envoy binary can be installed here, so the API comes from the PyPI package
# xds-protos (Envoy's protos compiled for Python). It installs top-level packages named
# envoy, google, validate, udpa, xds..., so it lives in its own virtualenv,
# target/envoy-venv (ENVOY_VENV to move it), made on first run and reused while the
# pins below are unchanged.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${ENVOY_VENV:-$root/target/envoy-venv}
# Pinned together: xds-protos 1.85.0 wants protobuf >=6.31.1,<8. --no-deps leaves out
# its grpcio dependency: only the message modules are used, never the gRPC stubs.
pins="xds-protos==1.85.0 protobuf==7.36.2 PyYAML==6.0.3"

if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]; then
    echo "check-envoy: making $venv ($pins)"
    rm -rf "$venv"
    python3 -m venv "$venv" || {
        echo "check-envoy: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    }
    # shellcheck disable=SC2086 # $pins is a list of words
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary :all: $pins
    echo "$pins" >"$venv/.pins"
fi

"$venv/bin/python" "$root/scripts/check-envoy.py" --self-test
"$venv/bin/python" "$root/scripts/check-envoy.py" "$root"/envoy/*.yaml
