package main

import (
	"fmt"
	"strings"

	"github.com/mirrorkit/mirrorkit/bench/internal/mirrorresult"
)

// Bars of the unplanned failover goals, with the QoS timeout of 2 s they assume: the application-visible unavailability
// after the primary is killed, stopped or isolated, median and 99th percentile over the rounds of each fault.
const (
	maxUnplannedP50Ms = 2500
	maxUnplannedP99Ms = 4000
)

// publishedDefaults is what operators compare automatic failover with: other systems' published figures at their default
// settings. They are quoted, not measured by this run.
var publishedDefaults = []string{
	"MongoDB replica set elections: the median time before a new primary is elected should not typically exceed 12 s at the default settings",
	"Patroni: about 30 s at the default ttl of 30 s",
}

// faultLabels describe each fault in the report.
var faultLabels = map[string]string{
	mirrorresult.FaultKill:    "primary killed (SIGKILL, restarted after the takeover)",
	mirrorresult.FaultStop:    "primary stopped (SIGSTOP, SIGCONT after the takeover)",
	mirrorresult.FaultIsolate: "primary isolated (links to the backup and the arbiter black-holed, healed after the takeover)",
}

func faultLabel(fault string) string {
	if l, ok := faultLabels[fault]; ok {
		return l
	}
	return fault
}

// writeUnplannedMethod describes how the unplanned failovers were measured, with this run's settings.
func writeUnplannedMethod(b *strings.Builder, u *mirrorresult.Unplanned) {
	if u == nil {
		return
	}
	rounds := 0
	faults := make([]string, len(u.Faults))
	for i, f := range u.Faults {
		rounds, faults[i] = f.Requested, f.Fault
	}
	fmt.Fprintf(b, `- **unplanned failover**: `+"`bench/failoverbench unplanned`"+` makes its own mirror, its data next to the others': an
  arbiter (`+"`member arbiter --token`"+`, 127.0.0.10) and two failover members (127.0.0.11 and 127.0.0.12),
  `+"`member mirror create MIR --qos %s --arbiter <arbiter>`"+`. Each member reaches the other's data port and the arbiter
  through a fault proxy run by the benchmark (`+"`member run --peer`, `--arbiter-via`"+`); clients reach the members directly.
  %d clients write 100-byte values under random keys through one mirror-aware client (a pool of %d connections; it
  leaves a member that does not answer a request within %s, or a connection within %s, for the other). The faults,
  in this order (%s), %d rounds each, always done to the current primary: **kill** (SIGKILL; the member is
  restarted after the takeover), **stop** (SIGSTOP; SIGCONT after the takeover), **isolate** (its links to and from the
  backup and to the arbiter black-holed: connections stay open but nothing gets through; healed after the takeover).
  Each round waits until the mirror is healthy (the backup `+"`Active`"+`, both members `+"`Arbiter Controlled`"+` with both
  connected to the arbiter), lets the load run %s, does the fault, waits until the other member is primary in a higher
  epoch and a write sent after the fault is acknowledged, then heals it; the old primary rejoins as backup by itself. A
  round's **unavailability** is the time from the fault until the first acknowledgement of a write sent after it,
  across all clients (an acknowledgement already on its way from the old primary does not count). Any client error
  fails the run, except a write whose outcome is unknown (in flight when its member went away; it is not counted as
  acknowledged); at the end every acknowledged write is read back from the final primary.
`, msText(u.QoSMs), u.Clients, u.Conns, msText(u.AttemptTimeoutMs), msText(u.DialTimeoutMs), strings.Join(faults, ", "),
		rounds, msText(u.SteadyMs))
}

func writeUnplanned(b *strings.Builder, u *mirrorresult.Unplanned) {
	if u == nil {
		return
	}
	fmt.Fprintf(b, `## Unplanned failover

Automatic failover with an arbiter, QoS %s, %d clients writing: the application-visible unavailability after a fault
to the primary, from the fault until the first acknowledgement of a write sent after it.

| fault | rounds | unavailable p50 ms | p99 ms | min ms | max ms | takeover seen p50 ms | max ms | commits | client errors | unknown outcomes | acknowledged writes missing |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
`, msText(u.QoSMs), u.Clients)
	for _, f := range u.Faults {
		fmt.Fprintf(b, "| %s | %d of %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %d | %d | %d | %s |\n",
			faultLabel(f.Fault), f.Rounds, f.Requested, f.P50Ms, f.P99Ms, f.MinMs, f.MaxMs, f.TakeoverP50Ms, f.TakeoverMaxMs,
			f.Commits, f.Errors, f.UnknownOutcomes, missingCount(f.Missing))
	}
	fmt.Fprintf(b, `
Targets with QoS 2s: unavailability p50 ≤ %s and p99 ≤ %s for each fault (with 20 rounds, p99 is the max). For
comparison, the published defaults operators know (quoted, not measured here):

- %s.

`, secText(maxUnplannedP50Ms), secText(maxUnplannedP99Ms), strings.Join(publishedDefaults, ";\n- "))
	for _, line := range unplannedFailures(u) {
		fmt.Fprintf(b, "> **FAIL**: %s\n>\n", line)
	}
	if len(unplannedFailures(u)) > 0 {
		b.WriteString("\n")
	}
	if len(u.Rounds) == 0 {
		return
	}
	b.WriteString("Each round, times in ms from the fault:\n\n")
	b.WriteString("| fault | round | primary before → after | epochs | unavailable ms | takeover seen ms | healed at ms | healthy again at ms | client errors | unknown outcomes |\n")
	b.WriteString("|---|---:|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range u.Rounds {
		fmt.Fprintf(b, "| %s | %d | %s → %s | %d → %d | %.0f | %.0f | %.0f | %.0f | %d | %d |\n",
			r.Fault, r.Round, r.From, r.To, r.FromEpoch, r.ToEpoch, r.UnavailableMs, r.TakeoverMs, r.HealMs, r.HealthyMs,
			r.Errors, r.UnknownOutcomes)
	}
	b.WriteString("\n")
}

