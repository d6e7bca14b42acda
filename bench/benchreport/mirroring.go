package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mirrorkit/mirrorkit/bench/internal/latency"
	"github.com/mirrorkit/mirrorkit/bench/internal/mirrorresult"
)

// Bars of the mirroring goals.
const (
	minBackupRatio  = 0.7  // commits/s with an Active backup, against the same member alone
	minStandbyRatio = 2.0  // mirrorkit with an Active backup against PostgreSQL with a synchronous standby
	maxPauseP50Ms   = 200  // planned failover, client-visible pause, median over the rounds
	maxPauseMs      = 1000 // the same, worst round
	maxAsyncLagMs   = 1000 // an async under full commit load
)

// writeMirroringMethod describes how the mirroring figures were measured, with this run's settings.
func writeMirroringMethod(b *strings.Builder, c *cli, res results) {
	if len(res.backup) > 0 {
		fmt.Fprintf(b, `- **mirrorkit with an Active backup**: two members, each `+"`bin/member run`"+` on its own loopback address
  (127.0.0.11 and 127.0.0.12) with its data directory in the same directory tree. `+"`member mirror create MIR --qos %s`"+`
  makes the first primary, `+"`member mirror join MIR --as failover`"+` makes the second its backup, and
  `+"`member db create BENCH --mirror MIR`"+` creates the database on the primary, then on the backup. Before each point the
  run waits until the primary's Mirror Monitor shows the backup's journal transfer `+"`Active`"+`, and checks every 100 ms
  through the point that it stays so (`+"`bench/failoverbench wait --hold`"+`); commitbench then runs against the primary
  exactly as above. A commit is now acknowledged once its record is durable in the primary's journal **and** the backup
  has acknowledged durable receipt of it (MIRRORING.md §3); the stream uses the default compression (lz4 to the backup).
`, c.QoS)
	}
	if len(res.standby) > 0 {
		b.WriteString(`- **PostgreSQL with a synchronous standby**: a second cluster made like the first, with
  ` + "`synchronous_standby_names = 'standby1'`" + ` and ` + "`synchronous_commit = on`" + ` (a commit returns once the standby has
  flushed its WAL), and a standby made from it with ` + "`pg_basebackup -R -X stream`" + ` (application_name standby1), streaming
  over loopback from its own port, its data on the same filesystem. The run waits until ` + "`pg_stat_replication`" + ` shows the
  standby ` + "`sync`" + `, then creates the table and runs the same pgbench points.
`)
	}
	if f := res.failover; f != nil {
		fmt.Fprintf(b, `- **planned failover under load**: on the same two members, `+"`bench/failoverbench failover`"+`: %d clients share
  one mirror-aware client (`+"`client.DialMirror`"+` given both addresses, a pool of %d connections), each writing a 100-byte value
  under a random key of `+"`^F`"+` in a closed loop. After a %s warmup, each of %d rounds waits until the backup is `+"`Active`"+`,
  lets the load run %s, and runs `+"`bin/member mirror failover MIR --member <primary>`"+`. A round's client-visible
  **pause** is the longest interval without any acknowledgement, across all clients, that overlaps the window from the
  command's start until %s after it returned; the longest single call in flight in that window is shown too. Every
  failed client call is counted (there must be none: the client turns a planned failover into a pause), and at the end
  every acknowledged key is read back from the final primary.
`, f.Clients, c.Conns, c.Warmup, f.Requested, msText(f.SteadyMs), msText(f.SettleMs))
	}
	if l := res.lag; l != nil {
		fmt.Fprintf(b, `- **async lag**: a fresh mirror of three members (127.0.0.11–13): primary, Active backup and a DR async
  (`+"`member mirror join MIR --as dr`"+`, zstd stream by default). While %d clients commit through one client at full speed,
  after a %s warmup, `+"`bench/failoverbench lag`"+` reads the primary's Mirror Monitor (what `+"`member status --json`"+` shows)
  every %s for %s: the mirror's durable journal end and the DR row's durably received position (`+"`epoch:segment:offset`"+`).
  Their distance in bytes, divided by the rate the primary's journal grew at over the same samples, is the async's lag
  in time. The journal transfer column the primary shows for the async is tallied as well.
`, l.Clients, c.Warmup, msText(l.IntervalMs), c.Duration)
	}
}

