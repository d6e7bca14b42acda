// Package bench holds the programs behind `make bench` (scripts/bench.sh): a commit load generator for a running member
// (commitbench), the one-sync-per-commit baselines on the same disk (fsyncbench), a reader of pgbench's per-transaction logs
// (pgbenchlog) and the writer of BENCHMARKS.md (benchreport). They share one way of summarising latencies
// (bench/internal/latency) so every system's figures are computed alike. Nothing here is imported by the product.
package bench
