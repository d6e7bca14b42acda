// Package bench holds the programs behind `make bench` (scripts/bench.sh): a commit load generator for a running member
// (commitbench), the one-sync-per-commit baselines on the same disk (fsyncbench), a reader of pgbench's per-transaction logs
// (pgbenchlog), planned failovers and async lag of a running mirror under load (failoverbench), a shadow conversion
// timed under a write probe, in place against copying (convertbench, for scripts/bench-convert.sh) and the writer of
// BENCHMARKS.md (benchreport). They share one way of summarising latencies (bench/internal/latency) so every system's
// figures are computed alike, and one JSON form of the mirroring results (bench/internal/mirrorresult). Nothing here is
// imported by the product, and nothing here changes a member except through its command line or client.
package bench
