#!/usr/bin/env bash
# A three-node MariaDB Galera cluster on 127.0.0.1, for the tests that run fsmstore on a
# multi-primary cluster (backend-mysql/tests/conformance.rs, module galera).
#
#   scripts/galera.sh start     install Debian's galera-4 if missing, start the nodes that
#                               are down (bootstrapping when none runs), wait for
#                               wsrep_cluster_size = 3 (idempotent)
#   scripts/galera.sh stop      stop the nodes this script started
#   scripts/galera.sh status    exit 0 when all three nodes are in the cluster
#   scripts/galera.sh urls      the URLs tests read (FSMSTORE_TEST_GALERA_URLS)
#   scripts/galera.sh kill N    kill -9 node N (1-3); `start` brings it back
#
# Node N listens on ${FSMSTORE_GALERA_ADDRESS_N:-127.0.0.1}:(${FSMSTORE_GALERA_PORT:-13060} + N)
# for clients (below the
# kernel's ephemeral range, 32768 and up, where a client socket of the tests may hold the
# port: that stopped a node at start, "Address already in use") and
# 127.0.0.1:(${FSMSTORE_GALERA_GCOMM_PORT:-4560} + 10N) for group communication (+1 IST,
# +2 SST), with its data under
# ${FSMSTORE_GALERA_DIR:-/tmp/fsmstore-galera}/nodeN. The nodes run as the mysql user,
# which owns their data (rsync state transfer runs a daemon as the node's user), and
# read no other configuration: the shared MariaDB on 3306 is not touched. With
# FSMSTORE_GALERA_NETNS_N set, node N runs inside that network namespace (a test's own,
# to cut the node's link), listening on its FSMSTORE_GALERA_ADDRESS_N.
set -euo pipefail
base="${FSMSTORE_GALERA_PORT:-13060}"
dir="${FSMSTORE_GALERA_DIR:-/tmp/fsmstore-galera}"
nodes=(1 2 3)

port() { echo $((base + $1)); }
addr() { local v="FSMSTORE_GALERA_ADDRESS_$1"; echo "${!v:-127.0.0.1}"; }
netns_of() { local v="FSMSTORE_GALERA_NETNS_$1"; echo "${!v:-}"; }
gport() { echo $((${FSMSTORE_GALERA_GCOMM_PORT:-4560} + 10 * $1)); }
sql() { # node, statement (over the node's socket: whatever address it listens on)
  mariadb -S "$dir/node$1/mysqld.sock" -u root -N -B -e "$2" 2>/dev/null
}
# The pid of node N's mariadbd, if it runs (a stale pid file of a reused pid is not it).
pid_of() {
  local pid
  pid="$(cat "$dir/node$1/mysqld.pid" 2>/dev/null)" || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "--defaults-file=$dir/node$1/my.cnf" || return 1
  echo "$pid"
}
alive() { pid_of "$1" >/dev/null; }
size() { sql "$1" "SHOW STATUS LIKE 'wsrep_cluster_size'" | awk '{print $2}'; }
three() { [ "$(size "$1")" = 3 ]; }
synced() { [ "$(sql "$1" "SHOW STATUS LIKE 'wsrep_local_state_comment'" | awk '{print $2}')" = "Synced" ]; }

config() { # node
  local n=$1 g; g=$(gport "$n")
  local peers="" m
  for m in "${nodes[@]}"; do peers="$peers,$(addr "$m"):$(gport "$m")"; done
  local a; a=$(addr "$n")
  mkdir -p "$dir/node$n/data"
  cat > "$dir/node$n/my.cnf" <<CNF
[mysqld]
user = mysql
datadir = $dir/node$n/data
socket = $dir/node$n/mysqld.sock
pid-file = $dir/node$n/mysqld.pid
log-error = $dir/node$n/error.log
port = $(port "$n")
bind-address = $a
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
innodb_buffer_pool_size = 64M
innodb_log_file_size = 16M
innodb_flush_log_at_trx_commit = 0
max_connections = 300
wsrep_on = ON
wsrep_provider = /usr/lib/galera/libgalera_smm.so
wsrep_cluster_name = fsmstore_test_$base
wsrep_cluster_address = gcomm://${peers#,}
wsrep_node_name = node$n
wsrep_node_address = $a:$g
# A killed node stalls the cluster's commits until the others declare it gone
# (evs.suspect_timeout, 5 s by default): on one machine 2 s leaves room for a loaded host.
wsrep_provider_options = "gmcast.listen_addr=tcp://$a:$g;ist.recv_addr=$a:$((g + 1));gcache.size=64M;evs.keepalive_period=PT0.5S;evs.suspect_timeout=PT2S;evs.inactive_timeout=PT6S;evs.install_timeout=PT6S"
wsrep_sst_method = rsync
wsrep_sst_receive_address = $a:$((g + 2))
CNF
  if [ ! -d "$dir/node$n/data/mysql" ]; then
    mariadb-install-db --defaults-file="$dir/node$n/my.cnf" --auth-root-authentication-method=normal \
      --skip-test-db >"$dir/node$n/install.log" 2>&1
  fi
  chown -R mysql:mysql "$dir/node$n"
}

