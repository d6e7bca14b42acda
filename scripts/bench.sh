#!/usr/bin/env bash
# Commit throughput and latency of a member, side by side with PostgreSQL and with one fsync per commit, in one run on
# one filesystem, written to BENCHMARKS.md. Installs PostgreSQL from the OS packages when it is missing (as root).
#
#   BENCH_DURATION  measured seconds per point (default 10)
#   BENCH_WARMUP    warmup seconds before each point (default 2)
#   BENCH_CLIENTS   client counts (default "1 16 64"; the targets are judged at 64)
#   BENCH_CONNS     connections in the mirrorkit client's pool (default 4)
#   BENCH_OUT       report to write (default BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
member="$BIN/member"

seconds() { # "10" or "10s" -> 10
  local v=${1%s}
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "bench: $2=$1: want whole seconds, e.g. 10 or 10s" >&2; exit 2; }
  echo "$v"
}
DURATION=$(seconds "${BENCH_DURATION:-10}" BENCH_DURATION)
WARMUP=$(seconds "${BENCH_WARMUP:-2}" BENCH_WARMUP)
CLIENTS=${BENCH_CLIENTS:-1 16 64}
CONNS=${BENCH_CONNS:-4}
OUT=${BENCH_OUT:-BENCHMARKS.md}
NPROC=$(nproc)
# No point may run longer than this; a hung server fails the run instead of stalling it.
LIMIT=$((DURATION + WARMUP + 120))

# PostgreSQL and the member keep their data under one directory, so both (and the fsync baseline) use the same disk.
mkdir -p .bench
work=$(mktemp -d "$PWD/.bench/run.XXXXXX")
chmod 711 "$work" # the postgres user must reach its data directory inside
member_pid=""
pg_data=""
as_pg=()

cleanup() {
  local status=$?
  set +e
  if [ -n "$member_pid" ]; then
    kill -TERM "$member_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$member_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$member_pid" 2>/dev/null
    wait "$member_pid" 2>/dev/null
  fi
  if [ -n "$pg_data" ] && [ -f "$pg_data/postmaster.pid" ]; then
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pg_data" -m immediate -w -t 30 stop >/dev/null 2>&1
  fi
  if [ "$status" -ne 0 ]; then
    for log in "$work/member.log" "$work/pg/server.log"; do
      [ -s "$log" ] && { echo "--- last lines of $log"; tail -20 "$log"; }
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
  else
    echo $((20000 + RANDOM % 20000))
  fi
}

# record runs a benchmark program that prints one JSON summary and keeps it for the report.
record() {
  local line
  line=$(timeout "$LIMIT" "$@")
  echo "$line" >>"$work/results.jsonl"
  echo "  $line"
}

step "build"
[ -x "$member" ] || make build
go build -o "$BIN/" ./bench/...

step "PostgreSQL"
find_pg() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) $(pg_config --bindir 2>/dev/null); do
    if [ -x "$d/pgbench" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}
if ! PG_BIN=$(find_pg); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench: PostgreSQL (with pgbench) is not installed; install postgresql and postgresql-contrib, or run as root" >&2
    exit 1
  fi
  echo "installing postgresql and postgresql-contrib from the OS packages"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql postgresql-contrib
  PG_BIN=$(find_pg) || { echo "bench: pgbench not found after installing postgresql" >&2; exit 1; }
fi
# initdb and the server refuse to run as root.
if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); fi
"$PG_BIN/postgres" --version

step "environment"
fs=$(df -PT "$work" | awk 'NR==2 {print $2 " (" $1 ", mounted at " $7 ")"}')
facts=(
  "Date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  "CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $NPROC cores (nproc)"
  "Memory=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  "Kernel=$(uname -sr)"
  "Filesystem of the data directories=$fs"
  "mirrorkit=$("$member" version | head -1)"
  "PostgreSQL=$("$PG_BIN/postgres" --version)"
  "Go=$(go version)"
  "Command=make bench (BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_CLIENTS=\"$CLIENTS\" BENCH_CONNS=$CONNS)"
)
printf '  %s\n' "${facts[@]}"

step "baselines: one thread, one sync per 116-byte commit, ${DURATION}s each"
echo "-- append + fsync"
record "$BIN/fsyncbench" --dir "$work" --duration "${DURATION}s" --warmup "${WARMUP}s" --json
echo "-- preallocated write + fdatasync"
record "$BIN/fsyncbench" --dir "$work" --duration "${DURATION}s" --warmup "${WARMUP}s" --prealloc --json

