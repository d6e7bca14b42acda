#!/usr/bin/env bash
# Converting a shadowing setup into a mirror with `migrate convert-shadow`: wall time and the pause an application
# writing to the source sees, when the shadow copies join in place (no data copied) and when every database is copied
# from the source instead (--force-copy member to member, and --force-copy --stage: a staged backup and restores), for the
# same databases of BENCH_CONVERT_GIB GiB in all. Written to bench/convert.md, which `make bench` puts into
# BENCHMARKS.md. Needs `make build` first (bin/member, bin/migrate). Everything it makes lives in one directory under
# .bench/, removed at the end.
#
#   BENCH_CONVERT_GIB      logical size of the two databases together, in GiB (default 2; 0.1 for a quick try)
#   BENCH_CONVERT_ROUNDS   conversions of each kind, interleaved, the fastest kept (default 1)
#   BENCH_CONVERT_STAGED   1 (default) also runs the staged backup/restore path (--force-copy --stage DIR); 0 skips it
#   BENCH_CONVERT_OUT      report to write (default bench/convert.md)
#
# The run fails when a step fails, when an acknowledged write of the probe is missing on the source, or when the copies
# do not end equal to the source; the figures themselves have no target.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
GIB=${BENCH_CONVERT_GIB:-2}
ROUNDS=${BENCH_CONVERT_ROUNDS:-1}
STAGED=${BENCH_CONVERT_STAGED:-1}
OUT=${BENCH_CONVERT_OUT:-bench/convert.md}
member="$BIN/member"
migrate="$BIN/migrate"
bb="$BIN/backupbench"
cb="$BIN/convertbench"
bench_name=bench-convert
DBS=(ORDERS STOCK)
SHADOW=SH
MIRROR=MIR
WAIT=1800     # seconds a wait for the shadows or the copies may take before the run fails
STEP_WAIT=15m # how long a step of the conversion may wait for a copy or a shadow
# shellcheck source=scripts/benchlib.sh
. scripts/benchlib.sh

[[ "$GIB" =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ ]] || { echo "bench-convert: BENCH_CONVERT_GIB=$GIB: want a number of GiB, e.g. 2 or 0.1" >&2; exit 2; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "bench-convert: BENCH_CONVERT_ROUNDS=$ROUNDS: want a positive whole number" >&2; exit 2; }
[[ "$STAGED" =~ ^[01]$ ]] || { echo "bench-convert: BENCH_CONVERT_STAGED=$STAGED: want 0 or 1" >&2; exit 2; }
for tool in "$member" "$migrate"; do
  [ -x "$tool" ] || { echo "bench-convert: $tool is missing: run \`make build\` first" >&2; exit 1; }
done
for tool in jq curl python3; do
  command -v "$tool" >/dev/null || { echo "bench-convert: $tool is missing: install it from the OS packages" >&2; exit 1; }
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "bench-convert: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

mkdir -p .bench
work=$(mktemp -d "$PWD/.bench/convert.XXXXXX")
mkdir -p "$work/logs"
declare -A member_pid=() member_addr=() member_log=()
member_names=()
logs=()
stopped_status=0

