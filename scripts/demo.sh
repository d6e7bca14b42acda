#!/usr/bin/env bash
# The main job end to end on loopback: start a member, create a database, write and read data through the CLI, kill the
# member with SIGKILL, restart it, show that every acknowledged write survived, and shut down cleanly with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
member="$BIN/member"

work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
  else
    echo $((20000 + RANDOM % 20000))
  fi
}
DATA="127.0.0.1:$(free_port)"
ADMIN="127.0.0.1:$(free_port)"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$'; printf ' %q' "$@"; printf '\n'; "$@"; }

start_member() {
  "$member" run --name demo --data-dir "$work/data" --listen "$DATA" --admin-listen "$ADMIN" --log-format json \
    >>"$work/member.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    if "$member" status --member "$DATA" --timeout 1s >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "member exited:"; tail -20 "$work/member.log"; exit 1; }
    sleep 0.1
  done
  echo "member did not start"; tail -20 "$work/member.log"; exit 1
}

step "start a member on $DATA (data in $work/data)"
start_member
run "$member" version

step "create a database and write data"
run "$member" db create APP --member "$DATA"
run "$member" kv set --member "$DATA" --db APP '^Orders(42,"total")' 19.99
run "$member" kv set --member "$DATA" --db APP '^Orders(42,"customer")' "Ada Lovelace"
run "$member" kv set --member "$DATA" --db APP '^Orders(43,"total")' 5
run "$member" kv incr --member "$DATA" --db APP '^Orders' 2
for i in $(seq 1 50); do "$member" kv set --member "$DATA" --db APP "^Events($i)" "event $i" >/dev/null; done
echo "(50 more nodes written under ^Events)"

step "read it back"
run "$member" kv get --member "$DATA" --db APP '^Orders(42,"total")'
run "$member" kv query --member "$DATA" --db APP '^Orders'
run "$member" kv order --member "$DATA" --db APP '^Orders(42)'

step "kill -9 the member in the middle of its life, then restart it"
run kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=""
start_member

grep -o '"transactions":[0-9]*' "$work/member.log" | tail -1 | sed 's/"transactions":/recovery replayed /; s/$/ transactions from the journal/' || true

step "every acknowledged write survived"
run "$member" kv query --member "$DATA" --db APP '^Orders'
count=$("$member" kv query --member "$DATA" --db APP '^Events' | wc -l)
echo "^Events holds $count nodes"
[ "$count" -eq 50 ] || { echo "expected 50 nodes under ^Events"; exit 1; }
[ "$("$member" kv get --member "$DATA" --db APP '^Orders')" = "2" ] || { echo "^Orders counter lost"; exit 1; }
run "$member" status --member "$DATA"

step "shut down cleanly with SIGTERM"
run kill -TERM "$pid"
if wait "$pid"; then echo "member exited with status 0"; else echo "member exited with status $?"; exit 1; fi
pid=""
run "$member" journal check "$work/data"
run "$member" journal dump "$work/data" --limit 5

# ---------------------------------------------------------------------------------------------------------------------------
# Part two: a three-member mirror on loopback — primary, backup and DR async — with an arbiter; a planned failover under the
# CLI, then an unplanned one: the primary is killed, the backup takes over through the arbiter, the old primary rejoins.
pids=()
declare -A pid_of
cleanup_mirror() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap 'cleanup_mirror; cleanup' EXIT

start_mirror_member() { # name ip
  local name=$1 ip=$2
  "$member" run --name "$name" --data-dir "$work/$name" --listen "$ip:$MPORT" --admin-listen "$ip:$APORT" --log-format json \
    --arbiter-token demo-arbiter >>"$work/$name.log" 2>&1 &
  pids+=($!)
  pid_of[$name]=$!
  for _ in $(seq 1 300); do
    "$member" status --member "$ip:$MPORT" --timeout 1s >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "member $name did not start"; tail -20 "$work/$name.log"; exit 1
}
MPORT=$(free_port); APORT=$(free_port)
A="127.0.0.11:$MPORT"; B="127.0.0.12:$MPORT"; C="127.0.0.13:$MPORT"; ARB="127.0.0.10:$MPORT"

