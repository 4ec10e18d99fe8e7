#!/usr/bin/env bash
# Where the two processes of a point read run: a private PostgreSQL whose processes are
# pinned to one CPU, and `fsmstore bench --floor` pinned to the same CPU and then to another,
# so the two placements the kernel otherwise picks at random are measured side by side
# (docs/benchmarks.md, "Fourth sitting").
#
#   scripts/bench-placement.sh [BINARY] [ROUNDS]
#
# BINARY defaults to target/release/fsmstore, ROUNDS (runs of `--rounds 1` per placement)
# to 3. The server listens on 127.0.0.1:${FSMSTORE_PLACEMENT_PORT:-5499} with its files under
# ${FSMSTORE_PLACEMENT_DIR:-/tmp/fsmstore-placement}, runs as the postgres user, is pinned to
# the last CPU, and is stopped (by its pid file) when the script ends, however it ends. The
# shared PostgreSQL on 5432 is not touched. Needs two CPUs, taskset, jq and PostgreSQL's
# server binaries (/usr/lib/postgresql/*/bin).
set -euo pipefail
bin="${1:-target/release/fsmstore}"
rounds="${2:-3}"
port="${FSMSTORE_PLACEMENT_PORT:-5499}"
dir="${FSMSTORE_PLACEMENT_DIR:-/tmp/fsmstore-placement}"
user=postgres

case "$rounds" in '' | *[!0-9]* | 0) echo "ROUNDS must be a positive integer, not '$rounds'" >&2; exit 2 ;; esac
[ -x "$bin" ] || { echo "no fsmstore binary at $bin (cargo build --release -p fsmstore-cli)" >&2; exit 2; }
cpus="$(nproc)"
[ "$cpus" -ge 2 ] || { echo "needs two CPUs, this machine has $cpus" >&2; exit 2; }
pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
[ -x "$pgbin/pg_ctl" ] || { echo "no PostgreSQL server binaries under /usr/lib/postgresql" >&2; exit 2; }
server_cpu=$((cpus - 1))
other_cpu=0

stop() {
  if [ -f "$dir/data/postmaster.pid" ]; then
    su "$user" -s /bin/sh -c "'$pgbin/pg_ctl' -D '$dir/data' -m fast -w stop" >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}
trap stop EXIT

stop
mkdir -p "$dir"
chown "$user" "$dir"
su "$user" -s /bin/sh -c "'$pgbin/initdb' -D '$dir/data' -A trust -U postgres" >/dev/null
su "$user" -s /bin/sh -c "taskset -c $server_cpu '$pgbin/pg_ctl' -D '$dir/data' -w -l '$dir/log' \
  -o '-p $port -k $dir -c listen_addresses=127.0.0.1' start" >/dev/null
url="postgres://postgres@127.0.0.1:$port/postgres"

echo "server pinned to CPU $server_cpu; guest_halt_poll_ns=$(cat /sys/module/haltpoll/parameters/guest_halt_poll_ns 2>/dev/null || echo n/a)"
echo "client CPU   phase      fsmstore p50 µs  cpu µs  | floor p50 µs  cpu µs"
for run in $(seq 1 "$rounds"); do
  for cpu in "$server_cpu" "$other_cpu"; do
    taskset -c "$cpu" "$bin" --url "$url" --json bench --floor --rounds 1 --keys 2000 |
      jq -r --arg cpu "$cpu" --arg same "$([ "$cpu" = "$server_cpu" ] && echo same || echo other)" '
        .phases[] | select(.phase == "get_state" or .phase == "get_data")
        | "\($cpu) (\($same))  \(.phase)  \(.fsmstore.p50_us)  \(.fsmstore.cpu_us)  | \(.floor.p50_us)  \(.floor.cpu_us)"'
  done
done
