#!/usr/bin/env bash
# The long run of the linearizability check under faults (at least 200 fault rounds, build tag longfaults), recorded in
# bench/longfaults.md, which `make bench` puts into BENCHMARKS.md. It fails when the check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/longfaults.md
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cmd=(go test -count=1 -tags longfaults -run '^TestLinearizableUnderFaults$' -timeout 3h -v ./cmd/member/)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
status=0
"${cmd[@]}" >"$log" 2>&1 || status=$?
result=PASS
[ "$status" -eq 0 ] || result=FAIL
summary=$(grep -o 'summary: .*' "$log" | tail -1 || true)
{
  echo "## Linearizability under faults (long run)"
  echo
  echo "Command: \`make longfaults\` (\`${cmd[*]}\`), started $started on $(nproc) cores, $(go version | cut -d' ' -f3), commit $(git rev-parse --short HEAD)."
  echo
  echo "Result: **$result**. ${summary:-no summary line: see the test output}"
  echo
  echo "Each round injects one fault at random (the primary killed, paused or partitioned from its backup and the arbiter,"
  echo "the failover members cut from each other, the arbiter killed or paused), heals it and waits until the mirror is healthy;"
  echo "clients run reads, writes and compare-and-sets through the mirror-aware client throughout. The history is checked with"
  echo "porcupine (a timeout counts as a failure), every acknowledged write is read back, and the epoch owners recorded by each"
  echo "member's configuration and journal must agree."
} >"$out"
cat "$out"
if [ "$status" -ne 0 ]; then
  tail -50 "$log"
  exit "$status"
fi