step "start an arbiter on $ARB and three members: A on $A, B on $B, C on $C"
"$member" arbiter --listen "$ARB" --data-dir "$work/arbiter" --token demo-arbiter --log-format json >>"$work/arbiter.log" 2>&1 &
pids+=($!)
start_mirror_member A 127.0.0.11
start_mirror_member B 127.0.0.12
start_mirror_member C 127.0.0.13

step "create mirror DEMO on A with the arbiter, join B as failover member (backup) and C as DR async"
run "$member" mirror create DEMO --member "$A" --qos 2s --arbiter "$ARB"
run "$member" mirror join DEMO --member "$B" --primary "$A" --as failover
run "$member" mirror join DEMO --member "$C" --primary "$A" --as dr

step "create the mirrored database SHOP on the primary, then on the other members"
run "$member" db create SHOP --mirror DEMO --member "$A"
run "$member" db create SHOP --mirror DEMO --member "$B"
run "$member" db create SHOP --mirror DEMO --member "$C"

step "write on the primary; every commit is on the backup before it is acknowledged"
for i in $(seq 1 20); do "$member" kv set --member "$A" --db SHOP "^Cart($i)" "item $i" >/dev/null; done
run "$member" kv incr --member "$A" --db SHOP '^Orders' 20
for _ in $(seq 1 100); do
  "$member" status --member "$A" --json | grep -q '"journal_transfer": "Active"' && break
  sleep 0.1
done
run "$member" status --member "$A" --dbs

step "planned failover: B becomes primary, A continues as backup"
run "$member" mirror failover DEMO --member "$A"
echo "(a client that names both members follows the primary by itself:)"
run "$member" kv incr --member "$A" --member "$B" --db SHOP '^Orders'
for _ in $(seq 1 100); do
  "$member" status --member "$B" --json | grep -q '"journal_transfer": "Active"' && break
  sleep 0.1
done
run "$member" status --member "$B"

echo "(the same Mirror Monitor is a web page on every member's admin port, e.g. http://127.0.0.12:$APORT/)"

wait_json() { # ADDR PATTERN: until `member status --json` on ADDR matches PATTERN
  for _ in $(seq 1 300); do
    "$member" status --member "$1" --json 2>/dev/null | grep -q "$2" && return 0
    sleep 0.1
  done
  echo "timed out waiting for $2 on $1"; "$member" status --member "$1" || true; exit 1
}

step "unplanned failover: kill -9 the primary B; A takes over through the arbiter after the QoS timeout"
wait_json "$B" '"failover_mode": "Arbiter Controlled"'
run "$member" status --member "$B"
run kill -9 "${pid_of[B]}"
wait "${pid_of[B]}" 2>/dev/null || true
started=$(date +%s%N)
until "$member" kv incr --member "$A" --member "$B" --db SHOP '^Orders' >/dev/null 2>&1; do sleep 0.05; done
echo "(a write succeeded on the new primary $(( ($(date +%s%N) - started) / 1000000 )) ms after the kill)"
run "$member" status --member "$A"

step "restart B: it finds A primary in a later epoch and rejoins as its backup"
"$member" run --name B --data-dir "$work/B" --listen "$B" --admin-listen "127.0.0.12:$APORT" --log-format json \
  --arbiter-token demo-arbiter >>"$work/B.log" 2>&1 &
pids+=($!)
wait_json "$A" '"journal_transfer": "Active"'
run "$member" status --member "$A"

step "all three copies are identical"
run "$member" db hash SHOP --member "$A"
run "$member" db hash SHOP --member "$B"
run "$member" db hash SHOP --member "$C"
h1=$("$member" db hash SHOP --member "$A" | cut -d' ' -f1)
for m in "$B" "$C"; do
  for _ in $(seq 1 50); do
    [ "$("$member" db hash SHOP --member "$m" | cut -d' ' -f1)" = "$h1" ] && break
    sleep 0.1
  done
  [ "$("$member" db hash SHOP --member "$m" | cut -d' ' -f1)" = "$h1" ] || { echo "copy on $m differs"; exit 1; }
done

