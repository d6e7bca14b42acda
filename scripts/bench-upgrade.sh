#!/usr/bin/env bash
# A rolling upgrade under commit load: a mirror of four members (A primary, B backup, C DR async, D reporting async),
# each run by a host agent of its own, upgraded by `upgrade apply` from an old build (0.9.0, format level 1: the major
# procedure) to bin/member while clients write through the mirror-aware client; and, for a baseline in the same run,
# the same upgrade of a fresh mirror with planned downtime (every member stopped, upgraded and started again). Written
# to bench/upgrade.md, which `make bench` puts into BENCHMARKS.md. Needs `make build` first (bin/member, bin/upgrade);
# builds the old member and bin/failoverbench itself. Everything it makes lives in one directory under .bench/, removed
# at the end.
#
#   BENCH_UPGRADE_ROUNDS    upgrades of each kind, interleaved, each of a fresh mirror (default 1)
#   BENCH_UPGRADE_CLIENTS   clients writing throughout, each with one commit in flight (default 16)
#   BENCH_UPGRADE_OUT       report to write (default bench/upgrade.md)
#
# The target: total client-visible unavailability across the rolling upgrade under 500 ms on loopback. The run fails,
# once the report is written, when an upgrade fails or does not finish within APPLY_LIMIT, when a member does not run
# the new build afterwards, when an acknowledged commit is missing, or when a client call fails during the rolling
# upgrade (with planned downtime a client error is recorded, not judged).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
ROUNDS=${BENCH_UPGRADE_ROUNDS:-1}
CLIENTS=${BENCH_UPGRADE_CLIENTS:-16}
OUT=${BENCH_UPGRADE_OUT:-bench/upgrade.md}
member="$BIN/member"
upgrade="$BIN/upgrade"
fb="$BIN/failoverbench"
bench_name=bench-upgrade
OLD_SOFTWARE=0.9.0
OLD_LEVEL=1
QOS=2s
CONNS=4
WARMUP=2     # seconds of load before the upgrade starts
SETTLE=3     # seconds of load after it ends, still measured
STALL_MS=50  # a gap between acknowledgements longer than this is a pause
TARGET_MS=500
RETRY=30s        # a client call retries this long before it fails: far longer than any pause an upgrade should cause
APPLY_LIMIT=120s # `upgrade apply` is stopped (SIGTERM) after this long and the upgrade counts as failed
NAMES=(A B C D)
declare -A ip_of=([A]=127.0.0.41 [B]=127.0.0.42 [C]=127.0.0.43 [D]=127.0.0.44)
declare -A join_as=([B]=failover [C]=dr [D]=reporting-ro)
# Every agent requires it; members present it to agents and `upgrade` to theirs (all read MIRRORKIT_AGENT_TOKEN).
export MIRRORKIT_AGENT_TOKEN="bench-upgrade-$$-$RANDOM"
# shellcheck source=scripts/benchlib.sh
. scripts/benchlib.sh
# shellcheck source=scripts/agentlib.sh
. scripts/agentlib.sh

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "bench-upgrade: BENCH_UPGRADE_ROUNDS=$ROUNDS: want a positive whole number" >&2; exit 2; }
[[ "$CLIENTS" =~ ^[1-9][0-9]*$ ]] || { echo "bench-upgrade: BENCH_UPGRADE_CLIENTS=$CLIENTS: want a positive whole number" >&2; exit 2; }
for tool in "$member" "$upgrade"; do
  [ -x "$tool" ] || { echo "bench-upgrade: $tool is missing: run \`make build\` first" >&2; exit 1; }
done
for tool in jq curl python3 pgrep; do
  command -v "$tool" >/dev/null || { echo "bench-upgrade: $tool is missing: install it from the OS packages" >&2; exit 1; }
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "bench-upgrade: $*" >&2; exit 1; }

