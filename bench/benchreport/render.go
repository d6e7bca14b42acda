package main

import (
	"fmt"
	"strings"

	"github.com/mirrorkit/mirrorkit/bench/internal/facts"
)

func writeHeader(b *strings.Builder, c *cli, res results, env []facts.Fact, pgScript string) {
	fmt.Fprintf(b, `# Benchmarks

Durable commits per second and commit latency of a mirrorkit member, side by side with PostgreSQL and with the raw rate of
one fsync per commit; the same with a synchronous copy (mirrorkit with an Active backup, PostgreSQL with a synchronous
standby); the client-visible pause of planned failovers under load; a DR async's lag under full commit load; and the
application-visible unavailability of automatic failovers when the primary is killed, stopped or isolated. All are
measured in the same run on the same machine and the same filesystem. The machine is shared and noisy, so read the
**ratios** against the baselines of the same run rather than the absolute figures.

Reproduce with:

`+"```sh\nmake bench    # this run: BENCH_DURATION=%s BENCH_WARMUP=%s (see the Command line below for every setting)\n```"+`

## Method

Each point runs a closed loop: every client has one commit in flight, sends the next as soon as the previous one is
acknowledged, and the point is measured for %s after a %s warmup. Keys are random 16-character strings and values are
100 bytes, so almost every commit inserts a new key. Percentiles are nearest-rank over every measured commit.

- **mirrorkit**: the real server (`+"`bin/member run`"+`, default settings, JSON logs) on loopback, one database created with
  `+"`member db create`"+`. The load generator `+"`bench/commitbench`"+` runs N goroutines sharing one Go client
  (`+"`engine/client`"+`, a pool of %d connections); each calls `+"`Set(ctx, \"BENCH\", ref, value)`"+` with ref
  `+"`^B(\"<16 hex chars>\")`"+` and 100 random bytes. The member acknowledges a commit once its journal record is on disk
  (group commit shares one write and one sync between concurrent commits). Latency is from the call to the
  acknowledgement; the rate counts the acknowledgements that arrive within the measured window.
- **PostgreSQL**: a cluster made with initdb in a temporary directory next to the member's data directory, started on a
  loopback port with `+"`fsync=on`, `synchronous_commit=on`, `full_page_writes=on`"+` (the defaults) and otherwise default
  settings, and a table `+"`kv (k text PRIMARY KEY, v text NOT NULL)`"+`. pgbench runs one single-row upsert per
  transaction over TCP on loopback, after an unlogged warmup run of the same shape:

  `+"```\n  pgbench %s\n  ```"+`

  The rate is pgbench's own tps (without initial connection time); the percentiles come from its per-transaction logs.
  The script, upsert.sql:

  `+"```\n%s  ```"+`

- **fsync baseline**: `+"`bench/fsyncbench`"+`, one thread appending a 116-byte record (key + value) to a file in the same
  directory tree and calling `+"`fsync`"+` after each append, for the same duration: the naive way to make each commit
  durable on its own, and the baseline the targets name. The file grows with every append, so each fsync also makes the
  new file size durable. The member's journal and PostgreSQL's WAL instead write into preallocated files and sync with
  fdatasync, which is cheaper; so the run also measures that stricter baseline (`+"`fsyncbench --prealloc`"+`: the same
  records written into a file extended 4 MiB ahead of the data, fdatasync after each) and reports mirrorkit against it
  for information.
`, c.Duration, c.Warmup, c.Duration, c.Warmup, c.Conns, c.PgbenchArgs, indent(pgScript, "  "))
	writeMirroringMethod(b, c, res)
	writeUnplannedMethod(b, res.unplanned)
	b.WriteString(`
## Environment

| | |
|---|---|
`)
	facts.WriteRows(b, env)
	b.WriteString("\n")
}

func writeResults(b *strings.Builder, res results) {
	b.WriteString(`## Results

| clients | mirrorkit tx/s | p50 ms | p99 ms | PostgreSQL tx/s | p50 ms | p99 ms | mirrorkit / PostgreSQL tx/s | mirrorkit / PostgreSQL p99 | mirrorkit / fsync tx/s |`)
	fd := res.fdatasync
	if fd != nil {
		b.WriteString(" mirrorkit / fdatasync tx/s |")
	}
	b.WriteString("\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	if fd != nil {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, n := range res.clients {
		mk, pg := res.mirrorkit[n], res.postgresql[n]
		fmt.Fprintf(b, "| %d | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %.2f× | %.2f× | %.2f× |",
			n, mk.PerSecond, mk.P50Ms, mk.P99Ms, pg.PerSecond, pg.P50Ms, pg.P99Ms,
			mk.PerSecond/pg.PerSecond, mk.P99Ms/pg.P99Ms, mk.PerSecond/res.fsync.PerSecond)
		if fd != nil {
			fmt.Fprintf(b, " %.2f× |", mk.PerSecond/fd.PerSecond)
		}
		b.WriteString("\n")
	}
	f := res.fsync
	fmt.Fprintf(b, "\nBaselines, one thread, one sync per 116-byte commit:\n\n- append + fsync: **%.0f fsyncs/s**, p50 %.2f ms, p99 %.2f ms (max %.2f ms)\n",
		f.PerSecond, f.P50Ms, f.P99Ms, f.MaxMs)
	if fd != nil {
		fmt.Fprintf(b, "- preallocated write + fdatasync: **%.0f fdatasyncs/s**, p50 %.2f ms, p99 %.2f ms (max %.2f ms)\n",
			fd.PerSecond, fd.P50Ms, fd.P99Ms, fd.MaxMs)
	}
	b.WriteString("\n")
}

func writeTargets(b *strings.Builder, targets []target) {
	b.WriteString("## Targets\n\n| target | measured | result |\n|---|---|---|\n")
	for _, t := range targets {
		verdict := "MISS"
		if t.correctness {
			verdict = "FAIL"
		}
		switch {
		case !t.judged:
			verdict = "NOT MEASURED"
		case t.met:
			verdict = "PASS"
		}
		if t.note {
			fmt.Fprintf(b, "| %s | %s | %s |\n", t.goal, t.measured, strings.ToLower(verdict))
			continue
		}
		fmt.Fprintf(b, "| %s | %s | **%s** |\n", t.goal, t.measured, verdict)
	}
	b.WriteString("\n")
}

// indent prefixes every line of text with prefix, to nest a code block in a list item.
func indent(text, prefix string) string {
	lines := strings.SplitAfter(text, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString(prefix + l)
		}
	}
	return b.String()
}