step "an existing database with data joins the mirror: the plan, then a backup staged in a directory restored on B and C"
migrate="$BIN/migrate"
run "$member" db create LEDGER --member "$A"
for i in $(seq 1 50); do "$member" kv set --member "$A" --db LEDGER "^Entry($i)" "amount $i" >/dev/null; done
run "$migrate" add-db --mirror "$A" --db LEDGER --method backup --stage "$work/stage" --state-dir "$work/plans" --dry-run
run "$migrate" add-db --mirror "$A" --db LEDGER --method backup --stage "$work/stage" --state-dir "$work/plans" --yes
run "$migrate" list --stage "$work/stage" --mirror "$A"
h1=$("$member" db hash LEDGER --member "$A" | cut -d' ' -f1)
for m in "$B" "$C"; do
  [ "$("$member" db hash LEDGER --member "$m" | cut -d' ' -f1)" = "$h1" ] || { echo "copy of LEDGER on $m differs"; exit 1; }
done
echo "(LEDGER is identical on A, B and C, and dejournaling on B and C)"

# ---------------------------------------------------------------------------------------------------------------------------
# Part three: an old shadowing setup becomes a mirror online. X is the source; Y and Z apply its local journal through
# shadows. While a client keeps writing to X, `migrate convert-shadow` makes X the primary, Y the backup and Z a DR async:
# the shadow copies join the mirror in place, with no database copied.
X="127.0.0.21:$MPORT"; Y="127.0.0.22:$MPORT"; Z="127.0.0.23:$MPORT"
step "a shadow source X on $X with two shadow destinations, Y on $Y and Z on $Z"
start_mirror_member X 127.0.0.21
start_mirror_member Y 127.0.0.22
start_mirror_member Z 127.0.0.23
run "$member" db create ORDERS --member "$X"
run "$member" db create STOCK --member "$X"
for n in Y Z; do
  addr=$Y; [ "$n" = Z ] && addr=$Z
  run "$member" shadow create FROMX --member "$addr" --source "$X" --start now --map ORDERS=ORDERS,STOCK=STOCK
  run "$member" shadow start FROMX --member "$addr"
done
for i in $(seq 1 50); do
  "$member" kv set --member "$X" --db ORDERS "^Order($i)" "order $i" >/dev/null
  "$member" kv set --member "$X" --db STOCK "^Item($i)" "$i" >/dev/null
done
run "$member" shadow status --member "$Y"

step "convert the shadows into mirror SHOPX while a client keeps writing to X: look at the plan, then run it"
( i=1000; while :; do "$member" kv set --member "$X" --db ORDERS "^Order($i)" "order $i" >/dev/null 2>&1 || true; i=$((i + 1)); done ) &
writer=$!
pids+=("$writer")
run "$migrate" convert-shadow --source "$X" --shadow "$Y,$Z" --as backup,dr --mirror SHOPX --state-dir "$work/plans" --dry-run
run "$migrate" convert-shadow --source "$X" --shadow "$Y,$Z" --as backup,dr --mirror SHOPX --state-dir "$work/plans" --yes
kill "$writer"; wait "$writer" 2>/dev/null || true
run "$member" status --member "$X" --dbs
for db in ORDERS STOCK; do
  h1=$("$member" db hash "$db" --member "$X" | cut -d' ' -f1)
  for m in "$Y" "$Z"; do
    for _ in $(seq 1 100); do
      [ "$("$member" db hash "$db" --member "$m" | cut -d' ' -f1)" = "$h1" ] && break
      sleep 0.1
    done
    [ "$("$member" db hash "$db" --member "$m" | cut -d' ' -f1)" = "$h1" ] || { echo "copy of $db on $m differs"; exit 1; }
  done
done
echo "(ORDERS and STOCK are identical on X, Y and Z: the shadow copies joined the mirror in place, no database was copied)"

step "shut the mirror down"
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" || true; done
pids=()

# ---------------------------------------------------------------------------------------------------------------------------
# Part four: a rolling upgrade under load. Three members of an old build (0.9.0, format level 1), each run by a host agent
# of its own, are upgraded to bin/member (format level 2) by `upgrade plan` and `upgrade apply` while a client writes
# throughout; failoverbench prints the pauses that client saw. `upgrade finalize` then switches the journal format.
# shellcheck source=scripts/agentlib.sh
. scripts/agentlib.sh
upgrade="$BIN/upgrade"
old="$work/member-0.9.0"
fb="$work/failoverbench"
export MIRRORKIT_AGENT_TOKEN=demo-agent # every agent requires it; the members and `upgrade` present it
declare -A agent_pid
AGPORT=$(free_port) # the agents' port, on each member's IP
U_A="127.0.0.31:$MPORT"; U_B="127.0.0.32:$MPORT"; U_C="127.0.0.33:$MPORT"

