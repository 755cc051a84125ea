#!/usr/bin/env bash
# The production topology on one machine, on loopback: a 3-node NATS JetStream cluster
# with mTLS on clients and routes (the shipped nats/cluster/n*.conf, adapted), three
# `switchyard worker` and two `switchyard gateway` processes, each role with its own
# NATS client certificate (its NATS user), hand-offs over mTLS with the hand-off CA.
#
#   scripts/local-cluster.sh [--state-dir DIR] [--base-port N] [--binary PATH]
#                            [--log FILTER] [--timeout SECONDS]
#
# It waits until every process is ready (NATS /healthz, workers' /readyz, gateways'
# /readyz with all three workers routable), prints where everything is and a line
# starting with "ready:", and runs until Ctrl-C, SIGTERM or SIGHUP: then it stops the
# gateways and workers (SIGTERM: workers drain), then the NATS nodes, and waits for each
# (SIGKILL after a grace period). If a process dies while starting, it stops everything
# and prints that process' log tail. Each child runs in its own process group, so a
# terminal's Ctrl-C reaches only this script, which stops them in order.
#
# DIR (default .switchyard/local-cluster, under the current directory) keeps, across runs:
#   certs/   nats/gen-certs.sh: the NATS CA, node and per-role client certificates,
#            and the hand-off CA with the workers' and gateways' certificates
#   dev/     the public side, as `switchyard dev` makes it: ca.pem (trust it),
#            server.pem/.key (the gateways'), jwt.secret, api.key, identity.secret
#   nats/    n1.conf..n3.conf (rendered every run) and the JetStream stores n1/..n3/
#   config/  g1.toml g2.toml w1.toml..w3.toml, from examples/config (every run)
#   logs/    one log per process (truncated every run)
#   pids     what this run started; a run killed with SIGKILL cannot stop its children,
#            so the next run on DIR stops them first
# Delete DIR to start from nothing (new certificates, empty streams).
#
# Ports: free ones picked at random below the ephemeral range, or, with --base-port N,
# N+0,1 gateways (wss), N+2,3 their admin, N+4..6 workers' hand-off listeners, N+7..9
# their admin, N+10..12 NATS clients, N+13..15 NATS routes, N+16..18 NATS monitoring.
#
# Needs nats-server (PATH, /usr/sbin/nats-server or $NATS_SERVER) and openssl. The
# binary is target/release/switchyard (built with cargo when missing) unless --binary
# names one. SWITCHYARD__* variables in the environment reach every process (README,
# "Configuration reference"). nats-server 2.9 refuses `jetstream.sync_interval` (2.10+):
# on such a server that line is dropped from the rendered configs, saying so.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prog=local-cluster

say() { echo "$prog: $*" >&2; }
die() {
  echo "$prog: error: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

state=.switchyard/local-cluster
base_port=
binary=
log_filter=${SWITCHYARD_LOG:-info}
start_timeout=120
while [ $# -gt 0 ]; do
  case $1 in
    --state-dir) state=${2:?--state-dir needs a directory}; shift 2 ;;
    --state-dir=*) state=${1#*=}; shift ;;
    --base-port) base_port=${2:?--base-port needs a port}; shift 2 ;;
    --base-port=*) base_port=${1#*=}; shift ;;
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --binary=*) binary=${1#*=}; shift ;;
    --log) log_filter=${2:?--log needs a filter}; shift 2 ;;
    --log=*) log_filter=${1#*=}; shift ;;
    --timeout) start_timeout=${2:?--timeout needs seconds}; shift 2 ;;
    --timeout=*) start_timeout=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "$prog: unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
case $start_timeout in '' | *[!0-9]*) die "--timeout takes whole seconds, not '$start_timeout'" ;; esac
if [ -n "$base_port" ]; then
  case $base_port in '' | *[!0-9]*) die "--base-port takes a port number, not '$base_port'" ;; esac
  { [ "$base_port" -ge 1024 ] && [ "$base_port" -le 65517 ]; } ||
    die "--base-port must be within 1024..65517 (it uses N..N+18)"
fi

# --- What it needs ------------------------------------------------------------------

