#!/usr/bin/env bash
# PgBouncer in transaction mode in front of the local PostgreSQL, for the tests that run
# fsmstore through a transaction pooler (backend-postgres/tests/pgbouncer.rs).
#
#   scripts/pgbouncer.sh start    install Debian's pgbouncer if missing, start it (idempotent)
#   scripts/pgbouncer.sh stop     stop the instance this script started
#   scripts/pgbouncer.sh status   exit 0 when it answers
#   scripts/pgbouncer.sh url      the URL tests read (FSMSTORE_TEST_PGBOUNCER_URL)
#
# It listens on 127.0.0.1:${FSMSTORE_PGBOUNCER_PORT:-6432} with its own files under
# ${FSMSTORE_PGBOUNCER_DIR:-/tmp/fsmstore-pgbouncer}, and runs as the postgres user
# (PgBouncer refuses to run as root). The shared PostgreSQL on 5432 is not touched.
set -euo pipefail
port="${FSMSTORE_PGBOUNCER_PORT:-6432}"
dir="${FSMSTORE_PGBOUNCER_DIR:-/tmp/fsmstore-pgbouncer}"
upstream_port="${FSMSTORE_PGBOUNCER_UPSTREAM_PORT:-5432}"
user=postgres
url="postgres://postgres@127.0.0.1:$port/postgres"

# Ours, answering: the instance of our pid file (not, say, Debian's session-mode service).
ours() {
  local pid
  pid="$(cat "$dir/pgbouncer.pid" 2>/dev/null)" || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$dir/pgbouncer.ini"
}
up() { ours && pg_isready -h 127.0.0.1 -p "$port" -q 2>/dev/null; }

start() {
  if up; then echo "pgbouncer: up on $port"; return 0; fi
  if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
    echo "pgbouncer: installing Debian's pgbouncer" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null
    # The package's own service is not ours to run.
    (service pgbouncer stop || true) >/dev/null 2>&1
  fi
  local bin; bin="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
  mkdir -p "$dir"
  cat > "$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$upstream_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
reserve_pool_size = 0
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
admin_users = postgres
INI
  printf '"postgres" ""\n"root" ""\n' > "$dir/userlist.txt"
  chown -R "$user" "$dir"
  su "$user" -s /bin/sh -c "$bin -d -q '$dir/pgbouncer.ini'"
  for _ in $(seq 1 50); do
    if up; then echo "pgbouncer: up on $port (transaction mode)"; return 0; fi
    sleep 0.2
  done
  echo "pgbouncer: did not come up; see $dir/pgbouncer.log" >&2
  return 1
}

stop() {
  if ours; then
    kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true
  fi
  rm -f "$dir/pgbouncer.pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) up ;;
  url) echo "$url" ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
