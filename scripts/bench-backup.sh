#!/usr/bin/env bash
# Backup and restore throughput and peak memory of `migrate` on a database of BENCH_BACKUP_GIB GiB, to a directory and
# to a MinIO server on loopback, side by side with `tar | zstd -3 -T2` of the same database directory and with pgBackRest
# backing up and restoring a PostgreSQL cluster holding the same rows. Written to bench/backup.md, which `make bench`
# puts into BENCHMARKS.md. Needs `make build tools` first (bin/member, bin/migrate, .tools/bin/minio); installs
# PostgreSQL and pgBackRest from the OS packages when they are missing (as root). Everything it makes lives in one
# directory under .bench/, removed at the end.
#
#   BENCH_BACKUP_GIB      logical size of the database in GiB (default 2; 0.1 for a quick try)
#   BENCH_BACKUP_ROUNDS   runs of each measurement, the fastest kept (default 2)
#   BENCH_BACKUP_OUT      report to write (default bench/backup.md)
#
# The run fails when a step fails; a target missed is reported, not a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
GIB=${BENCH_BACKUP_GIB:-2}
ROUNDS=${BENCH_BACKUP_ROUNDS:-2}
OUT=${BENCH_BACKUP_OUT:-bench/backup.md}
member="$BIN/member"
migrate="$BIN/migrate"
minio=${MIRRORKIT_MINIO:-.tools/bin/minio}
bb="$BIN/backupbench"
QOS=2s
bench_name=bench-backup
# shellcheck source=scripts/benchlib.sh
. scripts/benchlib.sh

[[ "$GIB" =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ ]] || { echo "bench-backup: BENCH_BACKUP_GIB=$GIB: want a number of GiB, e.g. 2 or 0.1" >&2; exit 2; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "bench-backup: BENCH_BACKUP_ROUNDS=$ROUNDS: want a positive whole number" >&2; exit 2; }
for tool in "$member" "$migrate" "$minio"; do
  [ -x "$tool" ] || { echo "bench-backup: $tool is missing: run \`make build tools\` first" >&2; exit 1; }
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

mkdir -p .bench
work=$(mktemp -d "$PWD/.bench/backup.XXXXXX")
chmod 711 "$work" # the postgres user must reach its directories inside
declare -A member_pid=() member_addr=() member_log=()
member_names=()
logs=()
pg_data=""
minio_pid=""
as_pg=()