nats_server=${NATS_SERVER:-}
if [ -z "$nats_server" ]; then
  nats_server=$(command -v nats-server || true)
  [ -z "$nats_server" ] && [ -x /usr/sbin/nats-server ] && nats_server=/usr/sbin/nats-server
fi
if [ -n "${NATS_SERVER:-}" ] && [ ! -x "$NATS_SERVER" ]; then
  die "NATS_SERVER=$NATS_SERVER is not an executable"
fi
if [ -z "$nats_server" ]; then
  die "nats-server is not installed. Install it: 'sudo apt-get install nats-server' (Debian, Ubuntu),
  'brew install nats-server' (macOS), or a release from https://github.com/nats-io/nats-server/releases
  (then put it on PATH or set NATS_SERVER=/path/to/nats-server)"
fi
command -v openssl >/dev/null ||
  die "openssl is not installed (nats/gen-certs.sh makes the certificates with it). Install it:
  'sudo apt-get install openssl' (Debian, Ubuntu), 'brew install openssl' (macOS)"
command -v timeout >/dev/null || die "timeout (GNU coreutils) is needed: install coreutils"

if [ -z "$binary" ]; then
  binary=${CARGO_TARGET_DIR:-$repo/target}/release/switchyard
  if [ ! -x "$binary" ]; then
    command -v cargo >/dev/null ||
      die "$binary is missing and cargo is not installed: install Rust from https://rustup.rs, or pass --binary PATH"
    say "building $binary (cargo build --release --bin switchyard; the first build takes a few minutes)"
    (cd "$repo" && cargo build --release --bin switchyard) >&2 || die "cargo build failed"
  fi
fi
[ -x "$binary" ] || die "--binary $binary is not an executable"
binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")

mkdir -p "$state"
state=$(cd "$state" && pwd)
case $state in
  *[\"\\$'\n']*) die "the state dir's path may not hold a quote, a backslash or a newline: $state" ;;
esac
certs=$state/certs dev=$state/dev natsdir=$state/nats confdir=$state/config logs=$state/logs
mkdir -p "$certs" "$dev" "$natsdir" "$confdir" "$logs"

# One run per state dir; processes an earlier run left behind (it was SIGKILLed) are
# stopped first. Only processes whose command line names this state dir are touched.
cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }
if [ -f "$state/run.pid" ]; then
  old=$(cat "$state/run.pid")
  if [ -n "$old" ] && [ "$old" != $$ ] && kill -0 "$old" 2>/dev/null &&
    case $(cmdline "$old") in *local-cluster*) true ;; *) false ;; esac; then
    die "another local cluster runs on $state (pid $old): stop it first (kill $old)"
  fi
fi
if [ -f "$state/pids" ] && [ -d /proc ]; then
  while read -r name pid; do
    case $(cmdline "$pid") in
      *"$state/"*)
        say "stopping $name (pid $pid), left running by an earlier run"
        kill -s KILL -- "-$pid" 2>/dev/null || kill -s KILL "$pid" 2>/dev/null || true
        ;;
    esac
  done <"$state/pids"
fi
echo $$ >"$state/run.pid"
trap 'rm -f "$state/run.pid"' EXIT
: >"$state/pids"

# --- Ports --------------------------------------------------------------------------

# Ports something listens on now (ss when present, else a connect to each candidate).
listening=
if command -v ss >/dev/null; then
  listening=" $(ss -Htln 2>/dev/null | awk '{ n = split($4, a, ":"); printf "%s ", a[n] }')"
fi
port_busy() {
  if [ -n "$listening" ]; then
    case $listening in *" $1 "*) return 0 ;; esac
    return 1
  fi
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
block_free() {
  local p
  for p in $(seq "$1" $(($1 + 18))); do
    port_busy "$p" && return 1
  done
  return 0
}
if [ -n "$base_port" ]; then
  block_free "$base_port" ||
    die "a port of $base_port..$((base_port + 18)) is in use: pick another --base-port, or leave it out to pick free ports"
else
  # Below Linux's default ephemeral range (32768-60999), so no outgoing connection
  # holds one of them by chance.
  for _ in $(seq 1 50); do
    base_port=$((20000 + 20 * (RANDOM % 600)))
    block_free "$base_port" && break
    base_port=
  done
  [ -n "$base_port" ] || die "found no 19 free ports in a row between 20000 and 31999: pass --base-port"
