#!/usr/bin/env bash
# Commit throughput and latency of a member, side by side with PostgreSQL and with one fsync per commit; the same with a
# synchronous copy (mirrorkit with an Active backup, PostgreSQL with a synchronous standby); planned failovers under load;
# a DR async's lag under full commit load; and unplanned failovers with an arbiter (the primary killed, stopped or
# isolated under load). One run on one filesystem, written to BENCHMARKS.md. Installs PostgreSQL from the OS packages
# when it is missing (as root).
#
#   BENCH_DURATION          measured seconds per point (default 10)
#   BENCH_WARMUP            warmup seconds before each point (default 2)
#   BENCH_CLIENTS           client counts (default "1 16 64"; the targets are judged at 64)
#   BENCH_CONNS             connections in the mirrorkit client's pool (default 4)
#   BENCH_FAILOVERS         planned failovers under load (default 20)
#   BENCH_MIRROR_CLIENTS    clients writing during the failovers and the async lag measurement (default 64)
#   BENCH_UNPLANNED_ROUNDS  unplanned failovers of each kind: SIGKILL, SIGSTOP, isolation of the primary (default 20)
#   BENCH_OUT               report to write (default BENCHMARKS.md)
#
# The run fails (after writing the report) when the mirror misbehaves: a client error or a failed failover command
# during the planned failovers, an unplanned failover without a takeover or a recovery, a client error other than an
# unknown outcome during the unplanned failovers, an acknowledged commit lost, or a member that does not exit cleanly on
# SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
member="$BIN/member"
bench_name=bench
# shellcheck source=scripts/benchlib.sh
. scripts/benchlib.sh

seconds() { # "10" or "10s" -> 10
  local v=${1%s}
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "bench: $2=$1: want whole seconds, e.g. 10 or 10s" >&2; exit 2; }
  echo "$v"
}
count() { # a positive whole number
  [[ "$1" =~ ^[1-9][0-9]*$ ]] || { echo "bench: $2=$1: want a positive whole number" >&2; exit 2; }
  echo "$1"
}
DURATION=$(seconds "${BENCH_DURATION:-10}" BENCH_DURATION)
WARMUP=$(seconds "${BENCH_WARMUP:-2}" BENCH_WARMUP)
CLIENTS=${BENCH_CLIENTS:-1 16 64}
CONNS=${BENCH_CONNS:-4}
FAILOVERS=$(count "${BENCH_FAILOVERS:-20}" BENCH_FAILOVERS)
MIRROR_CLIENTS=$(count "${BENCH_MIRROR_CLIENTS:-64}" BENCH_MIRROR_CLIENTS)
UNPLANNED_ROUNDS=$(count "${BENCH_UNPLANNED_ROUNDS:-20}" BENCH_UNPLANNED_ROUNDS)
OUT=${BENCH_OUT:-BENCHMARKS.md}
NPROC=$(nproc)
QOS=2s # the QoS timeout MIRRORING.md recommends on a LAN and the failover targets assume
# No point may run longer than this; a hung server fails the run instead of stalling it.
LIMIT=$((DURATION + WARMUP + 120))
# Each failover round waits at most a minute for the backup to be Active again.
FAILOVER_LIMIT=$((WARMUP + FAILOVERS * 70 + 120))
# Each unplanned failover round waits at most 90s for the takeover, for writes to resume and for the mirror to heal.
UNPLANNED_LIMIT=$((3 * (WARMUP + UNPLANNED_ROUNDS * 280) + 300))

# PostgreSQL and the members keep their data under one directory, so all of them (and the fsync baseline) use the same disk.
mkdir -p .bench
work=$(mktemp -d "$PWD/.bench/run.XXXXXX")
chmod 711 "$work" # the postgres user must reach its data directories inside
declare -A member_pid=() member_addr=() member_log=()
member_names=() # running members, in start order
pg_datas=()     # data directories of the PostgreSQL clusters started
helper_pids=()  # background checks
logs=()         # server logs, shown when the run fails
problems=()     # misbehaviour found on the way, reported after the report is written
as_pg=()
stopped_status=0