launch() { # node, extra args... (mariadbd switches to the mysql user of its my.cnf)
  local n=$1; shift
  local ns; ns=$(netns_of "$n")
  if [ -n "$ns" ]; then
    setsid ip netns exec "$ns" /usr/sbin/mariadbd --defaults-file="$dir/node$n/my.cnf" "$@" \
      >>"$dir/node$n/stdout.log" 2>&1 </dev/null &
  else
    setsid /usr/sbin/mariadbd --defaults-file="$dir/node$n/my.cnf" "$@" \
      >>"$dir/node$n/stdout.log" 2>&1 </dev/null &
  fi
}

wait_for() { # what, seconds, command...
  local what=$1 seconds=$2; shift 2
  for _ in $(seq 1 $((seconds * 5))); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  echo "galera: $what did not happen in ${seconds}s (logs: $dir/node*/error.log)" >&2
  local n
  for n in "${nodes[@]}"; do
    echo "--- node $n:" >&2
    tail -n 8 "$dir/node$n/error.log" >&2 2>/dev/null || true
  done
  return 1
}

start() {
  if ! [ -f /usr/lib/galera/libgalera_smm.so ]; then
    echo "galera: installing Debian's galera-4" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q galera-4 rsync >/dev/null
  fi
  mkdir -p "$dir"
  local n running=0
  for n in "${nodes[@]}"; do
    config "$n"
    if alive "$n"; then running=$((running + 1)); fi
  done
  if [ "$running" -eq 0 ]; then
    # A new cluster bootstraps from the node with the newest data, so nothing newer is
    # overwritten: the one Galera marked safe_to_bootstrap (it stopped last), else the
    # highest recorded seqno; all new: node 1.
    local first=1 best=-2 seqno
    for n in "${nodes[@]}"; do
      if grep -q '^safe_to_bootstrap: 1' "$dir/node$n/data/grastate.dat" 2>/dev/null; then first=$n; best=""; break; fi
      seqno="$(awk '/^seqno:/ {print $2}' "$dir/node$n/data/grastate.dat" 2>/dev/null || true)"
      if [ -n "$seqno" ] && [ "$seqno" -gt "$best" ]; then first=$n; best=$seqno; fi
    done
    sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$dir/node$first/data/grastate.dat" 2>/dev/null || true
    launch "$first" --wsrep-new-cluster
    wait_for "node $first bootstrap" 60 synced "$first"
    # Clients over TCP: from 127.0.0.1, and from a test's own namespaces (10.213.x.x).
    local setup="CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; CREATE USER IF NOT EXISTS 'root'@'10.213.%'; GRANT ALL ON *.* TO 'root'@'10.213.%' WITH GRANT OPTION; CREATE DATABASE IF NOT EXISTS test"
    sql "$first" "$setup" || mariadb -S "$dir/node$first/mysqld.sock" -u root -e "$setup"
  fi
  # Join the others one at a time (each takes a state transfer from a running node).
  for n in "${nodes[@]}"; do
    if ! alive "$n"; then
      launch "$n"
      wait_for "node $n joining" 120 synced "$n"
    fi
  done
  wait_for "a cluster of 3" 60 three 1
  echo "galera: 3 nodes synced on $(port 1), $(port 2), $(port 3)"
}

stop() {
  local n
  local pid
  for n in 3 2 1; do
    if pid="$(pid_of "$n")"; then
      kill "$pid" 2>/dev/null || true
      wait_for "node $n stopping" 60 bash -c "! kill -0 $pid 2>/dev/null"
    fi
  done
}

status() {
  local n
  for n in "${nodes[@]}"; do synced "$n" || return 1; done
  three 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  urls) echo "mysql://root@$(addr 1):$(port 1)/test,mysql://root@$(addr 2):$(port 2)/test,mysql://root@$(addr 3):$(port 3)/test" ;;
  kill) kill -9 "$(pid_of "${2:?node}")" ;;
  *) echo "usage: $0 start|stop|status|urls|kill N" >&2; exit 2 ;;
esac