fi
gw_port=($((base_port + 0)) $((base_port + 1)))
gw_admin=($((base_port + 2)) $((base_port + 3)))
wk_port=($((base_port + 4)) $((base_port + 5)) $((base_port + 6)))
wk_admin=($((base_port + 7)) $((base_port + 8)) $((base_port + 9)))
nats_port=($((base_port + 10)) $((base_port + 11)) $((base_port + 12)))
route_port=($((base_port + 13)) $((base_port + 14)) $((base_port + 15)))
mon_port=($((base_port + 16)) $((base_port + 17)) $((base_port + 18)))
nats_urls="nats://127.0.0.1:${nats_port[0]},nats://127.0.0.1:${nats_port[1]},nats://127.0.0.1:${nats_port[2]}"

# --- Certificates and secrets (made once, reused) ------------------------------------

if [ ! -f "$certs/handoff-gateway-key.pem" ]; then
  say "making the NATS and hand-off certificates (nats/gen-certs.sh $certs)"
  sh "$repo/nats/gen-certs.sh" "$certs" >"$logs/gen-certs.log" 2>&1 ||
    { cat "$logs/gen-certs.log" >&2; die "nats/gen-certs.sh failed"; }
fi
if [ ! -f "$dev/identity.secret" ]; then
  say "making the public CA, the gateways' certificate, the JWT secret, the API key and the identity secret ($dev)"
fi
"$binary" token --user local-cluster --state-dir "$dev" >/dev/null ||
  die "$binary token --state-dir $dev failed"

# --- Configuration files ------------------------------------------------------------

# replace NAME TEXT FROM TO: TEXT with every FROM replaced by TO; FROM must occur in it
# (the shipped files are the source of truth: when one changes, this says so).
replace() {
  case $2 in *"$3"*) ;; *) die "$1 no longer holds '$3': update scripts/local-cluster.sh" ;; esac
  printf '%s' "${2//"$3"/"$4"}"
}

nats_version=$("$nats_server" --version 2>&1 | sed -n 's/.*v\([0-9][0-9.]*\).*/\1/p' | head -n 1)
sync_interval=yes
case $nats_version in
  1.* | 2.[0-9] | 2.[0-9].*) sync_interval=no ;;
esac
[ "$sync_interval" = no ] &&
  say "note: nats-server $nats_version predates jetstream.sync_interval (2.10): the rendered configs drop that line and run with the 2-minute default (nats/README.md, Durability)"

cp "$repo/nats/accounts.conf" "$natsdir/accounts.conf"
server_conf=$(cat "$repo/nats/server.conf")
for i in 0 1 2; do
  n=n$((i + 1))
  text=$(cat "$repo/nats/cluster/$n.conf")
  shared=$server_conf
  shared=$(replace nats/server.conf "$shared" "/etc/nats/certs/" "$certs/")
  shared=$(replace nats/server.conf "$shared" 'store_dir: "/data/nats"' "store_dir: \"$natsdir/$n\"")
  shared=$(replace nats/server.conf "$shared" 'http: "127.0.0.1:8222"' "http: \"127.0.0.1:${mon_port[$i]}\"")
  if [ "$sync_interval" = no ]; then
    shared=$(replace nats/server.conf "$shared" 'sync_interval: "1s"' '# sync_interval: "1s"  (dropped: this nats-server predates it)')
  fi
  text=$(replace "nats/cluster/$n.conf" "$text" 'include "../server.conf"' "$shared")
  text=$(replace "nats/cluster/$n.conf" "$text" "/etc/nats/certs/" "$certs/")
  text=$(replace "nats/cluster/$n.conf" "$text" 'listen: "0.0.0.0:4222"' "listen: \"127.0.0.1:${nats_port[$i]}\"")
  text=$(replace "nats/cluster/$n.conf" "$text" 'listen: "0.0.0.0:6222"' "listen: \"127.0.0.1:${route_port[$i]}\"")
  for j in 0 1 2; do
    [ "$j" = "$i" ] && continue
    text=$(replace "nats/cluster/$n.conf" "$text" "\"nats-route://n$((j + 1)):6222\"" "\"nats-route://127.0.0.1:${route_port[$j]}\"")
  done
  {
    echo "# Rendered by scripts/local-cluster.sh from nats/cluster/$n.conf and nats/server.conf."
    echo "$text"
  } >"$natsdir/$n.conf"
