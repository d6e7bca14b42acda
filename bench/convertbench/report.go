package main

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/mirrorkit/mirrorkit/bench/internal/facts"
)

// reportCmd writes bench/convert.md.
type reportCmd struct {
	Results string   `required:"" type:"existingfile" help:"The result lines of the run."`
	Out     string   `required:"" help:"Markdown file to write."`
	Command string   `required:"" help:"The command that reproduces the run."`
	Fact    []string `sep:"none" help:"A line of the environment table, as \"name=value\" (repeatable, kept in order)."`
}

func (c *reportCmd) Run() error {
	f, err := os.Open(c.Results)
	if err != nil {
		return fmt.Errorf("open results: %w", err)
	}
	res, err := ReadResults(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("results %s: %w", c.Results, err)
	}
	env, err := facts.Parse(c.Fact)
	if err != nil {
		return err
	}
	doc, summary := render(res, env, c.Command)
	if err := os.WriteFile(c.Out, []byte(doc), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	_, err = fmt.Println(summary)
	return err
}

// modeLabels describe each path in the results table.
var modeLabels = map[string]string{
	modeInPlace: "in place (default)",
	modeCopy:    "copy from the source (`--force-copy`)",
	modeStaged:  "staged backup and restores (`--force-copy --stage DIR`)",
}

// best keeps, per mode, the round with the shortest wall time.
func best(rounds []RoundResult) map[string]RoundResult {
	out := map[string]RoundResult{}
	for _, r := range rounds {
		if b, ok := out[r.Mode]; !ok || r.Seconds < b.Seconds {
			out[r.Mode] = r
		}
	}
	return out
}

// render writes the report and returns the comparison in one paragraph, for the terminal.
func render(res *Results, env []facts.Fact, command string) (doc, summary string) {
	bests := best(res.Rounds)
	var b strings.Builder
	b.WriteString("## Shadow conversion: in place versus copying\n\n")
	fmt.Fprintf(&b, "Command: `%s` (after `make build`).\n\n", command)
	writeMethod(&b, res)
	if len(env) > 0 {
		b.WriteString("| environment | |\n|---|---|\n")
		facts.WriteRows(&b, env)
		b.WriteString("\n")
	}
	writeTable(&b, bests)
	summary = comparison(bests)
	b.WriteString(summary + "\n\n")
	writeSteps(&b, bests)
	writeChecks(&b, res, bests)
	if roundsOf(res.Rounds) > 1 {
		writeRounds(&b, res.Rounds)
	}
	return b.String(), summary
}

// roundsOf is the most rounds any mode ran.
func roundsOf(rounds []RoundResult) int {
	n := map[string]int{}
	for _, r := range rounds {
		n[r.Mode]++
	}
	return slices.Max(slices.Collect(maps.Values(n)))
}

func writeMethod(b *strings.Builder, res *Results) {
	s := res.Setup
	r := res.Rounds[0]
	cache := "then written back (the page cache could not be dropped: not root)"
	if s.CachesDropped {
		cache = "then written back with the page cache dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`)"
	}
	fmt.Fprintf(b, `A source member S and two shadow destinations D1 and D2 run on loopback addresses of one machine, each destination
with a shadow of S started at S's current journal position (`+"`member shadow create … --start now`"+`) that maps the
%d databases of S (%s) under their own names. %d rows, %.2f GiB of keys and values in all (%d-byte values), were then
written to S through the Go client (%.0f s) and applied by both shadows (caught up %.0f s after the load ended, with
equal logical hashes on the three members); on S the databases take %.0f MiB on disk and its journal %.0f MiB. The
members were stopped (SIGTERM) and their data directories kept: every round starts from a copy of them made with
`+"`cp -a`"+`, %s, so every conversion starts from the same state, both shadows Processing and caught up.

Each round runs `+"`migrate convert-shadow --source S --shadow D1,D2 --as backup,dr --mirror MIR --yes --json`"+`: D1
becomes the mirror's backup (synchronous), D2 a DR async, and S stays primary while applications write to it.

- In place (the default): each shadowed copy joins the mirror where S's local journal moved its database into it,
  checked against S's logical hash at that position: no data is copied.
- Copy (`+"`--force-copy`"+`): the shadow copies are deleted and each database is copied from S to each destination by
  snapshot, member to member (no stage), then activated and caught up.
- Staged (`+"`--force-copy --stage DIR`"+`, unless `+"`BENCH_CONVERT_STAGED=0`"+`): each database is backed up once from S to a directory on the same
  disk and restored onto each destination.

While the conversion runs, a probe writes to the databases on S through the mirror-aware Go client, given the addresses
of the three members: %d writers (%d per database), each with one transaction in flight (one Set of a %d-byte value),
starting %.0f s before the conversion and stopping %.0f s after it. The **application-visible pause** is the longest interval in which
no writer got an acknowledgement, over the intervals that overlap the conversion (the whole interval counts); the
slowest write is the longest single acknowledged write that overlapped it; errors are writes that failed. The pause
with no conversion running is the same figure over the seconds before it. **Bytes copied** is S's
`+"`mirrorkit_snapshot_bytes_served_total`"+` at the end of the round (S starts afresh each round). Wall time, CPU time
and peak RSS are of the `+"`migrate`"+` process (the copying itself is done by the members). Each mode ran in
interleaved rounds and the round with the shortest wall time is kept. No target is set for these figures: they compare
the two paths on the same databases in the same run, on a shared machine whose load is shown below.

`, len(s.Databases), strings.Join(s.Databases, ", "), s.Rows, gib(s.LogicalBytes), s.ValueSize, s.LoadSeconds,
		s.CatchUpSeconds, mib(s.SourceDBBytes), mib(s.SourceJournalBytes), cache,
		r.Probe.Writers, r.Probe.Writers/len(r.Probe.Databases), valueBytes, r.Probe.SettleSeconds,
		r.Probe.SettleSeconds)
}

func writeTable(b *strings.Builder, bests map[string]RoundResult) {
	in := bests[modeInPlace]
	b.WriteString("| path | wall s | × in place | pause ms | × in place | pause with no conversion ms | slowest write ms | writes acknowledged during | errors | bytes copied MiB | `migrate` CPU s | `migrate` peak RSS MiB |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, m := range modes {
		r, ok := bests[m]
		if !ok {
			continue
		}
		p := r.Probe
		fmt.Fprintf(b, "| %s | %.1f | %s | %.0f | %s | %.0f | %.0f | %d | %d | %.0f | %.1f | %.0f |\n",
			modeLabels[m], r.Seconds, ratio(r.Seconds, in.Seconds), ms(p.During.MaxPauseSeconds),
			ratio(p.During.MaxPauseSeconds, in.Probe.During.MaxPauseSeconds), ms(p.Before.MaxPauseSeconds),
			ms(p.During.SlowestWriteSeconds), p.During.Writes, p.Errors, mib(*r.BytesServed), r.CPUSeconds, mib(r.MaxRSSBytes))
	}
	b.WriteString("\n")
}

// comparison states the ratios of the copy paths to the in-place path plainly.
func comparison(bests map[string]RoundResult) string {
	in := bests[modeInPlace]
	var parts []string
	for _, m := range modes[1:] {
		r, ok := bests[m]
		if !ok {
			continue
		}
		what := "Forcing the copy path (`--force-copy`)"
		if m == modeStaged {
			what = "The staged backup and restore path (`--force-copy --stage`)"
		}
		parts = append(parts, fmt.Sprintf("%s took **%s** the wall time of the in-place conversion (%.1f s against %.1f s), "+
			"and the longest pause the application saw during it was **%s** the in-place one (%.0f ms against %.0f ms); "+
			"it copied %.0f MiB out of S, the in-place path %.0f MiB.",
			what, ratio(r.Seconds, in.Seconds), r.Seconds, in.Seconds,
			ratio(r.Probe.During.MaxPauseSeconds, in.Probe.During.MaxPauseSeconds), ms(r.Probe.During.MaxPauseSeconds),
			ms(in.Probe.During.MaxPauseSeconds), mib(*r.BytesServed), mib(*in.BytesServed)))
	}
	var quiet []string
	for _, m := range modes {
		if r, ok := bests[m]; ok {
			quiet = append(quiet, fmt.Sprintf("%.0f ms before the %s conversion", ms(r.Probe.Before.MaxPauseSeconds), m))
		}
	}
	parts = append(parts, fmt.Sprintf("For scale, the longest pause with no conversion running was %s.", strings.Join(quiet, " and ")))
	return strings.Join(parts, " ") + " These ratios come from one run on a shared machine and have no target."
}

func writeChecks(b *strings.Builder, res *Results, bests map[string]RoundResult) {
	writes, errors := 0, 0
	var samples []string
	for _, r := range res.Rounds {
		writes += r.Probe.ReadBack
		errors += r.Probe.Errors
		for _, e := range r.Probe.ErrorSamples {
			if !slices.Contains(samples, e) {
				samples = append(samples, e)
			}
		}
	}
	fmt.Fprintf(b, "Checks, in every round: each of the %d writes the probe had acknowledged (all rounds together) was read back "+
		"from S with its value, and once the destinations caught up the logical hashes of the databases were equal on S, D1 "+
		"and D2", writes)
	in := bests[modeInPlace]
	var hashes []string
	for _, db := range slices.Sorted(maps.Keys(in.Hashes)) {
		hashes = append(hashes, fmt.Sprintf("%s %s…", db, short(in.Hashes[db])))
	}
	fmt.Fprintf(b, " (in the in-place round kept: %s).", strings.Join(hashes, ", "))
	if errors == 0 {
		b.WriteString(" No write of the probe failed.\n\n")
		return
	}
	fmt.Fprintf(b, " %d writes of the probe failed; the first distinct errors:\n\n", errors)
	for _, s := range samples {
		fmt.Fprintf(b, "- `%s`\n", strings.ReplaceAll(s, "`", "'"))
	}
	b.WriteString("\n")
}

func writeRounds(b *strings.Builder, rounds []RoundResult) {
	b.WriteString("Every round, in the order run:\n\n| path | round | wall s | pause ms | slowest write ms | errors | bytes copied MiB |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rounds {
		fmt.Fprintf(b, "| %s | %d | %.1f | %.0f | %.0f | %d | %.0f |\n", modeLabels[r.Mode], r.Round, r.Seconds,
			ms(r.Probe.During.MaxPauseSeconds), ms(r.Probe.During.SlowestWriteSeconds), r.Probe.Errors, mib(*r.BytesServed))
	}
	b.WriteString("\n")
}

// stepOrder is the order in which a conversion plan runs its kinds of step; kinds not listed follow in name order.
var stepOrder = []string{"create-mirror", "join-mirror", "add-to-mirror", "join-in-place", "discard-copy", "copy", "backup",
	"restore", "remove-shadow"}

// writeSteps shows where each path's wall time went: the time of the plan's steps of each kind, summed.
func writeSteps(b *strings.Builder, bests map[string]RoundResult) {
	var ran []string
	kinds := map[string]bool{}
	for _, m := range modes {
		if r, ok := bests[m]; ok {
			ran = append(ran, m)
			for k := range r.Steps {
				kinds[k] = true
			}
		}
	}
	order := slices.DeleteFunc(slices.Clone(stepOrder), func(k string) bool { return !kinds[k] })
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		if !slices.Contains(order, k) {
			order = append(order, k)
		}
	}
	b.WriteString("Where the wall time went: seconds in the plan's steps of each kind (their run and verification, summed), and how many steps:\n\n| step |")
	for _, m := range ran {
		fmt.Fprintf(b, " %s |", modeLabels[m])
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(ran)) + "\n")
	for _, k := range order {
		fmt.Fprintf(b, "| %s |", k)
		for _, m := range ran {
			r := bests[m]
			if n := r.Steps[k]; n > 0 {
				fmt.Fprintf(b, " %.1f (%d) |", r.StepSeconds[k], n)
			} else {
				b.WriteString(" – |")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// ratio is a over b, or "–" when b is zero.
func ratio(a, b float64) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func short(hash string) string { return hash[:min(len(hash), 16)] }

func ms(seconds float64) float64 { return seconds * 1000 }
func mib(b int64) float64        { return float64(b) / (1 << 20) }
func gib(b int64) float64        { return float64(b) / (1 << 30) }