step "mirrorkit"
DATA="127.0.0.1:$(free_port)"
ADMIN="127.0.0.1:$(free_port)"
"$member" run --name bench --data-dir "$work/member" --listen "$DATA" --admin-listen "$ADMIN" --log-format json \
  >>"$work/member.log" 2>&1 &
member_pid=$!
ready=""
for _ in $(seq 1 300); do
  if "$member" status --member "$DATA" --timeout 1s >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$member_pid" 2>/dev/null || { echo "bench: member exited during start" >&2; exit 1; }
  sleep 0.1
done
[ -n "$ready" ] || { echo "bench: member on $DATA did not start" >&2; exit 1; }
"$member" db create BENCH --member "$DATA"
for n in $CLIENTS; do
  echo "-- $n clients"
  record "$BIN/commitbench" --member "$DATA" --db BENCH --clients "$n" --conns "$CONNS" \
    --duration "${DURATION}s" --warmup "${WARMUP}s" --json
done
kill -TERM "$member_pid"
status=0
wait "$member_pid" || status=$?
member_pid=""
[ "$status" -eq 0 ] || { echo "bench: member exited with status $status after SIGTERM" >&2; exit 1; }

step "PostgreSQL: one single-row upsert per transaction"
PG_PORT=$(free_port)
mkdir -p "$work/pg" "$work/pg-logs"
[ "${#as_pg[@]}" -eq 0 ] || chown postgres: "$work/pg"
pg_data="$work/pg/data"
"${as_pg[@]}" "$PG_BIN/initdb" -D "$pg_data" --auth=trust -U postgres -E UTF8 --no-locale >"$work/pg/initdb.log" 2>&1 ||
  { cat "$work/pg/initdb.log"; exit 1; }
max_clients=0
for n in $CLIENTS; do [ "$n" -gt "$max_clients" ] && max_clients=$n; done
cat >>"$pg_data/postgresql.conf" <<EOF
# scripts/bench.sh: loopback only, durable commits (these three are the defaults, stated so the run shows them).
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$work/pg'
max_connections = $((max_clients > 90 ? max_clients + 10 : 100))
fsync = on
synchronous_commit = on
full_page_writes = on
EOF
"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pg_data" -l "$work/pg/server.log" -w -t 60 start >/dev/null
pg=(-h 127.0.0.1 -p "$PG_PORT" -U postgres)
"$PG_BIN/psql" "${pg[@]}" -X -q -v ON_ERROR_STOP=1 -c 'CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL)' postgres
# A random 16-character key and a 100-character value derived from it.
cat >"$work/upsert.sql" <<'EOF'
\set k random(0, 999999999999999)
INSERT INTO kv (k, v) VALUES (lpad(:k::text, 16, '0'), rpad(md5(:k::text), 100, md5(:k::text))) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v;
EOF
for n in $CLIENTS; do
  echo "-- $n clients"
  jobs=$((n < NPROC ? n : NPROC))
  args=(-n -M prepared -f "$work/upsert.sql" -c "$n" -j "$jobs")
  timeout "$LIMIT" "$PG_BIN/pgbench" "${pg[@]}" "${args[@]}" -T "$WARMUP" postgres >"$work/pgbench-warmup-$n.out" 2>&1 ||
    { cat "$work/pgbench-warmup-$n.out"; exit 1; }
  timeout "$LIMIT" "$PG_BIN/pgbench" "${pg[@]}" "${args[@]}" -T "$DURATION" --log --log-prefix "$work/pg-logs/c$n" postgres \
    >"$work/pgbench-$n.out" 2>&1 || { cat "$work/pgbench-$n.out"; exit 1; }
  record "$BIN/pgbenchlog" --report "$work/pgbench-$n.out" --clients "$n" --json "$work/pg-logs/c$n".*
  rm -f "$work/pg-logs/c$n".*
done
"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pg_data" -m fast -w -t 60 stop >/dev/null
pg_data=""

step "results"
"$BIN/benchreport" --results "$work/results.jsonl" --out "$OUT" \
  --duration "${DURATION}s" --warmup "${WARMUP}s" --conns "$CONNS" \
  --pgbench-script "$work/upsert.sql" --pgbench-args="-n -M prepared -f upsert.sql -c N -j min(N, nproc) -T $DURATION --log" \
  "${facts[@]/#/--fact=}"
echo "wrote $OUT"
