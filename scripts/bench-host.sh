#!/usr/bin/env bash
# Shows, and with --apply sets, the kernel settings `switchyard bench` depends on; then
# runs the command given after `--` with the open-files soft limit at the hard limit.
#
#   scripts/bench-host.sh                      # what is set, what the bench wants
#   scripts/bench-host.sh --apply              # set what falls short (root, or sudo)
#   scripts/bench-host.sh [--apply] -- switchyard bench storm --conns 10000 ...
#
# What the bench wants (docs/TUNING.md explains each):
#   net.core.somaxconn            >= 16384  the accept queue of a listener: a storm of
#                                           10,000 reconnects overflows 4096, and each
#                                           overflow costs its client a 1 s SYN retry
#   net.ipv4.tcp_max_syn_backlog  >= 16384  half-open connections of such a storm
#   net.ipv4.ip_local_port_range  >= 28,000 ports  (the bench spreads its sockets over
#                                           127.1.x.y, 50 per source address)
#   open files (ulimit -n)        the hard limit; it is not raised here (only root, and
#                                 not at all in some containers): the bench spreads its
#                                 sockets over agent processes of at most 15,000 each.
# Settings are changed only upward, and only with --apply; in a container they apply to
# its own network namespace. Nothing is persisted: see docs/TUNING.md for sysctl.d.
set -euo pipefail

apply=0
while [ $# -gt 0 ]; do
  case "$1" in
    --apply) apply=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-host: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done

say() { echo "bench-host: $*" >&2; }

read_sysctl() { cat "/proc/sys/${1//.//}" 2>/dev/null || echo "?"; }

write_sysctl() {
  local key=$1 value=$2
  if [ "$(id -u)" -eq 0 ]; then
    sysctl -q -w "$key=$value" >/dev/null 2>&1
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n sysctl -q -w "$key=$value" >/dev/null 2>&1
  else
    return 1
  fi
}

short=0
# want KEY MINIMUM: reports KEY, raises it to MINIMUM with --apply.
want() {
  local key=$1 min=$2 now
  now=$(read_sysctl "$key")
  if [ "$now" != "?" ] && [ "$now" -ge "$min" ]; then
    say "$key = $now (wanted >= $min): ok"
    return
  fi
  if [ "$apply" -eq 1 ] && write_sysctl "$key" "$min"; then
    say "$key = $(read_sysctl "$key") (was $now)"
    return
  fi
  say "$key = $now, wanted >= $min: run with --apply as root (or: sysctl -w $key=$min)"
  short=1
}

want net.core.somaxconn 16384
want net.ipv4.tcp_max_syn_backlog 16384

range=$(read_sysctl net.ipv4.ip_local_port_range)
read -r low high <<<"$range"
if [ -n "${high:-}" ] && [ $((high - low + 1)) -ge 28000 ]; then
  say "net.ipv4.ip_local_port_range = $low $high ($((high - low + 1)) ports): ok"
elif [ "$apply" -eq 1 ] && write_sysctl net.ipv4.ip_local_port_range "1024 65000"; then
  say "net.ipv4.ip_local_port_range = $(read_sysctl net.ipv4.ip_local_port_range) (was $range)"
else
  say "net.ipv4.ip_local_port_range = $range, wanted 28,000 ports or more: run with --apply as root"
  short=1
fi

soft=$(ulimit -Sn)
hard=$(ulimit -Hn)
if [ "$soft" != "$hard" ]; then
  ulimit -Sn "$hard"
fi
say "open files: soft $(ulimit -Sn), hard $hard (a server process holds one per connection, a gateway two; the bench's agents at most 15,000 each)"
say "listen overflows so far: $(nstat -az TcpExtListenOverflows 2>/dev/null | awk '/ListenOverflows/ {print $2}' || echo '?') (compare after a run: nstat -az TcpExtListenOverflows)"

if [ $# -gt 0 ]; then
  [ "$short" -eq 0 ] || say "running anyway; the figures will show what the settings above cost"
  exec "$@"
fi