cleanup() {
  local status=$? i
  set +e
  for ((i = ${#member_names[@]} - 1; i >= 0; i--)); do stop_member "${member_names[i]}"; done
  if [ -n "$minio_pid" ]; then kill "$minio_pid" 2>/dev/null; wait "$minio_pid" 2>/dev/null; fi
  if [ -n "$pg_data" ] && [ -f "$pg_data/postmaster.pid" ]; then
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pg_data" -m immediate -w -t 30 stop >/dev/null 2>&1
  fi
  [ "$status" -ne 0 ] && show_logs
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

results="$work/results.jsonl"
# measure NAME ROUND CMD... times CMD after dropping the page cache and records the result; CMD's standard output goes
# to $work/NAME.out.
measure() {
  local name=$1 round=$2 line
  shift 2
  echo "-- $name, round $round"
  line=$("$bb" measure --name "$name" --round "$round" --drop-caches --stdout "$work/$name.out" -- "$@")
  echo "$line" >>"$results"
  echo "  $(jq -r '"\(.seconds | . * 10 | round / 10) s, CPU \(.cpu_seconds | . * 10 | round / 10) s, peak RSS \(.max_rss_bytes / 1048576 | round) MiB"' <<<"$line")"
}

# backup_id NAME prints the backup ID from the "done" event in migrate backup --json's output.
backup_id() {
  local id
  id=$(jq -rs '[.[] | select(.event? == "done")] | last | .id' "$work/$1.out")
  [ -n "$id" ] && [ "$id" != null ] || { echo "bench-backup: no backup ID in the output of $1:" >&2; cat "$work/$1.out" >&2; exit 1; }
  echo "$id"
}

bytes_in() { du -sb "$1" | cut -f1; }

step "build and peers"
mkdir -p "$BIN"
go build -o "$BIN/" ./bench/backupbench
find_pg() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) $(pg_config --bindir 2>/dev/null); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/psql" ]; then echo "$d"; return 0; fi
  done
  return 1
}
missing=()
PG_BIN=$(find_pg) || missing+=(postgresql)
command -v pgbackrest >/dev/null || missing+=(pgbackrest)
command -v jq >/dev/null || missing+=(jq)
command -v zstd >/dev/null || missing+=(zstd)
command -v python3 >/dev/null || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench-backup: missing ${missing[*]}: install them from the OS packages, or run as root" >&2
    exit 1
  fi
  echo "installing ${missing[*]} from the OS packages"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  PG_BIN=$(find_pg) || { echo "bench-backup: PostgreSQL not found after installing it" >&2; exit 1; }
fi
# initdb, the server and pgBackRest refuse to run as root.
if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); fi

step "environment"
fs=$(df -PT "$work" | awk 'NR==2 {print $2 " (" $1 ", mounted at " $7 ")"}')
facts=(
  "Date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  "CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores (nproc)"
  "Memory=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  "Kernel=$(uname -sr)"
  "Filesystem of every directory=$fs"
  "mirrorkit=$("$member" version | head -1)"
  "PostgreSQL=$("$PG_BIN/postgres" --version)"
  "pgBackRest=$(pgbackrest version)"
  "zstd=$(zstd --version)"
  "tar=$(tar --version | head -1)"
  "MinIO=$("$minio" --version | head -1)"
  "Go=$(go version)"
  "Commit=$(git describe --always --dirty 2>/dev/null || echo unknown)"
  "Load average (1, 5, 15 min) at the start=$(cut -d' ' -f1-3 /proc/loadavg)"
)
printf '  %s\n' "${facts[@]}"

step "mirrorkit: mirror MIR (primary A, DR async C) and database BIG of $GIB GiB"
start_member A 127.0.0.31 "$work/A"
start_member C 127.0.0.33 "$work/C"
A=${member_addr[A]} C=${member_addr[C]}
"$member" mirror create MIR --member "$A" --qos "$QOS"
"$member" mirror join MIR --member "$C" --primary "$A" --as dr
# Loaded as a local database and then added to the mirror, so the load is not streamed to C: C gets BIG only by restore.
"$member" db create BIG --member "$A"
"$bb" load --member "$A" --db BIG --gib "$GIB" | tee -a "$results"
# The reference copy, taken while BIG is dismounted (flushed and closed).
"$member" db dismount BIG --member "$A"
big_dir=$("$member" db list --member "$A" --json | jq -r '.[] | select(.name == "BIG") | .dir')
cp -a "$big_dir" "$work/ref"
"$member" db mount BIG --member "$A"
"$member" db add-to-mirror BIG --mirror MIR --member "$A"
ref_bytes=$(bytes_in "$work/ref")

step "mirrorkit: member G storing its databases with --db-compression good (mirror MIRG), and the same database BIG"
start_member G 127.0.0.35 "$work/G" --db-compression good
G=${member_addr[G]}
"$member" mirror create MIRG --member "$G" --qos "$QOS"
"$member" db create BIG --member "$G"
"$bb" load --member "$G" --db BIG --gib "$GIB" | tee "$work/load-good.json"
"$member" db dismount BIG --member "$G"
good_bytes=$(bytes_in "$("$member" db list --member "$G" --json | jq -r '.[] | select(.name == "BIG") | .dir')")
"$member" db mount BIG --member "$G"
"$member" db add-to-mirror BIG --mirror MIRG --member "$G"
load_fast=$(jq -r 'select(.kind == "load") | .seconds' "$results")
load_good=$(jq -r 'select(.kind == "load") | .seconds' "$work/load-good.json")
facts+=("Loading BIG through the client, fast / good compression=$(printf '%.1f s / %.1f s' "$load_fast" "$load_good")")

step "MinIO"
minio_addr="127.0.0.1:$(free_port 127.0.0.1)"
export AWS_ACCESS_KEY_ID=backupbench AWS_SECRET_ACCESS_KEY=backupbench-secret
MINIO_ROOT_USER=$AWS_ACCESS_KEY_ID MINIO_ROOT_PASSWORD=$AWS_SECRET_ACCESS_KEY MINIO_BROWSER=off MINIO_CI_CD=on \
  "$minio" server --quiet --address "$minio_addr" --console-address "127.0.0.1:$(free_port 127.0.0.1)" "$work/minio" \
  >"$work/minio.log" 2>&1 &
minio_pid=$!
logs+=("$work/minio.log")
for i in $(seq 1 600); do
  curl -fs "http://$minio_addr/minio/health/live" >/dev/null && break
  kill -0 "$minio_pid" 2>/dev/null && [ "$i" -lt 600 ] || { echo "bench-backup: MinIO did not start" >&2; exit 1; }
  sleep 0.1
done
s3_stage=s3://backupbench/stage
s3_flags=(--s3-endpoint "$minio_addr" --s3-insecure)

step "PostgreSQL: table big with the same rows, and pgBackRest"
mkdir -p "$work/pg" "$work/pgbackrest"/{log,lock,spool}
[ "${#as_pg[@]}" -eq 0 ] || chown -R postgres: "$work/pg" "$work/pgbackrest"
pg_data="$work/pg/data"
pg_port=$(free_port 127.0.0.1)
logs+=("$pg_data.server.log")
"${as_pg[@]}" "$PG_BIN/initdb" -D "$pg_data" --auth=trust -U postgres -E UTF8 --no-locale >"$work/pg/initdb.log" 2>&1 ||
  { cat "$work/pg/initdb.log"; exit 1; }
cat >>"$pg_data/postgresql.conf" <<EOF
# scripts/bench-backup.sh: loopback only; no WAL for the load (table created and filled in one transaction).
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$work/pg'
wal_level = minimal
max_wal_senders = 0
archive_mode = off
EOF
pg=(-h 127.0.0.1 -p "$pg_port" -U postgres -X -q -v ON_ERROR_STOP=1)
"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pg_data" -l "$pg_data.server.log" -w -t 60 start >/dev/null
"$bb" rows --gib "$GIB" |
  "$PG_BIN/psql" "${pg[@]}" -1 -c 'CREATE TABLE big (k text PRIMARY KEY, v text NOT NULL)' -c 'COPY big FROM STDIN' postgres
"$PG_BIN/psql" "${pg[@]}" -c CHECKPOINT postgres
"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pg_data" -m fast -w -t 60 stop >/dev/null
pgbr_conf="$work/pgbackrest/pgbackrest.conf"
cat >"$pgbr_conf" <<EOF
[global]
repo1-path=$work/pgbackrest/repo
repo1-retention-full=$((ROUNDS + 1))
log-path=$work/pgbackrest/log
lock-path=$work/pgbackrest/lock
spool-path=$work/pgbackrest/spool
log-level-console=warn
compress-type=zst
compress-level=3
process-max=2
start-fast=y

[bench]
pg1-path=$pg_data
pg1-port=$pg_port
pg1-socket-path=$work/pg
EOF
pgbackrest=("${as_pg[@]}" pgbackrest "--config=$pgbr_conf" --stanza=bench)
cat >>"$pg_data/postgresql.conf" <<EOF
# scripts/bench-backup.sh: WAL archived by pgBackRest, as its backups require.
wal_level = replica
max_wal_senders = 10
archive_mode = on
archive_command = 'pgbackrest --config=$pgbr_conf --stanza=bench archive-push %p'
EOF
"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pg_data" -l "$pg_data.server.log" -w -t 60 start >/dev/null
"${pgbackrest[@]}" stanza-create
"${pgbackrest[@]}" check

# The references make what they wrote durable before they count as done, as migrate and pgBackRest do.
tar_zstd='set -o pipefail; tar -cf - -C "$1" . | zstd -3 -T2 -q -o "$2" && sync "$2"'
zstd_tar='set -o pipefail; zstd -d -T2 -q -c "$1" | tar -xf - -C "$2" && find "$2" -print0 | xargs -0 sync --'

step "backups: $ROUNDS rounds, the page cache dropped before each run"
for round in $(seq 1 "$ROUNDS"); do
  measure mirrorkit-backup-dir "$round" "$migrate" backup --mirror "$A" --db BIG --stage "$work/stage" --json
  dir_id=$(backup_id mirrorkit-backup-dir)
  measure mirrorkit-backup-s3 "$round" "$migrate" backup --mirror "$A" --db BIG --stage "$s3_stage" "${s3_flags[@]}" \
    --s3-create-bucket --json
  s3_id=$(backup_id mirrorkit-backup-s3)
  measure mirrorkit-backup-dir-level1 "$round" "$migrate" backup --mirror "$A" --db BIG --stage "$work/stage1" --level 1 --json
  l1_id=$(backup_id mirrorkit-backup-dir-level1)
  measure mirrorkit-backup-dir-good "$round" "$migrate" backup --mirror "$G" --db BIG --stage "$work/stageg" --json
  good_id=$(backup_id mirrorkit-backup-dir-good)
  rm -f "$work/ref.tar.zst"
  measure tar-zstd "$round" bash -c "$tar_zstd" tar-zstd "$work/ref" "$work/ref.tar.zst"
  measure pgbackrest-backup "$round" "${pgbackrest[@]}" backup --type=full
done
pg_bytes=$("${pgbackrest[@]}" info --output=json | jq '.[0].backup[-1].info.size')
pg_stored=$("${pgbackrest[@]}" info --output=json | jq '.[0].backup[-1].info.repository.size')
"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pg_data" -m fast -w -t 60 stop >/dev/null
{
  printf '{"kind":"size","system":"mirrorkit","input_bytes":%d,"stored_bytes":%d}\n' "$ref_bytes" "$(bytes_in "$work/stage/BIG/$dir_id")"
  printf '{"kind":"size","system":"mirrorkit-level1","input_bytes":%d,"stored_bytes":%d}\n' "$ref_bytes" "$(bytes_in "$work/stage1/BIG/$l1_id")"
  printf '{"kind":"size","system":"mirrorkit-good","input_bytes":%d,"stored_bytes":%d}\n' "$good_bytes" "$(bytes_in "$work/stageg/BIG/$good_id")"
  printf '{"kind":"size","system":"tar-zstd","input_bytes":%d,"stored_bytes":%d}\n' "$ref_bytes" "$(bytes_in "$work/ref.tar.zst")"
  printf '{"kind":"size","system":"pgbackrest","input_bytes":%d,"stored_bytes":%d}\n' "$pg_bytes" "$pg_stored"
} | tee -a "$results"

step "restores: $ROUNDS rounds, the page cache dropped before each run (PostgreSQL stopped)"
for round in $(seq 1 "$ROUNDS"); do
  rm -rf "$work/restored"
  measure mirrorkit-restore-dir "$round" "$migrate" restore --stage "$work/stage" --db BIG --backup "$dir_id" --dir "$work/restored" --json
  rm -rf "$work/restored"
  measure mirrorkit-restore-s3 "$round" "$migrate" restore --stage "$s3_stage" "${s3_flags[@]}" --db BIG --backup "$s3_id" --dir "$work/restored" --json
  rm -rf "$work/restored"
  measure mirrorkit-restore-dir-level1 "$round" "$migrate" restore --stage "$work/stage1" --db BIG --backup "$l1_id" --dir "$work/restored" --json
  rm -rf "$work/restored"
  measure mirrorkit-restore-dir-good "$round" "$migrate" restore --stage "$work/stageg" --db BIG --backup "$good_id" --dir "$work/restored" --json
  rm -rf "$work/restored"
  if [ "$round" -gt 1 ]; then # the previous round's copy goes, so the member can take a new one
    "$member" db dismount BIG --member "$C" >/dev/null
    "$member" db delete BIG --member "$C" >/dev/null
  fi
  measure mirrorkit-restore-member "$round" "$migrate" restore --mirror "$A" --db BIG --stage "$work/stage" --backup "$dir_id" --to C --json
  mkdir "$work/restored"
  measure zstd-tar "$round" bash -c "$zstd_tar" zstd-tar "$work/ref.tar.zst" "$work/restored"
  rm -rf "$work/restored"
  mkdir -m 700 "$work/restored"
  [ "${#as_pg[@]}" -eq 0 ] || chown postgres: "$work/restored"
  measure pgbackrest-restore "$round" "${pgbackrest[@]}" "--pg1-path=$work/restored" restore
  rm -rf "$work/restored"
done

step "check: the restored member holds what the primary holds"
want=$("$member" db hash BIG --member "$A" --timeout 10m)
for i in $(seq 1 300); do
  got=$("$member" db hash BIG --member "$C" --timeout 10m 2>&1) && [ "$got" = "$want" ] && break
  [ "$i" -lt 300 ] || { echo "bench-backup: BIG on C after restore: $got; on A: $want" >&2; exit 1; }
  sleep 1
done
echo "  $got"

step "report"
facts+=("Load average (1, 5, 15 min) at the end=$(cut -d' ' -f1-3 /proc/loadavg)")
sed "s|$work|WORK|g" "$pgbr_conf" >"$work/pgbackrest.conf.shown" # the run's directory is gone by the time anyone reads it
"$bb" report --results "$results" --out "$OUT" --command "BENCH_BACKUP_GIB=$GIB BENCH_BACKUP_ROUNDS=$ROUNDS ./scripts/bench-backup.sh" \
  --pgbackrest-conf "$work/pgbackrest.conf.shown" "${facts[@]/#/--fact=}"
echo "wrote $OUT"
