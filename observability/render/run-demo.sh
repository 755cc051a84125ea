#!/usr/bin/env bash
# A real run for the dashboard pictures: `switchyard dev --cluster` (two workers on a
# local nats-server), a Prometheus scraping its admin listener every second, a workload
# of chat subscribers on both workers (one of them too slow to read), publishes through
# the HTTP API and from chats at changing rates, then a drain; finally render.py draws
# the dashboard from that Prometheus into observability/render/dashboard.png.
# Needs: a built switchyard, nats-server, prometheus (Debian's package), python3 with
# matplotlib.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)
BIN=${SWITCHYARD_BIN:-$ROOT/target/debug/switchyard}
SECONDS_OF_LOAD=${SECONDS_OF_LOAD:-150}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" dev --cluster --plain --listen 127.0.0.1:18443 --admin-listen 127.0.0.1:19464 \
  --state-dir "$WORK/state" >"$WORK/dev.out" 2>"$WORK/dev.err" &
DEV=$!
PIDS+=("$DEV")
until curl -sf http://127.0.0.1:19464/readyz >/dev/null; do sleep 0.2; done

cat >"$WORK/prometheus.yml" <<CFG
global: {scrape_interval: 500ms, evaluation_interval: 1s}
scrape_configs:
  - job_name: switchyard-dev
    static_configs: [{targets: ["127.0.0.1:19464"]}]
CFG
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address=127.0.0.1:19090 --enable-feature=exemplar-storage \
  >"$WORK/prometheus.log" 2>&1 &
PIDS+=("$!")
until curl -sf http://127.0.0.1:19090/-/ready >/dev/null; do sleep 0.2; done
START=$(date +%s)

URL=ws://localhost:18443/ws
# Subscribers: three on each worker, reading everything.
for i in 1 2 3 4 5 6; do
  w=$(( i % 2 + 1 ))
  (sleep 100000 | "$BIN" chat lobby --url "$URL/w$w/sub$i" --state-dir "$WORK/state" --user "sub$i" >/dev/null 2>&1) &
  PIDS+=("$!")
done
# A slow consumer: its output is never read, so it stops reading its socket.
mkfifo "$WORK/stuck"
(sleep 100000 | "$BIN" chat lobby --url "$URL/w1/slow" --state-dir "$WORK/state" --user slow >"$WORK/stuck" 2>/dev/null) &
PIDS+=("$!")
exec 3<>"$WORK/stuck"  # held open, never read
# Two chat publishers, one per worker, typing a line every 100 ms.
for w in 1 2; do
  (for n in $(seq 1 100000); do echo "line $n from w$w"; sleep 0.1; done | \
    "$BIN" chat lobby --url "$URL/w$w/pub$w" --state-dir "$WORK/state" --user "pub$w" >/dev/null 2>&1) &
  PIDS+=("$!")
done
sleep 5

KEY=$(cat "$WORK/state/api.key")
publish() {
  curl -s -o /dev/null -H "Authorization: Bearer $KEY" \
    -d "{\"room\":\"lobby\",\"data\":{\"n\":$1,\"pad\":\"$(head -c 200 /dev/zero | tr '\0' x)\"}}" \
    http://127.0.0.1:18443/api/v1/publish
}
# The HTTP API: a quiet phase, a burst, quiet again.
END_LOAD=$(( $(date +%s) + SECONDS_OF_LOAD ))
n=0
while [ "$(date +%s)" -lt "$END_LOAD" ]; do
  elapsed=$(( $(date +%s) - START ))
  if [ $(( (elapsed / 40) % 2 )) -eq 1 ]; then burst=20; else burst=2; fi
  for _ in $(seq 1 "$burst"); do n=$((n + 1)); publish "$n" & done
  wait_for=$!
  wait "$wait_for" 2>/dev/null || true
  sleep 0.1
done
# Drain: every client is told to reconnect; scrapes go on until the process ends.
kill -TERM "$DEV"
wait "$DEV" 2>/dev/null || true
sleep 3
END=$(date +%s)
python3 render.py --prometheus http://127.0.0.1:19090 \
  --dashboard ../grafana/dashboards/switchyard.json \
  --start "$START" --end "$END" --out dashboard.png