# A member run by an agent outlives its agent, so it is found as the agent's child first and stopped after it.
stop_hosts() { # SIGNAL
  local name children p
  for name in "${!agent_pid[@]}"; do
    children=$(pgrep -P "${agent_pid[$name]}" || true)
    kill "-$1" "${agent_pid[$name]}" 2>/dev/null || true
    wait "${agent_pid[$name]}" 2>/dev/null || true
    for p in $children; do
      kill "-$1" "$p" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    done
    unset "agent_pid[$name]"
  done
}
trap 'stop_hosts KILL; cleanup_mirror; cleanup' EXIT

start_host() { # name ip: an agent on the member's IP that runs the member with the old build, started with the agent
  local name=$1 ip=$2
  write_agent_config "$work/agent-$name.toml" "$name" "$old" "$ip:$MPORT" "$ip:$APORT" "$ip:$AGPORT" "$work/upgrade-$name" \
    "$work/upgrade-$name.log" "$MIRRORKIT_AGENT_TOKEN"
  "$member" agent --config "$work/agent-$name.toml" --log-format json >>"$work/agent-$name.log" 2>&1 &
  agent_pid[$name]=$!
  for _ in $(seq 1 300); do
    "$member" status --member "$ip:$MPORT" --timeout 1s >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "member $name did not start under its agent"; tail -n 20 "$work/agent-$name.log" "$work/upgrade-$name.log"; exit 1
}

step "an old release: member 0.9.0 at format level 1 (this source with other version stamps)"
run go build -ldflags "-X github.com/mirrorkit/mirrorkit/engine/version.Software=0.9.0 -X github.com/mirrorkit/mirrorkit/engine/version.level=1" \
  -o "$old" ./cmd/member
run "$old" version
go build -o "$fb" ./bench/failoverbench

step "three members of 0.9.0, each run by a host agent of its own: A on $U_A, B on $U_B, C on $U_C"
start_host A 127.0.0.31
start_host B 127.0.0.32
start_host C 127.0.0.33
echo "(A's agent, from $work/agent-A.toml; with --agent-addr the mirror records each member's agent, where upgrade finds it)"
sed 's/^/    /' "$work/agent-A.toml"

step "create mirror UPG on A, join B as backup and C as DR async, and the database STORE on every member"
run "$member" mirror create UPG --member "$U_A" --qos 2s
run "$member" mirror join UPG --member "$U_B" --primary "$U_A" --as failover
run "$member" mirror join UPG --member "$U_C" --primary "$U_A" --as dr
run "$member" db create STORE --mirror UPG --member "$U_A"
for m in "$U_B" "$U_C"; do
  for i in $(seq 1 100); do # a member takes the database once the mirror's configuration has reached it
    "$member" db create STORE --mirror UPG --member "$m" >/dev/null 2>&1 && break
    [ "$i" -lt 100 ] || { echo "could not create STORE on $m"; exit 1; }
    sleep 0.1
  done
done
wait_json "$U_A" '"journal_transfer": "Active"'
run "$member" status --member "$U_A"

step "the upgrade plan to $BIN/member: the order, live pre-checks and expected pause; nothing changes"
# The agents read the binary from the path in the plan: an absolute one.
run "$upgrade" plan --mirror "$U_A,$U_B,$U_C" --to-binary "$(realpath "$member")" -o "$work/plan.json"

step "apply it while a client writes through the mirror-aware client, which reports the pauses it saw"
run "$fb" during --members "$U_A,$U_B,$U_C" --mirror UPG --db STORE --clients 8 --warmup 1s --settle 2s \
  --command-log "$work/apply.log" -- "$upgrade" apply "$work/plan.json" --yes
echo "(upgrade apply printed its progress to $work/apply.log, and at the end:)"
sed -n '/^upgrade done/,$p' "$work/apply.log"

step "every member runs the new build; B is the primary, A its backup"
wait_json "$U_B" '"journal_transfer": "Active"'
run "$member" status --member "$U_B"

step "finalize: the mirror writes the new journal format from now on (no way back to 0.9.0 after this)"
run "$upgrade" finalize --mirror "$U_B" --yes
run "$member" status --member "$U_B"

step "shut the upgraded mirror down (its agents, then its members)"
stop_hosts TERM
echo
echo "demo complete"