cleanup() {
  local status=$? i log
  set +e
  for pid in "${helper_pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  for ((i = ${#member_names[@]} - 1; i >= 0; i--)); do stop_member "${member_names[i]}"; done
  for d in "${pg_datas[@]}"; do
    [ -f "$d/postmaster.pid" ] && "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$d" -m immediate -w -t 30 stop >/dev/null 2>&1
  done
  [ "$status" -ne 0 ] && show_logs
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# record runs a benchmark program, with a time limit in seconds, that prints one JSON summary, and keeps it for the report.
# The program stays in the foreground process group, so that an interrupt stops it (and with it the run) at once.
record() {
  local limit=$1 line
  shift
  line=$(timeout --foreground "$limit" "$@")
  echo "$line" >>"$work/results.jsonl"
  echo "  $line"
}

# stop_members stops every running member, the last started first, and notes any that did not exit cleanly.
stop_members() {
  local i name
  for ((i = ${#member_names[@]} - 1; i >= 0; i--)); do
    name=${member_names[i]}
    stop_member "$name"
    [ "$stopped_status" -eq 0 ] ||
      problems+=("member $name exited with status $stopped_status after SIGTERM (the last lines of its log ${member_log[$name]##*/.bench/} follow)")
  done
  member_names=()
}

# create_bench_db PRIMARY OTHERS... creates database BENCH in mirror MIR on the primary, then on each other member. A
# member refuses it until the mirror's configuration from the primary has reached it, so each is retried for up to 10s.
create_bench_db() {
  local m out i
  "$member" db create BENCH --mirror MIR --member "$1"
  shift
  for m in "$@"; do
    for i in $(seq 1 100); do
      if out=$("$member" db create BENCH --mirror MIR --member "$m" 2>&1); then echo "$out"; break; fi
      [ "$i" -lt 100 ] || { echo "bench: $out" >&2; exit 1; }
      [ "$i" -gt 1 ] || echo "  not yet on $m ($out); retrying"
      sleep 0.1
    done
  done
}

# mirror_wait ADDRS... waits until the mirror's backup is Active and its asyncs caught up; prints the primary's address.
mirror_wait() {
  local IFS=,
  "$BIN/failoverbench" wait --members "$*" --mirror MIR
}

step "build"
[ -x "$member" ] || make build
go build -o "$BIN/" ./bench/...

step "PostgreSQL"
find_pg() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) $(pg_config --bindir 2>/dev/null); do
    if [ -x "$d/pgbench" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/pg_basebackup" ]; then echo "$d"; return 0; fi
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
  "Load average (1, 5, 15 min) at the start=$(cut -d' ' -f1-3 /proc/loadavg)"
  "Command=make bench (BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_CLIENTS=\"$CLIENTS\" BENCH_CONNS=$CONNS BENCH_FAILOVERS=$FAILOVERS BENCH_MIRROR_CLIENTS=$MIRROR_CLIENTS BENCH_UNPLANNED_ROUNDS=$UNPLANNED_ROUNDS)"
)
printf '  %s\n' "${facts[@]}"

step "baselines: one thread, one sync per 116-byte commit, ${DURATION}s each"
echo "-- append + fsync"
record "$LIMIT" "$BIN/fsyncbench" --dir "$work" --duration "${DURATION}s" --warmup "${WARMUP}s" --json
echo "-- preallocated write + fdatasync"
record "$LIMIT" "$BIN/fsyncbench" --dir "$work" --duration "${DURATION}s" --warmup "${WARMUP}s" --prealloc --json

commit_points() { # SYSTEM ADDR: commitbench at every client count
  for n in $CLIENTS; do
    echo "-- $n clients"
    record "$LIMIT" "$BIN/commitbench" --member "$2" --db BENCH --clients "$n" --conns "$CONNS" \
      --duration "${DURATION}s" --warmup "${WARMUP}s" --system "$1" --json
  done
}

step "mirrorkit"
start_member bench 127.0.0.1 "$work/member"
"$member" db create BENCH --member "${member_addr[bench]}"
commit_points mirrorkit "${member_addr[bench]}"
stop_members

step "mirrorkit with an Active backup (mirror MIR, QoS $QOS)"
start_member A 127.0.0.11 "$work/mirror1/A"
start_member B 127.0.0.12 "$work/mirror1/B"
A=${member_addr[A]} B=${member_addr[B]}
"$member" mirror create MIR --member "$A" --qos "$QOS"
"$member" mirror join MIR --member "$B" --primary "$A" --as failover
create_bench_db "$A" "$B"
for n in $CLIENTS; do
  echo "-- $n clients"
  primary=$(mirror_wait "$A" "$B")
  [ "$primary" = "$A" ] || { echo "bench: $primary is primary of MIR, not $A" >&2; exit 1; }
  # The point only counts if the backup stays Active throughout: commits then wait for its acknowledgement.
  "$BIN/failoverbench" wait --members "$A,$B" --mirror MIR --hold "$((WARMUP + DURATION + 1))s" \
    >/dev/null 2>"$work/hold.err" &
  helper_pids+=($!)
  record "$LIMIT" "$BIN/commitbench" --member "$A" --db BENCH --clients "$n" --conns "$CONNS" \
    --duration "${DURATION}s" --warmup "${WARMUP}s" --system mirrorkit-backup --json
  wait "${helper_pids[-1]}" || {
    echo "bench: the backup did not stay Active through the $n-client point, so it does not measure commits with a backup:" >&2
    cat "$work/hold.err" >&2
    exit 1
  }
  unset 'helper_pids[-1]'
done

step "planned failover under load: $FAILOVERS failovers, $MIRROR_CLIENTS clients"
record "$FAILOVER_LIMIT" "$BIN/failoverbench" failover --members "$A,$B" --mirror MIR --member-bin "$member" \
  --rounds "$FAILOVERS" --clients "$MIRROR_CLIENTS" --conns "$CONNS" --warmup "${WARMUP}s" --json
stop_members

step "DR async lag under full commit load: $MIRROR_CLIENTS clients"
start_member A 127.0.0.11 "$work/mirror2/A"
start_member B 127.0.0.12 "$work/mirror2/B"
start_member C 127.0.0.13 "$work/mirror2/C"
A=${member_addr[A]} B=${member_addr[B]} C=${member_addr[C]}
"$member" mirror create MIR --member "$A" --qos "$QOS"
"$member" mirror join MIR --member "$B" --primary "$A" --as failover
"$member" mirror join MIR --member "$C" --primary "$A" --as dr
create_bench_db "$A" "$B" "$C"
mirror_wait "$A" "$B" "$C" >/dev/null
record "$LIMIT" "$BIN/failoverbench" lag --members "$A,$B,$C" --mirror MIR --async C --clients "$MIRROR_CLIENTS" \
  --conns "$CONNS" --duration "${DURATION}s" --warmup "${WARMUP}s" --json
stop_members

step "unplanned failover (QoS $QOS): $UNPLANNED_ROUNDS × SIGKILL, SIGSTOP, isolation"
# failoverbench starts the arbiter and both members itself (127.0.0.10–12), each member reaching the other and the
# arbiter through its fault proxies, with their data and logs here; it stops them all before it exits.
unplanned="$work/unplanned"
logs+=("$unplanned/arbiter.log" "$unplanned/A.log" "$unplanned/B.log")
record "$UNPLANNED_LIMIT" "$BIN/failoverbench" unplanned --member-bin "$member" --dir "$unplanned" --qos "$QOS" \
  --rounds "$UNPLANNED_ROUNDS" --conns "$CONNS" --warmup "${WARMUP}s" --json

max_clients=0
for n in $CLIENTS; do [ "$n" -gt "$max_clients" ] && max_clients=$n; done

# pg_init DIR PORT SOCKETS makes a cluster in DIR serving on loopback PORT with durable commits.
pg_init() {
  "${as_pg[@]}" "$PG_BIN/initdb" -D "$1" --auth=trust -U postgres -E UTF8 --no-locale >"$1.initdb.log" 2>&1 ||
    { cat "$1.initdb.log"; exit 1; }
  cat >>"$1/postgresql.conf" <<EOF
# scripts/bench.sh: loopback only, durable commits (these three are the defaults, stated so the run shows them).
listen_addresses = '127.0.0.1'
port = $2
unix_socket_directories = '$3'
max_connections = $((max_clients > 90 ? max_clients + 10 : 100))
fsync = on
synchronous_commit = on
full_page_writes = on
EOF
}

pg_start() { # DIR
  pg_datas+=("$1")
  logs+=("$1.server.log")
  "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$1" -l "$1.server.log" -w -t 60 start >/dev/null
}

pg_stop() { # DIR
  "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$1" -m fast -w -t 60 stop >/dev/null
}

# A random 16-character key and a 100-character value derived from it.
cat >"$work/upsert.sql" <<'EOF'
\set k random(0, 999999999999999)
INSERT INTO kv (k, v) VALUES (lpad(:k::text, 16, '0'), rpad(md5(:k::text), 100, md5(:k::text))) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v;
EOF

pgbench_points() { # SYSTEM PORT: the kv table, then pgbench at every client count
  local pg=(-h 127.0.0.1 -p "$2" -U postgres) n jobs args tag
  "$PG_BIN/psql" "${pg[@]}" -X -q -v ON_ERROR_STOP=1 -c 'CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL)' postgres
  mkdir -p "$work/pg-logs"
  for n in $CLIENTS; do
    echo "-- $n clients"
    tag="$1-$n"
    jobs=$((n < NPROC ? n : NPROC))
    args=(-n -M prepared -f "$work/upsert.sql" -c "$n" -j "$jobs")
    timeout "$LIMIT" "$PG_BIN/pgbench" "${pg[@]}" "${args[@]}" -T "$WARMUP" postgres >"$work/pgbench-warmup-$tag.out" 2>&1 ||
      { cat "$work/pgbench-warmup-$tag.out"; exit 1; }
    timeout "$LIMIT" "$PG_BIN/pgbench" "${pg[@]}" "${args[@]}" -T "$DURATION" --log --log-prefix "$work/pg-logs/$tag" postgres \
      >"$work/pgbench-$tag.out" 2>&1 || { cat "$work/pgbench-$tag.out"; exit 1; }
    record "$LIMIT" "$BIN/pgbenchlog" --report "$work/pgbench-$tag.out" --clients "$n" --system "$1" --json "$work/pg-logs/$tag".*
    rm -f "$work/pg-logs/$tag".*
  done
}

step "PostgreSQL: one single-row upsert per transaction"
mkdir -p "$work/pg"
[ "${#as_pg[@]}" -eq 0 ] || chown postgres: "$work/pg"
pg_port=$(free_port 127.0.0.1)
pg_init "$work/pg/data" "$pg_port" "$work/pg"
pg_start "$work/pg/data"
pgbench_points postgresql "$pg_port"
pg_stop "$work/pg/data"

step "PostgreSQL with a synchronous standby"
sync_dir="$work/pgsync"
mkdir -p "$sync_dir"
[ "${#as_pg[@]}" -eq 0 ] || chown postgres: "$sync_dir"
primary_port=$(free_port 127.0.0.1)
standby_port=$(free_port 127.0.0.1)
pg_init "$sync_dir/primary" "$primary_port" "$sync_dir"
cat >>"$sync_dir/primary/postgresql.conf" <<EOF
# scripts/bench.sh: a commit returns once the standby has flushed its WAL (synchronous_commit = on).
synchronous_standby_names = 'standby1'
EOF
pg_start "$sync_dir/primary"
"${as_pg[@]}" "$PG_BIN/pg_basebackup" -d "host=127.0.0.1 port=$primary_port user=postgres application_name=standby1" \
  -D "$sync_dir/standby" -R -X stream -c fast >"$sync_dir/basebackup.log" 2>&1 || { cat "$sync_dir/basebackup.log"; exit 1; }
cat >>"$sync_dir/standby/postgresql.conf" <<EOF
# scripts/bench.sh: the standby, streaming from the primary.
port = $standby_port
cluster_name = 'standby1'
EOF
pg_start "$sync_dir/standby"
sync_state=""
for _ in $(seq 1 300); do
  sync_state=$("$PG_BIN/psql" -h 127.0.0.1 -p "$primary_port" -U postgres -X -A -t \
    -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'" postgres)
  [ "$sync_state" = sync ] && break
  sleep 0.1
done
[ "$sync_state" = sync ] || { echo "bench: the standby is not a synchronous standby (sync_state \"$sync_state\")" >&2; exit 1; }
pgbench_points postgresql-sync "$primary_port"
pg_stop "$sync_dir/standby"
pg_stop "$sync_dir/primary"

[ "${BENCH_BACKUP:-1}" = 0 ] || ./scripts/bench-backup.sh
[ "${BENCH_CONVERT:-1}" = 0 ] || ./scripts/bench-convert.sh
[ "${BENCH_UPGRADE:-1}" = 0 ] || ./scripts/bench-upgrade.sh
step "results"
# Other work on a shared machine shows here; a high figure explains a noisy run.
facts+=("Load average (1, 5, 15 min) at the end=$(cut -d' ' -f1-3 /proc/loadavg)")
report_status=0
includes=()
# The long linearizability run under faults is recorded by `make longfaults`, not by this script.
[ -f bench/longfaults.md ] && includes+=(--include bench/longfaults.md)
[ -f bench/backup.md ] && includes+=(--include bench/backup.md)
[ -f bench/convert.md ] && includes+=(--include bench/convert.md)
[ -f bench/upgrade.md ] && includes+=(--include bench/upgrade.md)
"$BIN/benchreport" --results "$work/results.jsonl" --out "$OUT" "${includes[@]}" \
  --duration "${DURATION}s" --warmup "${WARMUP}s" --conns "$CONNS" --qos "$QOS" \
  --pgbench-script "$work/upsert.sql" --pgbench-args="-n -M prepared -f upsert.sql -c N -j min(N, nproc) -T $DURATION --log" \
  "${facts[@]/#/--fact=}" || report_status=$?
echo "wrote $OUT"
for p in "${problems[@]}"; do echo "bench: FAIL: $p" >&2; done
[ "$report_status" -eq 0 ] && [ "${#problems[@]}" -eq 0 ]