// msText prints a whole number of milliseconds as a duration, "250 ms" or "1s".
func msText(v float64) string {
	if v >= 1000 && int(v)%1000 == 0 {
		return fmt.Sprintf("%ds", int(v)/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func writeMirroring(b *strings.Builder, res results) {
	if len(res.backup) == 0 && len(res.standby) == 0 && res.failover == nil && res.lag == nil {
		return
	}
	b.WriteString("## Mirroring\n\n")
	writeSyncCopies(b, res)
	writeFailover(b, res.failover)
	writeLag(b, res.lag)
}

func writeSyncCopies(b *strings.Builder, res results) {
	points := slices.Sorted(maps.Keys(res.backup))
	for n := range res.standby {
		if !slices.Contains(points, n) {
			points = append(points, n)
		}
	}
	if len(points) == 0 {
		return
	}
	slices.Sort(points)
	b.WriteString(`Commits with a synchronous copy, against the same system alone from the table above:

| clients | mirrorkit alone tx/s | with Active backup tx/s | p50 ms | p99 ms | with backup / alone tx/s | PostgreSQL alone tx/s | with sync standby tx/s | p50 ms | p99 ms | with standby / alone tx/s | mirrorkit + backup / PostgreSQL + standby tx/s |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
`)
	for _, n := range points {
		mk, pg := res.mirrorkit[n], res.postgresql[n]
		bk, okB := res.backup[n]
		sb, okS := res.standby[n]
		fmt.Fprintf(b, "| %d | %.0f | %s | %s | %.0f | %s | %s | %s |\n", n,
			mk.PerSecond, point(bk, okB), ratio(bk.PerSecond, mk.PerSecond, okB),
			pg.PerSecond, point(sb, okS), ratio(sb.PerSecond, pg.PerSecond, okS),
			ratio(bk.PerSecond, sb.PerSecond, okB && okS))
	}
	b.WriteString("\n")
}

// point is the "tx/s | p50 | p99" cells of a summary, or dashes when it was not measured.
func point(s latency.Summary, ok bool) string {
	if !ok {
		return "– | – | –"
	}
	return fmt.Sprintf("%.0f | %.2f | %.2f", s.PerSecond, s.P50Ms, s.P99Ms)
}

func ratio(a, b float64, ok bool) string {
	if !ok || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func writeFailover(b *strings.Builder, f *mirrorresult.Failover) {
	if f == nil {
		return
	}
	fmt.Fprintf(b, `Planned failovers under load: %d of %d made with %d clients writing; pause p50 **%.0f ms**, max **%.0f ms**;
longest call p50 %.0f ms, max %.0f ms; %d commits acknowledged in %.1fs, **%d client errors**, **%d failed failover
commands**, %s.

`, len(f.Rounds), f.Requested, f.Clients, f.PauseP50Ms, f.PauseMaxMs, f.MaxLatencyP50Ms, f.MaxLatencyMaxMs,
		f.Commits, f.Seconds, f.Errors, f.CommandErrors, missingText(f))
	for _, line := range failoverFailures(f) {
		fmt.Fprintf(b, "> **FAIL**: %s\n>\n", line)
	}
	if len(failoverFailures(f)) > 0 {
		b.WriteString("\n")
	}
	if len(f.Rounds) == 0 {
		return
	}
	b.WriteString("| round | primary before → after | pause ms | longest call ms | failover command ms | backup Active again after ms | client errors | failover command |\n")
	b.WriteString("|---:|---|---:|---:|---:|---:|---:|---|\n")
	for _, r := range f.Rounds {
		outcome := "ok"
		if r.CommandError != "" {
			outcome = "**failed**: " + cell(r.CommandError)
		}
		fmt.Fprintf(b, "| %d | %s → %s | %.1f | %.1f | %.0f | %.0f | %d | %s |\n",
			r.Round, r.From, r.To, r.PauseMs, r.MaxLatencyMs, r.CommandMs, r.ActiveAfterMs, r.Errors, outcome)
	}
	b.WriteString("\n")
}

// failoverFailures lists, one a line, what went wrong in the failover run.
func failoverFailures(f *mirrorresult.Failover) []string {
	var out []string
	if f.Failure != "" {
		out = append(out, fmt.Sprintf("the run stopped after %d of %d failovers: %s", len(f.Rounds), f.Requested, cell(f.Failure)))
	}
	if f.Errors > 0 {
		out = append(out, fmt.Sprintf("%d client calls failed; the first distinct errors: %s", f.Errors, cell(strings.Join(f.ErrorSamples, "; "))))
	}
	if f.CommandErrors > 0 {
		out = append(out, fmt.Sprintf("%d `member mirror failover` commands failed although another member became primary", f.CommandErrors))
	}
	if f.Missing > 0 {
		out = append(out, fmt.Sprintf("%d acknowledged commits are missing on the final primary", f.Missing))
	}
	return out
}

func missingText(f *mirrorresult.Failover) string {
	if f.Missing < 0 {
		return "acknowledged commits not checked"
	}
	return fmt.Sprintf("**%d acknowledged commits missing** on the final primary", f.Missing)
}

func writeLag(b *strings.Builder, l *mirrorresult.AsyncLag) {
	if l == nil {
		return
	}
	fmt.Fprintf(b, `Async lag under full commit load (DR async %s, one sample every %s):

| clients | samples | commits/s | primary journal KiB/s | lag p50 ms | p99 ms | max ms | max bytes behind | journal transfer shown |
|---:|---:|---:|---:|---:|---:|---:|---:|---|
| %d | %d | %.0f | %.0f | %.1f | %.1f | %.1f | %d | %s |

`, l.Async, msText(l.IntervalMs), l.Clients, l.Samples, l.CommitsPerSecond, l.JournalBytesPerSecond/1024,
		l.P50LagMs, l.P99LagMs, l.MaxLagMs, l.MaxLagBytes, transferText(l.Transfer))
	if l.Failure != "" {
		fmt.Fprintf(b, "> **FAIL**: %s\n\n", cell(l.Failure))
	}
}

// transferText tallies the journal transfer statuses, most frequent first: "Caught up ×38, 1s behind ×2".
func transferText(t map[string]int) string {
	names := slices.Sorted(maps.Keys(t))
	slices.SortStableFunc(names, func(a, b string) int { return t[b] - t[a] })
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s ×%d", cell(n), t[n])
	}
	return strings.Join(parts, ", ")
}

// cell makes text safe inside a Markdown table cell or a one-line quote.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func judgeMirroring(res results, n int) []target {
	var out []target
	mk, okM := res.mirrorkit[n]
	bk, okB := res.backup[n]
	sb, okS := res.standby[n]
	notMeasured := fmt.Sprintf("not measured (no %d-client point)", n)

	t := target{goal: fmt.Sprintf("mirrorkit commits/s at %d clients with an Active backup ≥ %.1f× without a backup", n, minBackupRatio),
		measured: notMeasured}
	if okM && okB {
		r := bk.PerSecond / mk.PerSecond
		t.measured, t.met, t.judged = fmt.Sprintf("%.2f× (%.0f vs %.0f tx/s)", r, bk.PerSecond, mk.PerSecond), r >= minBackupRatio, true
	}
	out = append(out, t)

	t = target{goal: fmt.Sprintf("mirrorkit with an Active backup, commits/s at %d clients ≥ %.0f× PostgreSQL with a synchronous standby", n, minStandbyRatio),
		measured: notMeasured}
	if okB && okS {
		r := bk.PerSecond / sb.PerSecond
		t.measured, t.met, t.judged = fmt.Sprintf("%.2f× (%.0f vs %.0f tx/s)", r, bk.PerSecond, sb.PerSecond), r >= minStandbyRatio, true
	}
	out = append(out, t)

	out = append(out, judgeFailover(res.failover)...)

	t = target{goal: fmt.Sprintf("DR async lag under full commit load ≤ %s", msText(maxAsyncLagMs)), measured: "not measured"}
	if l := res.lag; l != nil {
		t.judged = true
		t.measured = fmt.Sprintf("max %.0f ms, p50 %.0f ms (%d clients, %d samples)", l.MaxLagMs, l.P50LagMs, l.Clients, l.Samples)
		t.met = l.Failure == "" && l.MaxLagMs <= maxAsyncLagMs
		if l.Failure != "" {
			t.measured = "run failed: " + cell(l.Failure)
		}
	}
	return append(out, t)
}

func judgeFailover(f *mirrorresult.Failover) []target {
	goals := []target{
		{goal: fmt.Sprintf("planned failover under load: client-visible pause p50 < %d ms", maxPauseP50Ms)},
		{goal: fmt.Sprintf("planned failover under load: client-visible pause max < %s", msText(maxPauseMs))},
		{goal: "planned failover under load: no client call fails", correctness: true},
		{goal: "planned failover under load: every `member mirror failover` command succeeds", correctness: true},
		{goal: "planned failover under load: no acknowledged commit is lost", correctness: true},
	}
	if f == nil {
		for i := range goals {
			goals[i].measured = "not measured"
		}
		return goals
	}
	for i := range goals {
		goals[i].judged = true
	}
	complete := f.Failure == "" && len(f.Rounds) == f.Requested
	of := fmt.Sprintf("over %d failovers", len(f.Rounds))
	if !complete {
		of = fmt.Sprintf("over only %d of %d failovers", len(f.Rounds), f.Requested)
	}
	goals[0].measured, goals[0].met = fmt.Sprintf("%.0f ms %s", f.PauseP50Ms, of), complete && f.PauseP50Ms < maxPauseP50Ms
	goals[1].measured, goals[1].met = fmt.Sprintf("%.0f ms %s", f.PauseMaxMs, of), complete && f.PauseMaxMs < maxPauseMs
	goals[2].measured, goals[2].met = fmt.Sprintf("%d errors in %d acknowledged commits %s", f.Errors, f.Commits, of), f.Errors == 0
	goals[3].measured, goals[3].met = fmt.Sprintf("%d of %d failed", f.CommandErrors, len(f.Rounds)), f.CommandErrors == 0
	goals[4].measured, goals[4].met = fmt.Sprintf("%d of %d missing on the final primary", f.Missing, f.Commits), f.Missing == 0
	if f.Missing < 0 {
		goals[4].measured = "could not be checked: " + cell(f.Failure)
	}
	return goals
}
