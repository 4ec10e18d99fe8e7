#!/usr/bin/env bash
# The README's test command: every test of the workspace, with what they need brought up
# first and stopped afterwards.
#
#   scripts/test.sh [cargo test arguments…]
#
# - starts the shared PostgreSQL (5432), MariaDB (3306) and Redis (6379) if they are installed
#   and down
#   (never stops or reconfigures them);
# - installs the Debian packages the private servers need when missing (pgbouncer,
#   galera-4, rsync, python3-venv; one `apt-get update` first), as root;
# - starts PgBouncer (6432), a three-node Galera cluster (13061-13063), a six-node Redis
#   Cluster (17001-17006) and Redis Sentinel (17301-17302, sentinels 17311-17313) unless they run
#   already, and stops at the end only what it started;
# - makes the pinned Python virtualenv of the co-existence tests;
# - runs `cargo test --workspace --all-features`, then (without arguments) builds and runs
#   compat/teloxide-side-by-side.
# A test whose server is still missing is listed as ignored, with the reason, in its
# binary's summary (and fails under CI): nothing counts as passed that did not run.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "test.sh: $*" >&2; }

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then say "$name is up"; return 0; fi
    sleep 1
  done
  say "$name did not come up"
  return 1
}

apt_updated=
need_packages() { # package... : installs the missing ones
  local missing=() package
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    say "missing Debian packages ${missing[*]}: install them (as root) or their tests are listed as ignored"
    return 0
  fi
  if [ -z "$apt_updated" ]; then
    say "apt-get update"
    apt-get update -q >/dev/null
    apt_updated=1
  fi
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }
mysql_up() { mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }

if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_up; then
  say "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  wait_for PostgreSQL pg_up
fi
if [ -x /usr/sbin/mariadbd ] && ! mysql_up; then
  say "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  wait_for MariaDB mysql_up
fi
if command -v redis-server >/dev/null 2>&1 && ! redis_up; then
  say "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 >/dev/null || true
  wait_for Redis redis_up
fi

need_packages pgbouncer galera-4 rsync python3-venv

# What this run starts, it stops at the end (also on failure or Ctrl-C).
started=()
stop_started() {
  local s
  for s in ${started[@]+"${started[@]}"}; do "scripts/$s.sh" stop || true; done
}
trap stop_started EXIT
# A server that does not come up leaves its tests listed as ignored, with the reason (and
# failing under CI); the other tests still run.
for s in pgbouncer galera redis-cluster redis-sentinel; do
  if ! "scripts/$s.sh" status; then
    started+=("$s")
    "scripts/$s.sh" start || say "$s did not start: its tests will say so"
  fi
done
FSMSTORE_TEST_PGBOUNCER_URL="$(scripts/pgbouncer.sh url)"
FSMSTORE_TEST_GALERA_URLS="$(scripts/galera.sh urls)"
FSMSTORE_TEST_REDIS_CLUSTER_URL="$(scripts/redis-cluster.sh urls)"
FSMSTORE_TEST_REDIS_SENTINEL_URL="$(scripts/redis-sentinel.sh urls)"
export FSMSTORE_TEST_PGBOUNCER_URL FSMSTORE_TEST_GALERA_URLS FSMSTORE_TEST_REDIS_CLUSTER_URL \
  FSMSTORE_TEST_REDIS_SENTINEL_URL
if FSMSTORE_TEST_PYTHON="$(scripts/python-venv.sh)"; then
  export FSMSTORE_TEST_PYTHON
  say "Python peer: $FSMSTORE_TEST_PYTHON"
else
  say "the Python virtualenv could not be made: the co-existence tests will say so"
fi

cargo test --workspace --all-features "$@"

# A teloxide bot in the middle of moving (compat/teloxide-side-by-side): teloxide's own
# SQLite storage (sqlx 0.8, libsqlite3-sys 0.30) and fsmstore's SQLite backend in one crate
# with its own lock file, where fsmstore-sqlite resolves to the oldest rusqlite it accepts
# (the workspace above builds and tests the newest); built and run. With the whole suite.
if [ "$#" -eq 0 ]; then
  cargo run -q --manifest-path compat/teloxide-side-by-side/Cargo.toml \
    --target-dir target/side-by-side
fi
