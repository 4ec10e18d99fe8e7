#!/usr/bin/env bash
# Redis behind Sentinel: a primary, a replica and three sentinels watching them (service
# name `fsmstore`, quorum 2), for the tests that run fsmstore through sentinel
# (backend-redis/tests/sentinel.rs).
#
#   scripts/redis-sentinel.sh start     start the five processes (idempotent)
#   scripts/redis-sentinel.sh stop      stop the processes this script started, by pid
#   scripts/redis-sentinel.sh status    exit 0 when a primary has a synced replica and
#                                       every sentinel knows the primary and the others
#   scripts/redis-sentinel.sh urls      the URL tests read (FSMSTORE_TEST_REDIS_SENTINEL_URL)
#   scripts/redis-sentinel.sh primary   the port of the current primary (sentinels' view)
#   scripts/redis-sentinel.sh kill N    kill -9 data node N (1: first primary, 2: replica)
#   scripts/redis-sentinel.sh revive N  start data node N again, as a replica of the
#                                       primary the sentinels name (as an operator would:
#                                       without persistence it comes back empty)
#
# Data nodes listen on 127.0.0.1:${FSMSTORE_REDIS_SENTINEL_PORT:-17301} and +1, sentinels
# on +10..+12, each with its own directory under
# ${FSMSTORE_REDIS_SENTINEL_DIR:-/tmp/fsmstore-redis-sentinel}; no persistence. The shared
# Redis on 6379 is not touched.
set -euo pipefail
first="${FSMSTORE_REDIS_SENTINEL_PORT:-17301}"
dir="${FSMSTORE_REDIS_SENTINEL_DIR:-/tmp/fsmstore-redis-sentinel}"
service=fsmstore
data=("$first" $((first + 1)))
sentinels=($((first + 10)) $((first + 11)) $((first + 12)))

# The pid on `port`, if it is ours and alive.
pid_of() {
  local port=$1 pid
  pid="$(cat "$dir/$port/redis.pid" 2>/dev/null)" || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- ":$port" || return 1
  echo "$pid"
}

cli() { redis-cli -h 127.0.0.1 -p "$@" 2>/dev/null; }

# The primary's port as the first sentinel that answers says.
primary() {
  local port answer
  for port in "${sentinels[@]}"; do
    answer="$(cli "$port" sentinel get-master-addr-by-name "$service" | sed -n 2p)"
    if [ -n "$answer" ]; then echo "$answer"; return 0; fi
  done
  return 1
}

up() {
  local port primary_port
  for port in "${data[@]}" "${sentinels[@]}"; do pid_of "$port" >/dev/null || return 1; done
  primary_port="$(primary)" || return 1
  cli "$primary_port" info replication | grep -q "role:master" || return 1
  # The replica finished its sync (else a killed primary has no one to fail over to).
  for port in "${data[@]}"; do
    [ "$port" = "$primary_port" ] && continue
    cli "$port" info replication | grep -q "master_link_status:up" || return 1
  done
  # Every sentinel agrees on the primary, sees the replica and the two other sentinels.
  for port in "${sentinels[@]}"; do
    [ "$(cli "$port" sentinel get-master-addr-by-name "$service" | sed -n 2p)" = "$primary_port" ] || return 1
    cli "$port" sentinel master "$service" | tr -d '\r' | grep -A1 -x "num-other-sentinels" | tail -1 | grep -qx 2 || return 1
    cli "$port" sentinel master "$service" | tr -d '\r' | grep -A1 -x "num-slaves" | tail -1 | grep -qx 1 || return 1
  done
}

# Starts data node `port`, a replica of the node on port `$2` if given.
data_node() {
  local port=$1 of=${2:-}
  local args=(--port "$port" --bind 127.0.0.1 --daemonize yes
    --dir "$dir/$port" --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log"
    --save "" --appendonly no)
  if [ -n "$of" ]; then args+=(--replicaof 127.0.0.1 "$of"); fi
  redis-server "${args[@]}"
}

sentinel_node() {
  local port=$1
  # Sentinel rewrites its configuration file: each has its own.
  cat >"$dir/$port/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
daemonize yes
dir $dir/$port
pidfile $dir/$port/redis.pid
logfile $dir/$port/redis.log
sentinel monitor $service 127.0.0.1 ${data[0]} 2
sentinel down-after-milliseconds $service 1000
sentinel failover-timeout $service 5000
sentinel parallel-syncs $service 1
EOF
  redis-server "$dir/$port/sentinel.conf" --sentinel
}

start() {
  if up; then echo "redis-sentinel: up (primary on $(primary), sentinels on ${sentinels[0]}-${sentinels[2]})"; return 0; fi
  stop
  local port
  for port in "${data[@]}" "${sentinels[@]}"; do
    rm -rf "${dir:?}/$port"
    mkdir -p "$dir/$port"
  done
  data_node "${data[0]}"
  data_node "${data[1]}" "${data[0]}"
  for port in "${sentinels[@]}"; do sentinel_node "$port"; done
  for _ in $(seq 1 150); do
    if up; then echo "redis-sentinel: up (primary on $(primary), sentinels on ${sentinels[0]}-${sentinels[2]})"; return 0; fi
    sleep 0.2
  done
  echo "redis-sentinel: did not come up; see $dir/*/redis.log" >&2
  return 1
}

stop() {
  local port pid
  for port in "${sentinels[@]}" "${data[@]}"; do
    if pid="$(pid_of "$port")"; then kill "$pid" 2>/dev/null || true; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) up ;;
  urls) echo "redis+sentinel://127.0.0.1:${sentinels[0]},127.0.0.1:${sentinels[1]},127.0.0.1:${sentinels[2]}/$service" ;;
  primary) primary ;;
  kill) pid="$(pid_of "${data[$(($2 - 1))]}")" && kill -9 "$pid" ;;
  revive) data_node "${data[$(($2 - 1))]}" "$(primary)" ;;
  *) echo "usage: $0 start|stop|status|urls|primary|kill N|revive N" >&2; exit 2 ;;
esac