// secText prints milliseconds as seconds: "2.5s".
func secText(v float64) string { return fmt.Sprintf("%gs", v/1000) }

func missingCount(n int) string {
	if n < 0 {
		return "not checked"
	}
	return fmt.Sprintf("%d", n)
}

// unplannedFailures lists, one a line, what went wrong in the unplanned failover run.
func unplannedFailures(u *mirrorresult.Unplanned) []string {
	var out []string
	if u.Failure != "" {
		out = append(out, "the run did not complete: "+cell(u.Failure))
	}
	if u.Errors > 0 {
		out = append(out, fmt.Sprintf("%d client calls failed; the first distinct errors: %s", u.Errors, cell(strings.Join(u.ErrorSamples, "; "))))
	}
	if u.Missing > 0 {
		out = append(out, fmt.Sprintf("%d acknowledged writes are missing on the final primary", u.Missing))
	}
	return out
}

// complete reports whether every requested round of f was made: its figures stand even if a later fault failed.
func complete(f mirrorresult.UnplannedFault) bool { return f.Rounds == f.Requested }

func judgeUnplanned(u *mirrorresult.Unplanned) []target {
	if u == nil {
		var out []target
		for _, fault := range []string{mirrorresult.FaultKill, mirrorresult.FaultStop, mirrorresult.FaultIsolate} {
			for _, g := range unplannedGoals(fault) {
				out = append(out, target{goal: g, measured: "not measured"})
			}
		}
		return append(out, unplannedCorrectness(nil)...)
	}
	var out []target
	for _, f := range u.Faults {
		of := fmt.Sprintf("over %d rounds", f.Rounds)
		if !complete(f) {
			of = fmt.Sprintf("over only %d of %d rounds", f.Rounds, f.Requested)
		}
		goals := unplannedGoals(f.Fault)
		judged := f.Rounds > 0
		out = append(out,
			target{goal: goals[0], measured: fmt.Sprintf("%.0f ms %s", f.P50Ms, of), judged: judged,
				met: complete(f) && f.P50Ms <= maxUnplannedP50Ms},
			target{goal: goals[1], measured: fmt.Sprintf("%.0f ms %s (max %.0f ms)", f.P99Ms, of, f.MaxMs), judged: judged,
				met: complete(f) && f.P99Ms <= maxUnplannedP99Ms})
		if !judged {
			out[len(out)-2].measured, out[len(out)-1].measured = "no round completed", "no round completed"
		}
	}
	return append(out, unplannedCorrectness(u)...)
}

func unplannedGoals(fault string) [2]string {
	return [2]string{
		fmt.Sprintf("unplanned failover, %s: unavailability p50 ≤ %s with QoS 2s (published defaults: MongoDB election median ≤ 12 s, Patroni about 30 s)",
			faultLabel(fault), secText(maxUnplannedP50Ms)),
		fmt.Sprintf("unplanned failover, %s: unavailability p99 ≤ %s with QoS 2s", faultLabel(fault), secText(maxUnplannedP99Ms)),
	}
}

// unplannedCorrectness are the goals any run must meet: each fault followed by a takeover and recovery, no client error
// but unknown outcomes, no acknowledged write lost.
func unplannedCorrectness(u *mirrorresult.Unplanned) []target {
	goals := []target{
		{goal: "unplanned failover: after every fault the other member takes over in a higher epoch and the mirror heals", correctness: true},
		{goal: "unplanned failover: no client call fails, other than writes in flight with an unknown outcome", correctness: true},
		{goal: "unplanned failover: no acknowledged write is lost", correctness: true},
	}
	if u == nil {
		for i := range goals {
			goals[i].measured = "not measured"
		}
		return goals
	}
	made, requested := 0, 0
	for _, f := range u.Faults {
		made, requested = made+f.Rounds, requested+f.Requested
	}
	for i := range goals {
		goals[i].judged = true
	}
	goals[0].measured, goals[0].met = fmt.Sprintf("%d of %d rounds", made, requested), u.Failure == "" && made == requested
	if u.Failure != "" {
		goals[0].measured += ": " + cell(u.Failure)
	}
	goals[1].measured, goals[1].met = fmt.Sprintf("%d errors, %d unknown outcomes, in %d acknowledged writes", u.Errors, u.UnknownOutcomes, u.Commits), u.Errors == 0
	goals[2].measured, goals[2].met = fmt.Sprintf("%d of %d missing on the final primary", u.Missing, u.Commits), u.Missing == 0
	if u.Missing < 0 {
		goals[2].measured = "could not be checked"
	}
	return goals
}