cleanup() {
  local status=$? i
  set +e
  for ((i = ${#member_names[@]} - 1; i >= 0; i--)); do
    [ -n "${member_pid[${member_names[i]}]:-}" ] && stop_member "${member_names[i]}"
  done
  [ "$status" -ne 0 ] && show_logs
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The members keep their addresses across restarts: each shadow names its source by address.
declare -A ip_of=([S]=127.0.0.51 [D1]=127.0.0.52 [D2]=127.0.0.53) admin_of=()
for name in S D1 D2; do
  member_addr[$name]="${ip_of[$name]}:$(free_port "${ip_of[$name]}")"
  admin_of[$name]="${ip_of[$name]}:$(free_port "${ip_of[$name]}")"
done
S=${member_addr[S]} D1=${member_addr[D1]} D2=${member_addr[D2]}

# start_at NAME DIR LOG runs member NAME on its fixed addresses with its data in DIR and waits until it serves.
start_at() {
  local name=$1 dir=$2 log=$3 pid
  "$member" run --name "$name" --data-dir "$dir" --listen "${member_addr[$name]}" --admin-listen "${admin_of[$name]}" \
    --log-format json >>"$log" 2>&1 &
  pid=$!
  member_pid[$name]=$pid
  member_log[$name]=$log
  logs+=("$log")
  member_names+=("$name")
  wait_serving "${member_addr[$name]}" "$pid" || case $? in
    1) fail "member $name exited during start (log $log)" ;;
    *) fail "member $name on ${member_addr[$name]} did not start" ;;
  esac
}

# start_all DIR TAG starts S, D1 and D2 from DIR/S, DIR/D1, DIR/D2. Their logs are the ones shown if the run fails.
start_all() {
  local name
  logs=()
  for name in S D1 D2; do start_at "$name" "$1/$name" "$work/logs/$name.$2.log"; done
}

# stop_all stops every member with SIGTERM, the last started first; one that does not exit cleanly fails the run, as
# the next round starts from what they leave.
stop_all() {
  local i name
  for ((i = ${#member_names[@]} - 1; i >= 0; i--)); do
    name=${member_names[i]}
    stop_member "$name"
    [ "$stopped_status" -eq 0 ] || fail "member $name exited with status $stopped_status after SIGTERM (log ${member_log[$name]})"
  done
  member_names=()
}

# wait_shadows waits until the shadow on D1 and on D2 is Processing, connected and has applied all of S's journal.
wait_shadows() {
  local d st i
  for d in "$D1" "$D2"; do
    for i in $(seq 1 $((WAIT * 2))); do
      st=$("$member" shadow status "$SHADOW" --member "$d" --json)
      jq -e '.state == "Processing" and .connected and .bytes_behind == 0 and .source_end != null and
        .checkpoint == .source_end' <<<"$st" >/dev/null && break
      if jq -e '.state == "Error"' <<<"$st" >/dev/null; then fail "shadow $SHADOW on $d: $(jq -r .error <<<"$st")"; fi
      [ "$i" -lt $((WAIT * 2)) ] || fail "shadow $SHADOW on $d did not catch up in ${WAIT}s: $(jq -c 'del(.databases)' <<<"$st")"
      sleep 0.5
    done
  done
}

hash_of() { # DB ADDR: the database's logical hash on that member
  "$member" db hash "$1" --member "$2" --timeout 10m --json | jq -r .sha256
}

# wait_hashes prints, as a JSON object, each database's hash on S once D1 and D2 hold the same (polling while they
# catch up).
wait_hashes() {
  local db want got d i out='{}'
  for db in "${DBS[@]}"; do
    want=$(hash_of "$db" "$S")
    for d in "$D1" "$D2"; do
      for i in $(seq 1 "$WAIT"); do
        got=$(hash_of "$db" "$d" 2>&1) && [ "$got" = "$want" ] && break
        [ "$i" -lt "$WAIT" ] || fail "$db on $d: hash $got; on S: $want"
        sleep 1
      done
    done
    out=$(jq -c --arg db "$db" --arg h "$want" '. + {($db): $h}' <<<"$out")
  done
  echo "$out"
}

caches_dropped=true
# fresh_copy makes DIR a copy of the template and writes it back, so that no round pays for an earlier one's writes;
# then drops the page cache where allowed (as root), so that every round reads its databases from the disk.
fresh_copy() {
  rm -rf "$1"
  mkdir -p "$1"
  cp -a "$work/template/S" "$work/template/D1" "$work/template/D2" "$1/"
  sync
  echo 3 2>/dev/null >/proc/sys/vm/drop_caches || caches_dropped=false
}

step "build"
go build -o "$BIN/" ./bench/backupbench ./bench/convertbench

step "environment"
fs=$(df -PT "$work" | awk 'NR==2 {print $2 " (" $1 ", mounted at " $7 ")"}')
facts=(
  "Date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  "CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores (nproc)"
  "Memory=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  "Kernel=$(uname -sr)"
  "Filesystem of every directory=$fs"
  "mirrorkit=$("$member" version | head -1)"
  "Go=$(go version)"
  "Commit=$(git describe --always --dirty 2>/dev/null || echo unknown)"
  "Load average (1, 5, 15 min) at the start=$(cut -d' ' -f1-3 /proc/loadavg)"
)
printf '  %s\n' "${facts[@]}"

step "setup: S with ${DBS[*]} ($GIB GiB in all), shadowed by D1 and D2"
start_all "$work/template" setup
for db in "${DBS[@]}"; do "$member" db create "$db" --member "$S" >/dev/null; done
map=""
for db in "${DBS[@]}"; do map+="${map:+,}$db=$db"; done
for d in "$D1" "$D2"; do
  "$member" shadow create "$SHADOW" --member "$d" --source "$S" --start now --map "$map" >/dev/null
  "$member" shadow start "$SHADOW" --member "$d" >/dev/null
  echo "  shadow $SHADOW on $d: $map from $S, started"
done
per_db=$(awk -v g="$GIB" -v n="${#DBS[@]}" 'BEGIN { printf "%.6g", g / n }')
load_start=$(now)
load_pids=()
for db in "${DBS[@]}"; do
  "$bb" load --member "$S" --db "$db" --gib "$per_db" >"$work/load-$db.json" 2> >(sed -u "s/^/  $db: /" >&2) &
  load_pids+=($!)
done
for pid in "${load_pids[@]}"; do wait "$pid" || fail "loading the databases failed"; done
load_seconds=$(since "$load_start")
catch_start=$(now)
wait_shadows
catch_seconds=$(since "$catch_start")
setup_hashes=$(wait_hashes)
echo "  loaded in ${load_seconds}s; shadows caught up ${catch_seconds}s later; hashes $setup_hashes"
stop_all
db_bytes=0
for db in "${DBS[@]}"; do db_bytes=$((db_bytes + $(du -sb "$work/template/S/db/$db" | cut -f1))); done
journal_bytes=$(du -sb "$work/template/S/journal" | cut -f1)
results="$work/results.jsonl"

# setup_line prints the result line that describes the databases every round converts.
setup_line() {
  local f=() db
  for db in "${DBS[@]}"; do f+=("$work/load-$db.json"); done
  jq -cs --argjson dbs "$(jq -cn '$ARGS.positional' --args "${DBS[@]}")" \
    --argjson load "$load_seconds" --argjson catchup "$catch_seconds" --argjson dbb "$db_bytes" --argjson jb "$journal_bytes" \
    --argjson dropped "$caches_dropped" \
    '{kind: "setup", databases: $dbs, rows: (map(.rows) | add), logical_bytes: (map(.logical_bytes) | add),
      value_size: .[0].value_size, load_seconds: $load, catch_up_seconds: $catchup, source_db_bytes: $dbb,
      source_journal_bytes: $jb, caches_dropped: $dropped}' "${f[@]}"
}

modes=(in-place copy)
[ "$STAGED" = 0 ] || modes+=(staged)
round_loads=()

# run_round MODE ROUND converts a fresh copy of the template under the probe, checks the result and records it.
run_round() {
  local mode=$1 round=$2 run="$work/run" flags=() line bytes steps hashes
  echo "-- $mode, round $round"
  fresh_copy "$run"
  round_loads+=("$mode $round: $(cut -d' ' -f1 /proc/loadavg)")
  start_all "$run" "$mode.$round"
  wait_shadows
  case $mode in
  copy) flags=(--force-copy) ;;
  staged) flags=(--force-copy --stage "$run/stage") ;;
  esac
  line=$("$cb" run --members "$S,$D1,$D2" --db "$(IFS=,; echo "${DBS[*]}")" --mode "$mode" --round "$round" \
    --stdout "$work/convert.out" -- \
    "$migrate" convert-shadow --source "$S" --shadow "$D1,$D2" --as backup,dr --mirror "$MIRROR" --yes --json \
    --state-dir "$run/state" --wait "$STEP_WAIT" "${flags[@]}") || {
    echo "--- last lines of the output of migrate convert-shadow" >&2
    tail -c 4000 "$work/convert.out" >&2
    fail "$mode round $round failed"
  }
  steps=$(jq -c .steps <<<"$line")
  case $mode in
  in-place) jq -e '.["join-in-place"] > 0 and .copy == null and .restore == null' <<<"$steps" >/dev/null ||
    fail "the in-place round did not join in place: plan steps $steps" ;;
  *) jq -e '.["join-in-place"] == null and (.copy // .restore) > 0' <<<"$steps" >/dev/null ||
    fail "the $mode round did not copy: plan steps $steps" ;;
  esac
  bytes=$(curl -fsS "http://${admin_of[S]}/metrics" |
    awk '$1 == "mirrorkit_snapshot_bytes_served_total" { printf "%.0f", $2; found = 1 } END { exit !found }') ||
    fail "no mirrorkit_snapshot_bytes_served_total in S's metrics"
  hashes=$(wait_hashes)
  line=$(jq -c --argjson b "$bytes" --argjson h "$hashes" '. + {bytes_served: $b, hashes: $h}' <<<"$line")
  echo "$line" >>"$results"
  jq -r '"  \(.seconds | . * 10 | round / 10) s, pause \(.probe.during.max_pause_seconds * 1000 | round) ms, " +
    "\(.probe.during.writes) writes acknowledged during, \(.probe.errors) errors, " +
    "\(.bytes_served / 1048576 | round) MiB copied; steps \(.steps | to_entries | map("\(.key) ×\(.value)") | join(", "))"' <<<"$line"
  stop_all
  rm -rf "$run"
}

step "conversions: ${modes[*]}, $ROUNDS round(s) each, interleaved"
for round in $(seq 1 "$ROUNDS"); do
  for mode in "${modes[@]}"; do run_round "$mode" "$round"; done
done
setup_line >>"$results"

step "report"
facts+=("Load average (1 min) before each round=$(IFS=';'; echo "${round_loads[*]}" | sed 's/;/, /g')")
facts+=("Load average (1, 5, 15 min) at the end=$(cut -d' ' -f1-3 /proc/loadavg)")
command="BENCH_CONVERT_GIB=$GIB BENCH_CONVERT_ROUNDS=$ROUNDS"
[ "$STAGED" = 1 ] || command+=" BENCH_CONVERT_STAGED=0"
"$cb" report --results "$results" --out "$OUT" --command "$command ./scripts/bench-convert.sh" "${facts[@]/#/--fact=}"
echo "wrote $OUT"
