package main

import (
	"fmt"
	"strings"

	"github.com/mirrorkit/mirrorkit/bench/internal/facts"
)

// render writes the report and returns the targets it judged.
func render(res *Results, env []facts.Fact, command, pgbackrestConf string) (string, []target, error) {
	sums, err := summarize(res.Runs)
	if err != nil {
		return "", nil, err
	}
	sizes := map[string]SizeResult{}
	for _, s := range res.Sizes {
		sizes[s.System] = s
	}
	for _, s := range systems {
		if _, ok := sizes[s.name]; !ok {
			return "", nil, fmt.Errorf("sizes of %s: %w", s.name, ErrMissing)
		}
	}
	targets := judge(sums)
	var b strings.Builder
	b.WriteString("## Backup and restore\n\n")
	fmt.Fprintf(&b, "Command: `%s` (after `make build tools`).\n\n", command)
	writeMethod(&b, res.Load, sums)
	writeFacts(&b, env)
	writeResults(&b, res.Load, sums)
	writeSizes(&b, res.Load, sizes)
	writeTargets(&b, targets)
	if pgbackrestConf != "" {
		fmt.Fprintf(&b, "pgBackRest configuration:\n\n```ini\n%s\n```\n\n", strings.TrimRight(pgbackrestConf, "\n"))
	}
	return b.String(), targets, nil
}

func writeMethod(b *strings.Builder, load LoadResult, sums map[string]*summary) {
	rounds, dropped, runs := -1, 0, 0
	for _, s := range sums {
		if rounds < 0 || s.rounds < rounds {
			rounds = s.rounds
		}
		dropped += s.dropped
		runs += s.rounds
	}
	cache := "the page cache could not be dropped (not root), so runs after the first may read from memory"
	switch dropped {
	case runs:
		cache = "the page cache was dropped before every run (`sync; echo 3 > /proc/sys/vm/drop_caches`)"
	case 0:
	default:
		cache = fmt.Sprintf("the page cache was dropped before %d of the %d runs", dropped, runs)
	}
	fmt.Fprintf(b, `The same rows go to every system: %d rows, %.2f GiB of keys and values (the logical size), each an %d-byte key
and a %d-byte value of words drawn at random from a vocabulary of %d (zstd -3 shrinks such text about 2.6×), loaded
into database BIG on a member through the Go client and with COPY into a PostgreSQL table big(k text primary key, v text).
Throughput is this logical size divided by the wall time, for every system, whatever its on-disk input.

- mirrorkit: `+"`migrate backup`"+` at its defaults (zstd level 3, 4 MiB chunks, 4 chunks in parallel) reads a snapshot of the
  mirrored database from the primary member and writes to a directory, or to a MinIO server on loopback; `+"`migrate restore --dir`"+`
  writes the database into an empty directory (the figure comparable to pgBackRest's restore), and `+"`migrate restore --to`"+`
  restores it onto a second member of the mirror (a DR async), where it is activated and catches up. The `+"`--level 1`"+`
  rows back up to a second directory at zstd's fastest level and restore that backup: they show what the compression
  level (configurable; the targets are judged at the defaults) costs and saves. The `+"`--db-compression good`"+` rows
  back up, to a third directory, the same rows loaded into a member whose databases store their table files with zstd
  (`+"`member run --db-compression good`"+`; the default is Snappy), and restore that backup.
- Reference: `+"`tar -cf - -C DIR . | zstd -3 -T2`"+` of a copy of the member's database directory (taken while it was
  dismounted), and `+"`zstd -d -T2 | tar -x`"+` into an empty directory; each then syncs what it wrote (`+"`sync FILE…`"+`), as
  migrate and pgBackRest make their output durable before they finish.
- pgBackRest: a full backup of the PostgreSQL cluster (WAL archived with archive-push) into a posix repository with
  compress-type=zst, compress-level=3, process-max=2 (the machine's cores, the parallelism budget given to every tool),
  start-fast=y; and a restore into an empty PGDATA with the cluster stopped.

Every directory, the repositories and MinIO's data are on the same disk. Each measurement ran %d times, the rounds
interleaved, and the fastest is kept;
%s.
Peak RSS is the largest of all rounds (of the whole pipeline for the references). Ratios are mirrorkit's throughput
divided by the baseline's, both from this run.

`, load.Rows, float64(load.LogicalBytes)/(1<<30), keyLen, load.ValueSize, vocabularySize, rounds, cache)
}

func writeFacts(b *strings.Builder, env []facts.Fact) {
	if len(env) == 0 {
		return
	}
	b.WriteString("| environment | |\n|---|---|\n")
	facts.WriteRows(b, env)
	b.WriteString("\n")
}

func writeResults(b *strings.Builder, load LoadResult, sums map[string]*summary) {
	b.WriteString("| operation | system | seconds | MB/s | × pgBackRest | × reference | CPU s | peak RSS MiB |\n|---|---|---|---|---|---|---|---|\n")
	for _, m := range measurements {
		s := sums[m.name]
		peer, ref := sums[peerOf[m.op]], sums[referenceOf[m.op]]
		fmt.Fprintf(b, "| %s | %s | %.1f | %.0f | %s | %s | %.1f | %.0f |\n", m.op, cell(m.label), s.best.Seconds,
			float64(load.LogicalBytes)/s.best.Seconds/1e6, ratioCell(s, peer), ratioCell(s, ref), s.best.CPUSeconds, mib(s.peakRSS))
	}
	b.WriteString(`
MB/s is 10⁶ bytes of logical data per second. CPU s is the user and system time of the fastest round's command and
of the processes it waited for: not of the member that serves a snapshot or receives a restore, nor of MinIO or
PostgreSQL.

`)
}

// ratioCell is s's throughput over the baseline's (1× on the baseline's own row).
func ratioCell(s, baseline *summary) string {
	if s == baseline {
		return "1×"
	}
	return fmt.Sprintf("%.2f×", baseline.best.Seconds/s.best.Seconds)
}

func writeSizes(b *strings.Builder, load LoadResult, sizes map[string]SizeResult) {
	b.WriteString("| system | input on disk MiB | stored MiB | logical ÷ stored |\n|---|---|---|---|\n")
	for _, s := range systems {
		z := sizes[s.name]
		fmt.Fprintf(b, "| %s | %.0f | %.0f | %.2f |\n", cell(s.label), mib(z.InputBytes), mib(z.StoredBytes),
			float64(load.LogicalBytes)/float64(z.StoredBytes))
	}
	fmt.Fprintf(b, "\nThe logical size is %.0f MiB.\n\n", mib(load.LogicalBytes))
}

func writeTargets(b *strings.Builder, targets []target) {
	b.WriteString("| target | measured | result |\n|---|---|---|\n")
	for _, t := range targets {
		verdict := "MISS"
		if t.met {
			verdict = "PASS"
		}
		fmt.Fprintf(b, "| %s | %s | **%s** |\n", cell(t.goal), cell(t.measured), verdict)
	}
	b.WriteString("\n")
}

// cell escapes the pipes of a pipeline so that they do not end a table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
