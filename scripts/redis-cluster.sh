#!/usr/bin/env bash
# A Redis Cluster of six nodes (three primaries, three replicas) for the tests that run
# fsmstore on a cluster (backend-redis/tests/cluster.rs).
#
#   scripts/redis-cluster.sh start    start the six nodes and create the cluster (idempotent)
#   scripts/redis-cluster.sh stop     stop the nodes this script started, by pid
#   scripts/redis-cluster.sh status   exit 0 when the cluster answers and is ok
#   scripts/redis-cluster.sh urls     the URL tests read (FSMSTORE_TEST_REDIS_CLUSTER_URL)
#   scripts/redis-cluster.sh kill N   kill -9 node N (1-6), for the failover tests
#   scripts/redis-cluster.sh revive N start node N again (it rejoins as a replica)
#
# Nodes listen on 127.0.0.1:${FSMSTORE_REDIS_CLUSTER_PORT:-17001}..+5 with their own
# directories under ${FSMSTORE_REDIS_CLUSTER_DIR:-/tmp/fsmstore-redis-cluster}, no
# persistence. The shared Redis on 6379 is not touched.
set -euo pipefail
first="${FSMSTORE_REDIS_CLUSTER_PORT:-17001}"
dir="${FSMSTORE_REDIS_CLUSTER_DIR:-/tmp/fsmstore-redis-cluster}"
ports=()
for n in 0 1 2 3 4 5; do ports+=($((first + n))); done

# Node N's pid, if it is ours and alive.
pid_of() {
  local port=$1 pid
  pid="$(cat "$dir/$port/redis.pid" 2>/dev/null)" || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- ":$port" || return 1
  echo "$pid"
}

up() {
  local port replicas=0
  for port in "${ports[@]}"; do pid_of "$port" >/dev/null || return 1; done
  redis-cli -h 127.0.0.1 -p "$first" cluster info 2>/dev/null | grep -q "cluster_state:ok" || return 1
  # Every primary has a replica that finished its sync (else a killed primary's slots
  # would have no one to fail over to).
  for port in "${ports[@]}"; do
    if redis-cli -h 127.0.0.1 -p "$port" info replication 2>/dev/null | grep -q "master_link_status:up"; then
      replicas=$((replicas + 1))
    fi
  done
  [ "$replicas" -eq 3 ]
}

# Starts the node on `port` (its cluster state, kept in its directory, lets a restarted
# node rejoin: a killed primary comes back as a replica of the one promoted in its place).
node() {
  local port=$1
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
    --dir "$dir/$port" --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log" \
    --cluster-enabled yes --cluster-config-file "$dir/$port/nodes.conf" \
    --cluster-node-timeout 2000 --save "" --appendonly no
}

start() {
  if up; then echo "redis-cluster: up on ${ports[0]}-${ports[5]}"; return 0; fi
  stop
  local port
  for port in "${ports[@]}"; do
    rm -rf "${dir:?}/$port"
    mkdir -p "$dir/$port"
    node "$port"
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 50); do
      redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  local hosts=()
  for port in "${ports[@]}"; do hosts+=("127.0.0.1:$port"); done
  redis-cli --cluster create "${hosts[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1
  for _ in $(seq 1 100); do
    if up; then echo "redis-cluster: up on ${ports[0]}-${ports[5]}"; return 0; fi
    sleep 0.2
  done
  echo "redis-cluster: did not come up; see $dir/create.log" >&2
  return 1
}

stop() {
  local port pid
  for port in "${ports[@]}"; do
    if pid="$(pid_of "$port")"; then kill "$pid" 2>/dev/null || true; fi
  done
}

kill_node() {
  local port=$((first + $1 - 1)) pid
  pid="$(pid_of "$port")" && kill -9 "$pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) up ;;
  urls) echo "redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}" ;;
  kill) kill_node "$2" ;;
  revive) node $((first + $2 - 1)) ;;
  *) echo "usage: $0 start|stop|status|urls|kill N|revive N" >&2; exit 2 ;;
esac