mkdir -p .bench
work=$(mktemp -d "$PWD/.bench/upgrade.XXXXXX")
declare -A agent_pid=() member_addr=()
hosts=() # names of the members whose agent runs, in start order
logs=()  # logs of the current mirror, shown if the run fails

cleanup() {
  local status=$? i
  set +e
  for ((i = ${#hosts[@]} - 1; i >= 0; i--)); do stop_host "${hosts[i]}"; done
  [ "$status" -ne 0 ] && show_logs
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_host NAME stops member NAME's agent, then the member: a member runs on without its agent, so it is found as the
# agent's child first. Each gets SIGTERM, then SIGKILL if it is still there after 10s.
stop_host() {
  local apid=${agent_pid[$1]} children p
  children=$(pgrep -P "$apid" || true)
  for p in "$apid" $children; do
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  wait "$apid" 2>/dev/null || true
  unset "agent_pid[$1]"
}

stop_hosts() {
  local i
  for ((i = ${#hosts[@]} - 1; i >= 0; i--)); do stop_host "${hosts[i]}"; done
  hosts=()
}

# start_host NAME DIR writes the configuration of an agent on member NAME's IP that runs member NAME with the old build
# (autostart), with its data, configuration and logs in DIR/NAME, starts the agent and waits until the member serves.
start_host() {
  local name=$1 dir=$2/$1 ip=${ip_of[$1]} data admin agent
  mkdir -p "$dir"
  data="$ip:$(free_port "$ip")"
  admin=$data agent=$data
  while [ "$admin" = "$data" ]; do admin="$ip:$(free_port "$ip")"; done
  while [ "$agent" = "$data" ] || [ "$agent" = "$admin" ]; do agent="$ip:$(free_port "$ip")"; done
  write_agent_config "$dir/agent.toml" "$name" "$old" "$data" "$admin" "$agent" "$dir/data" "$dir/member.log" "$MIRRORKIT_AGENT_TOKEN"
  "$member" agent --config "$dir/agent.toml" --log-format json >>"$dir/agent.log" 2>&1 &
  agent_pid[$name]=$!
  hosts+=("$name")
  member_addr[$name]=$data
  logs+=("$dir/agent.log" "$dir/member.log")
  wait_serving "$data" "${agent_pid[$name]}" || case $? in
    1) fail "the agent of member $name exited during start (log $dir/agent.log)" ;;
    *) fail "member $name on $data did not start under its agent" ;;
  esac
}

# setup DIR starts a fresh mirror MIR of the old build in DIR: A primary, B its backup, C a DR async and D a reporting
# async, each under its own agent, with database BENCH on every member; it returns once the backup is Active and the
# asyncs have caught up. ALL is then the members' data addresses, comma-separated.
setup() {
  local dir=$1 name i out
  logs=()
  for name in "${NAMES[@]}"; do start_host "$name" "$dir"; done
  "$member" mirror create MIR --member "${member_addr[A]}" --qos "$QOS" >/dev/null
  for name in B C D; do
    "$member" mirror join MIR --member "${member_addr[$name]}" --primary "${member_addr[A]}" --as "${join_as[$name]}" >/dev/null
  done
  "$member" db create BENCH --mirror MIR --member "${member_addr[A]}" >/dev/null
  # A member refuses the database until the mirror's configuration from the primary has reached it.
  for name in B C D; do
    for i in $(seq 1 100); do
      out=$("$member" db create BENCH --mirror MIR --member "${member_addr[$name]}" 2>&1) && break
      [ "$i" -lt 100 ] || fail "create BENCH on $name: $out"
      sleep 0.1
    done
  done
  ALL=$(for name in "${NAMES[@]}"; do echo "${member_addr[$name]}"; done | paste -sd,)
  "$fb" wait --members "$ALL" --mirror MIR >/dev/null
}

# versions_problem prints which members do not run the new build (nothing when all do).
versions_problem() {
  local name got
  for name in "${NAMES[@]}"; do
    got=$("$member" status --member "${member_addr[$name]}" --json 2>&1 | jq -r '"\(.member.version.software) \(.member.version.format_level)"' 2>&1) ||
      got="no answer"
    [ "$got" = "$NEW_SOFTWARE $NEW_LEVEL" ] || echo "member $name runs $got, not $NEW_SOFTWARE $NEW_LEVEL"
  done
}

# stuck_step DIR RESULT says where the upgrade planned in DIR stopped: the first step not done and how it failed; when
# `upgrade apply` ran out of time in a step that stops a member, whether that member still runs.
stuck_step() {
  local dir=$1 line=$2 step n title member running
  step=$(jq -c '.plan.steps as $p | [.state.steps[] | select(.status != "done") | . as $s |
    $p[$s.n - 1] + {error: ($s.error // "")}] | first // empty' "$dir/status.json")
  if [ -z "$step" ]; then
    echo "\`upgrade apply\` failed: $(jq -r .command_error <<<"$line")"
    return
  fi
  n=$(jq -r .n <<<"$step") title=$(jq -r .title <<<"$step") member=$(jq -r '.member // ""' <<<"$step")
  if ! jq -e '.command_error // "" | contains("stopped after")' <<<"$line" >/dev/null; then
    echo "\`upgrade apply\` failed in step $n ($title): $(jq -r .error <<<"$step")"
    return
  fi
  printf '`upgrade apply` did not finish within %s: it was still in step %s (%s)' "$APPLY_LIMIT" "$n" "$title"
  if [ "$(jq -r .kind <<<"$step")" = stop-member ]; then
    running=$(curl -fsS -m 5 -H "Authorization: Bearer $MIRRORKIT_AGENT_TOKEN" \
      "http://$(jq -r --arg m "$member" '.plan.params["agent." + $m]' "$dir/status.json")/v1/members/$member" | jq -r .running) || running=unknown
    [ "$running" != true ] || printf '; member %s had not exited since its agent sent it SIGTERM' "$member"
  fi
  echo
}

results="$work/results.jsonl"
round_loads=()
failures=()

# run_upgrade KIND ROUND upgrades a fresh mirror of the old build under load (KIND rolling or planned-downtime) and
# records the result with the plan's steps and their times. An upgrade that fails, or after which a member does not run
# the new build or an acknowledged commit is missing, is recorded with what went wrong and fails the run once the report
# is written; so does a client error during the rolling upgrade (with planned downtime it is recorded, not judged).
run_upgrade() {
  local kind=$1 round=$2 dir="$work/$1.$2" flags=() status=0 line problem=""
  echo "-- $kind, round $round"
  round_loads+=("$kind $round: $(cut -d' ' -f1 /proc/loadavg)")
  setup "$dir"
  [ "$kind" = planned-downtime ] && flags=(--procedure planned-downtime)
  "$upgrade" plan --mirror "$ALL" --to-binary "$new" -o "$dir/plan.json" "${flags[@]}" >"$dir/plan.txt" 2>&1 ||
    { cat "$dir/plan.txt" >&2; fail "upgrade plan ($kind, round $round) failed"; }
  logs+=("$dir/apply.log")
  "$fb" during --members "$ALL" --mirror MIR --db BENCH --clients "$CLIENTS" --conns "$CONNS" --warmup "${WARMUP}s" \
    --settle "${SETTLE}s" --stall "${STALL_MS}ms" --retry-timeout "$RETRY" --timeout "$APPLY_LIMIT" --json \
    --command-log "$dir/apply.log" -- "$upgrade" apply "$dir/plan.json" --yes >"$dir/during.json" || status=$?
  line=$(tail -1 "$dir/during.json")
  [ -n "$line" ] || fail "failoverbench during ($kind, round $round) printed no result (exit status $status)"
  "$upgrade" status "$dir/plan.json" --json >"$dir/status.json"
  if ! jq -e '.exit_status == 0' <<<"$line" >/dev/null; then
    problem=$(stuck_step "$dir" "$line")
    echo "--- last lines of the output of upgrade apply" >&2
    tail -5 "$dir/apply.log" >&2
  else
    problem=$(versions_problem | paste -sd';' | sed 's/;/; /g')
    jq -e '.missing == 0' <<<"$line" >/dev/null || problem+="${problem:+; }$(jq -r .failure <<<"$line")"
    if [ -z "$problem" ] && [ "$kind" = rolling ] && [ "$status" -ne 0 ]; then problem=$(jq -r .failure <<<"$line"); fi
  fi
  [ -z "$problem" ] || failures+=("$kind, round $round: $problem")
  jq -c --arg kind "$kind" --argjson round "$round" --arg problem "$problem" --slurpfile st "$dir/status.json" \
    '{kind: $kind, round: $round, procedure: $st[0].plan.params.procedure, problem: $problem, during: .,
      steps: [$st[0].plan.steps as $p | range(0; $p | length) as $i |
        {n: $p[$i].n, kind: $p[$i].kind, member: ($p[$i].member // ""), title: $p[$i].title, estimate: $p[$i].estimate,
         started: $st[0].state.steps[$i].started, ended: $st[0].state.steps[$i].ended, status: $st[0].state.steps[$i].status}]}' \
    <<<"$line" >>"$results"
  jq -r '"  \(.procedure) procedure: unavailable \(.during.unavailable_ms | round) ms in \(.during.pauses) pauses (longest \(.during.longest_pause_ms | round) ms), upgrade \(.during.command_ms / 1000 * 10 | round / 10) s, \(.during.commits_during) commits during, \(.during.errors) errors, \(.during.missing) missing" +
    (if .problem != "" then "\n  FAILED: \(.problem)" else "" end)' <(tail -1 "$results")
  stop_hosts
  rm -rf "$dir"
}

step "build"
old="$work/member-$OLD_SOFTWARE"
go build -o "$BIN/" ./bench/failoverbench
go build -ldflags "-X github.com/mirrorkit/mirrorkit/engine/version.Software=$OLD_SOFTWARE -X github.com/mirrorkit/mirrorkit/engine/version.level=$OLD_LEVEL" \
  -o "$old" ./cmd/member
# The agents read the binary to install from the path in the plan: it must be absolute.
new=$(realpath "$member")
NEW_SOFTWARE=$("$member" version --json | jq -r .software)
NEW_LEVEL=$("$member" version --json | jq -r .format_level)
echo "  old: $("$old" version | head -1)"
echo "  new: $("$member" version | head -1)"

step "environment"
fs=$(df -PT "$work" | awk 'NR==2 {print $2 " (" $1 ", mounted at " $7 ")"}')
facts=(
  "Date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  "CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores (nproc)"
  "Memory=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  "Kernel=$(uname -sr)"
  "Filesystem of every directory=$fs"
  "Old build=$("$old" version | head -1)"
  "New build=$("$member" version | head -1)"
  "Go=$(go version)"
  "Commit=$(git describe --always --dirty 2>/dev/null || echo unknown)"
  "Load average (1, 5, 15 min) at the start=$(cut -d' ' -f1-3 /proc/loadavg)"
)
printf '  %s\n' "${facts[@]}"

step "upgrades from $OLD_SOFTWARE: rolling and planned downtime, $ROUNDS round(s) each, interleaved, $CLIENTS clients"
for round in $(seq 1 "$ROUNDS"); do
  for kind in rolling planned-downtime; do run_upgrade "$kind" "$round"; done
done

step "report"
facts+=("Load average (1 min) before each upgrade=$(IFS=';'; echo "${round_loads[*]}" | sed 's/;/, /g')")
facts+=("Load average (1, 5, 15 min) at the end=$(cut -d' ' -f1-3 /proc/loadavg)")
command="BENCH_UPGRADE_ROUNDS=$ROUNDS BENCH_UPGRADE_CLIENTS=$CLIENTS ./scripts/bench-upgrade.sh"
# The report is built from the results in jq: figures per upgrade; the ratio of the medians over the upgrades that
# completed; the target judged on the worst rolling upgrade; the steps of the rolling upgrade with the median
# unavailability, with the client-visible pauses that fell within each.
jq -rs --arg command "$command" --argjson facts "$(jq -cn '$ARGS.positional' --args "${facts[@]}")" \
  --argjson target "$TARGET_MS" --argjson stall "$STALL_MS" --argjson settle "$SETTLE" --argjson warmup "$WARMUP" \
  --argjson clients "$CLIENTS" --argjson conns "$CONNS" --arg qos "$QOS" --arg old "$OLD_SOFTWARE" \
  --arg retry "$RETRY" --arg limit "$APPLY_LIMIT" '
  def epoch: capture("^(?<s>[^.Z]+)(?<f>\\.[0-9]+)?Z$") | (.s + "Z" | fromdateiso8601) + ((.f // "0") | tonumber);
  def fmt1: (. * 10 | round) as $x | "\($x / 10 | floor).\($x % 10)";
  def median: sort | .[(length - 1) / 2 | floor];
  def name: if .kind == "rolling" then "rolling, \(.procedure) procedure" else "planned downtime" end;
  def completed: .during.exit_status == 0;
  def kind($k): map(select(.kind == $k));
  (kind("rolling") | map(select(completed))) as $rolling | (kind("planned-downtime") | map(select(completed))) as $down |
  (kind("rolling") | length) as $rounds |
  ($rolling | map(.during.unavailable_ms) | median) as $r | ($down | map(.during.unavailable_ms) | median) as $d |
  ($rolling | map(.during.unavailable_ms) | max) as $worst |
  (if $rolling == [] then kind("rolling")[0] else $rolling | sort_by(.during.unavailable_ms) | .[(length - 1) / 2 | floor] end) as $shown |
  "## Rolling upgrade under load",
  "",
  "Command: `\($command)` (after `make build`).",
  "",
  "Four members on loopback addresses of one machine form mirror MIR (QoS timeout \($qos)): A the primary, B its backup,",
  "C a DR async and D a read-only reporting async. Each is run by a host agent of its own (`member agent`, autostart),",
  "configured with an old build of the member: \($old) at format level 1, built from this commit with",
  "`-ldflags \"-X …/engine/version.Software=\($old) -X …/engine/version.level=1\"`. Each upgrade takes a fresh mirror of",
  "that build, with database BENCH on every member, to `bin/member` (format level 2), the agents installing the binary",
  "and restarting their member:",
  "",
  "- rolling: `upgrade plan --mirror A,B,C,D --to-binary bin/member -o plan.json` (which chooses the major procedure), then",
  "  `upgrade apply plan.json --yes`: the asyncs one at a time, then under no-failover the backup, a planned failover to it,",
  "  and the old primary;",
  "- planned downtime, the baseline: the same with `--procedure planned-downtime`: every member stopped, the binary",
  "  installed on each, every member started again, the primary first.",
  "",
  "The upgrade runs under `failoverbench during --members A,B,C,D -- upgrade apply plan.json --yes`: \($clients) clients",
  "write through one mirror-aware client (Go client, \($conns) connections, given every member, retrying a call for up to",
  "\($retry)), each with one commit (one Set of a 100-byte value) in flight, from \($warmup) s before the upgrade until \($settle) s",
  "after it. A **pause** is an interval longer than \($stall) ms in which no client got an acknowledgement; the **total",
  "client-visible unavailability** is the pauses from the start of `upgrade apply` until \($settle) s after it ended, added",
  "up (each clipped to that window). Every acknowledged commit is read back at the end from the primary of the time,",
  "and every member must then run the new build. `upgrade apply` is stopped after \($limit) (the upgrade then did not",
  "complete). Rounds: \($rounds) of each kind, interleaved, each on a fresh mirror.",
  "",
  "| environment | |",
  "|---|---|",
  ($facts[] | capture("^(?<k>[^=]+)=(?<v>.*)$") | "| \(.k) | \(.v) |"),
  "",
  "| upgrade | round | total unavailability ms | longest pause ms | pauses | wall time s | commits during | client errors | acknowledged commits missing |",
  "|---|---|---|---|---|---|---|---|---|",
  (sort_by(.kind != "rolling", .round)[] |
    if completed then
      "| \(name) | \(.round) | \(.during.unavailable_ms | round) | \(.during.longest_pause_ms | round) | \(.during.pauses) | \(.during.command_ms / 1000 | fmt1) | \(.during.commits_during) | \(.during.errors) | \(.during.missing) |"
    else
      "| \(name) | \(.round) | did not complete | – | – | stopped after \(.during.command_ms / 1000 | fmt1) | \(.during.commits_during) | \(.during.errors) | \(if .during.missing < 0 then "not checked" else .during.missing end) |"
    end),
  "",
  (map(select(.problem != "")) | if length > 0 then
    (.[] | "- **\(name), round \(.round) failed**: \(.problem)"), "" else empty end),
  (if $rolling != [] and $down != [] and $r > 0 then
    "Planned downtime / rolling, total client-visible unavailability: **\($d / $r | fmt1)×** (\($d | round) ms against \($r | round) ms\(if $rounds > 1 then ", medians over the rounds that completed" else "" end))."
  elif $rolling != [] and $down != [] then
    "Total client-visible unavailability\(if $rounds > 1 then ", medians over the rounds that completed" else "" end): rolling 0 ms (no pause over \($stall) ms), planned downtime \($d | round) ms: no finite ratio."
  else
    "No ratio: \([if $rolling == [] then "the rolling upgrade" else empty end, if $down == [] then "the planned-downtime upgrade" else empty end] | join(" and ")) did not complete in any round."
  end),
  "",
  "Target: total client-visible unavailability across the rolling upgrade < \($target) ms on loopback: " +
  (if ($rolling | length) < $rounds then "**missed** (the rolling upgrade did not complete in \($rounds - ($rolling | length)) of \($rounds) rounds)."
   else "**\(if $worst < $target then "met" else "missed" end)** (\($worst | round) ms\(if $rounds > 1 then ", the worst of \($rounds) rounds" else "" end))." end),
  "",
  "The rolling plan\(if $rounds > 1 then " of the round with the median unavailability" else "" end): each step estimated by the plan and as it took (its run and verification, from `upgrade status plan.json --json`), with the client-visible pauses that fell within it:",
  "",
  "| step | kind | member | estimate | actual s | pauses within ms |",
  "|---|---|---|---|---|---|",
  ($shown | (.during.command_started | epoch) as $c0 | (.during.pause_list // []) as $pauses | .steps[] |
    if .started == null or .ended == null or .status != "done" then "| \(.n) | \(.kind) | \(.member) | \(.estimate) | – (\(.status)) | – |" else
    (.started | epoch) as $s | (.ended | epoch) as $e |
    ([$pauses[] | ($c0 + .at_ms / 1000) as $ps | ($ps + .ms / 1000) as $pe |
      ([$pe, $e] | min) - ([$ps, $s] | max) | select(. > 0)] | add // 0) as $in |
    "| \(.n) | \(.kind) | \(.member) | \(.estimate) | \($e - $s | fmt1) | \($in * 1000 | round) |" end),
  "",
  "Pauses between the steps (the executor recording its progress) and in the \($settle) s after the last one count in the total but in no step."
  ' "$results" >"$work/report.md"
mkdir -p "$(dirname "$OUT")"
mv "$work/report.md" "$OUT"
echo "wrote $OUT"
for f in "${failures[@]}"; do echo "bench-upgrade: FAIL: $f" >&2; done
[ "${#failures[@]}" -eq 0 ]