done

worker_example=$(cat "$repo/examples/config/worker.toml")
for i in 0 1 2; do
  id=w$((i + 1))
  text=$worker_example
  text=$(replace examples/config/worker.toml "$text" 'id = "w1"' "id = \"$id\"")
  text=$(replace examples/config/worker.toml "$text" 'listen = "127.0.0.1:9101"' "listen = \"127.0.0.1:${wk_port[$i]}\"")
  text=$(replace examples/config/worker.toml "$text" '".switchyard/dev/' "\"$dev/")
  text=$(replace examples/config/worker.toml "$text" 'url = "nats://127.0.0.1:4222"' "url = \"$nats_urls\"")
  text=$(replace examples/config/worker.toml "$text" 'replicas = 1' 'replicas = 3')
  cat >"$confdir/$id.toml" <<EOF
# Rendered by scripts/local-cluster.sh from examples/config/worker.toml.
admin_listen = "127.0.0.1:${wk_admin[$i]}"
$text

# Hand-offs only over mTLS, from gateways holding a certificate of the hand-off CA.
[worker.tls]
cert = "$certs/handoff-worker.pem"
key = "$certs/handoff-worker-key.pem"
client_ca = "$certs/handoff-ca.pem"

# NATS over mTLS: the certificate's subject (CN=switchyard-worker) is the NATS user.
[nats.tls]
ca = "$certs/ca.pem"
cert = "$certs/worker.pem"
key = "$certs/worker-key.pem"
EOF
done

gateway_example=$(cat "$repo/examples/config/gateway.toml")
for i in 0 1; do
  id=g$((i + 1))
  text=$gateway_example
  text=$(replace examples/config/gateway.toml "$text" 'listen = "127.0.0.1:8443"' "listen = \"127.0.0.1:${gw_port[$i]}\"")
  text=$(replace examples/config/gateway.toml "$text" '".switchyard/dev/' "\"$dev/")
  text=$(replace examples/config/gateway.toml "$text" 'url = "nats://127.0.0.1:4222"' "url = \"$nats_urls\"")
  text=$(replace examples/config/gateway.toml "$text" 'replicas = 1' 'replicas = 3')
  cat >"$confdir/$id.toml" <<EOF
# Rendered by scripts/local-cluster.sh from examples/config/gateway.toml.
admin_listen = "127.0.0.1:${gw_admin[$i]}"
$text

# Hand-offs over mTLS: workers' certificates must chain to the hand-off CA.
[internal_tls]
ca = "$certs/handoff-ca.pem"
cert = "$certs/handoff-gateway.pem"
key = "$certs/handoff-gateway-key.pem"

# NATS over mTLS as user CN=switchyard-gateway.
[nats.tls]
ca = "$certs/ca.pem"
cert = "$certs/gateway.pem"
key = "$certs/gateway-key.pem"
EOF
done

for f in "$confdir"/w*.toml; do
  "$binary" worker --config "$f" --check-config >/dev/null 2>"$logs/check.log" ||
    { cat "$logs/check.log" >&2; die "$f does not validate"; }
done
for f in "$confdir"/g*.toml; do
  "$binary" gateway --config "$f" --check-config >/dev/null 2>"$logs/check.log" ||
    { cat "$logs/check.log" >&2; die "$f does not validate"; }
done
rm -f "$logs/check.log"

# --- Processes ----------------------------------------------------------------------

names=() pids=() logfiles=() stopping=0

# start NAME COMMAND...: in the background, in a process group of its own (set -m),
# stdin closed, stdout and stderr to logs/NAME.log.
start() {
  local name=$1
  shift
  set -m
  "$@" </dev/null >"$logs/$name.log" 2>&1 &
  local pid=$!
  set +m
  names+=("$name") pids+=("$pid") logfiles+=("$logs/$name.log")
  echo "$name $pid" >>"$state/pids"
}

alive() { kill -0 "$1" 2>/dev/null; }

# signal_all SIGNAL PREFIX: to the process group of every child whose name starts so.
signal_all() {
  local i
  for i in "${!names[@]}"; do
    case ${names[$i]} in "$2"*) ;; *) continue ;; esac
    alive "${pids[$i]}" || continue
    kill -s "$1" -- "-${pids[$i]}" 2>/dev/null || kill -s "$1" "${pids[$i]}" 2>/dev/null || true
  done
}

# wait_gone SECONDS PREFIX...: until no child with one of these prefixes runs.
wait_gone() {
  local deadline=$((SECONDS + $1)) i prefix left
  shift
  while :; do
    left=
    for i in "${!names[@]}"; do
      for prefix in "$@"; do
        case ${names[$i]} in "$prefix"*) alive "${pids[$i]}" && left+=" ${names[$i]}" ;; esac
      done
    done
    [ -z "$left" ] && return 0
    [ "$SECONDS" -ge "$deadline" ] && { say "still running:$left"; return 1; }
    sleep 0.2
  done
}

# Gateways and workers first (workers drain, up to 30 s), then the NATS nodes.
stop_all() {
  [ "$stopping" = 1 ] && return 0
  stopping=1
  trap '' INT TERM HUP
  [ ${#names[@]} -eq 0 ] && { rm -f "$state/run.pid"; return 0; }
  say "stopping gateways and workers"
  signal_all TERM g
  signal_all TERM w
  if ! wait_gone 45 g w; then
    say "killing what is left of them (SIGKILL)"
    signal_all KILL g
    signal_all KILL w
    wait_gone 5 g w || true
  fi
  say "stopping the NATS nodes"
  signal_all TERM n
  if ! wait_gone 15 n; then
    say "killing what is left of them (SIGKILL)"
    signal_all KILL n
    wait_gone 5 n || true
  fi
  : >"$state/pids"
  rm -f "$state/run.pid"
  say "stopped"
}

on_signal() {
  echo >&2
  say "got SIG$1"
  stop_all
  exit 0
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP
trap 'status=$?; stop_all; exit $status' EXIT

tail_of() {
  echo "--- the last 40 lines of $1 ---" >&2
  tail -n 40 "$1" >&2 || true
  echo "---" >&2
}

# check_started: when a child has exited, stop everything and show its log.
check_started() {
  local i status
  for i in "${!names[@]}"; do
    alive "${pids[$i]}" && continue
    status=0
    wait "${pids[$i]}" 2>/dev/null || status=$?
    say "${names[$i]} exited while starting (status $status)"
    tail_of "${logfiles[$i]}"
    stop_all
    exit 1
  done
}

# http_get PORT PATH: the response (status line, headers, body) of a loopback GET.
# (The single quotes are meant: $0 and $1 expand in the inner shell.)
# shellcheck disable=SC2016
http_get() {
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$1" >&3
    cat <&3' "$1" "$2" 2>/dev/null || true
}
http_ok() { case $(http_get "$1" "$2" | head -n 1) in *" 200 "*) return 0 ;; esac; return 1; }

deadline=$((SECONDS + start_timeout))
# await WHAT COMMAND...: until COMMAND succeeds, checking that every child still runs.
await() {
  local what=$1
  shift
  until "$@"; do
    check_started
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "timed out after ${start_timeout}s waiting for $what"
      local i
      for i in "${!names[@]}"; do tail_of "${logfiles[$i]}"; done
      exit 1
    fi
    sleep 0.2
  done
}

gateway_routes_all() {
  http_ok "$1" /readyz &&
    http_get "$1" /metrics | grep -q '^switchyard_gateway_routable_workers 3$'
}

export SWITCHYARD_LOG=$log_filter NO_COLOR=1
overrides=$(env | sed -n 's/^\(SWITCHYARD__[^=]*\)=.*/\1/p' | tr '\n' ' ')
[ -n "$overrides" ] && say "note: these overrides reach every process: $overrides"

say "starting NATS n1..n3 (ports ${nats_port[*]}, nats-server $nats_version)"
for i in 0 1 2; do
  start "n$((i + 1))" "$nats_server" -c "$natsdir/n$((i + 1)).conf"
done
for i in 0 1 2; do
  await "NATS n$((i + 1)) to be healthy (JetStream with a meta leader)" http_ok "${mon_port[$i]}" /healthz
done

say "starting workers w1..w3"
for i in 0 1 2; do
  start "w$((i + 1))" "$binary" worker --config "$confdir/w$((i + 1)).toml"
done
for i in 0 1 2; do
  await "worker w$((i + 1)) to be ready" http_ok "${wk_admin[$i]}" /readyz
done

say "starting gateways g1, g2"
for i in 0 1; do
  start "g$((i + 1))" "$binary" gateway --config "$confdir/g$((i + 1)).toml"
done
for i in 0 1; do
  await "gateway g$((i + 1)) to route to all three workers" gateway_routes_all "${gw_admin[$i]}"
done

# --- Ready --------------------------------------------------------------------------

q() { printf '%q' "$1"; }
bin=$(q "$binary") devq=$(q "$dev")
cat <<EOF

Switchyard local cluster: 3 NATS nodes (JetStream, R3, mTLS), 3 workers, 2 gateways

  gateway g1  wss://localhost:${gw_port[0]}/ws    admin http://127.0.0.1:${gw_admin[0]}/metrics
  gateway g2  wss://localhost:${gw_port[1]}/ws    admin http://127.0.0.1:${gw_admin[1]}/metrics
  worker  w1  127.0.0.1:${wk_port[0]} (mTLS hand-offs)   admin http://127.0.0.1:${wk_admin[0]}/metrics
  worker  w2  127.0.0.1:${wk_port[1]} (mTLS hand-offs)   admin http://127.0.0.1:${wk_admin[1]}/metrics
  worker  w3  127.0.0.1:${wk_port[2]} (mTLS hand-offs)   admin http://127.0.0.1:${wk_admin[2]}/metrics
  nats    n1  nats://127.0.0.1:${nats_port[0]} (mTLS)   monitoring http://127.0.0.1:${mon_port[0]}/jsz
  nats    n2  nats://127.0.0.1:${nats_port[1]} (mTLS)   monitoring http://127.0.0.1:${mon_port[1]}/jsz
  nats    n3  nats://127.0.0.1:${nats_port[2]} (mTLS)   monitoring http://127.0.0.1:${mon_port[2]}/jsz
  state       $state  (public CA: dev/ca.pem, JWT secret: dev/jwt.secret, API key: dev/api.key, internal certs: certs/)
  configs     $confdir/{g1,g2,w1,w2,w3}.toml, $natsdir/{n1,n2,n3}.conf
  logs        $logs/{g1,g2,w1,w2,w3,n1,n2,n3}.log

A token (HS256, signed with dev/jwt.secret; send it as "Authorization: Bearer ..."):

  $bin token --state-dir $devq --user carol --sub 'lobby,chat.>' --pub lobby --ttl 1h

Chat across the mesh: one terminal on each gateway, each pinned to another worker (the
sticky path /ws/<worker>/<conn>); every line crosses NATS:

  $bin chat lobby --state-dir $devq --user alice --url wss://localhost:${gw_port[0]}/ws/w1/a
  $bin chat lobby --state-dir $devq --user bob --url wss://localhost:${gw_port[1]}/ws/w2/b

Publish through either gateway's HTTP API:

  curl -s --cacert $devq/ca.pem -H "Authorization: Bearer \$(cat $devq/api.key)" -d '{"room":"lobby","data":{"text":"hi"}}' https://localhost:${gw_port[0]}/api/v1/publish

ready: 8 processes (pids ${pids[*]}); Ctrl-C or SIGTERM stops them all
EOF

# --- Running ------------------------------------------------------------------------

# Until a signal (the traps stop everything). A process that dies now is reported and
# the rest keep running, as they would in production: its clients move elsewhere.
reported=()
while :; do
  for i in "${!names[@]}"; do
    alive "${pids[$i]}" && continue
    case " ${reported[*]-} " in *" ${names[$i]} "*) continue ;; esac
    reported+=("${names[$i]}")
    status=0
    wait "${pids[$i]}" 2>/dev/null || status=$?
    say "warning: ${names[$i]} exited (status $status); the others keep running"
    tail_of "${logfiles[$i]}"
  done
  if [ ${#reported[@]} -eq ${#names[@]} ]; then
    say "every process has exited"
    exit 1
  fi
  sleep 1
done
