package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/bench/internal/mirrorresult"
	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

func TestUnavailable(t *testing.T) {
	ms := time.Millisecond
	// Acknowledged calls ordered by acknowledgement: one sent before the fault at 100 ms and acknowledged just after it
	// (on its way from the old primary), one sent before and re-sent to the new primary, then calls sent after.
	calls := []call{
		{start: 90 * ms, end: 99 * ms},
		{start: 95 * ms, end: 101 * ms},
		{start: 98 * ms, end: 2300 * ms},
		{start: 2300 * ms, end: 2305 * ms},
		{start: 101 * ms, end: 2310 * ms},
	}
	tests := []struct {
		name   string
		at     time.Duration
		want   time.Duration
		wantOK bool
	}{
		{name: "an acknowledgement already on its way does not count", at: 100 * ms, want: 2205 * ms, wantOK: true},
		{name: "the first call sent after the fault", at: 97 * ms, want: 2203 * ms, wantOK: true},
		{name: "sent after, acknowledged later than one sent before", at: 99 * ms, want: 2206 * ms, wantOK: true},
		{name: "nothing sent after", at: 2301 * ms, wantOK: false},
		{name: "before everything", at: 0, want: 99 * ms, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := unavailable(calls, tt.at)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("unavailable(%v) = %v, %v; want %v, %v", tt.at, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestUnknownOutcome(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "outcome unknown", err: fmt.Errorf("client 1: set: %w", &wire.Error{Code: wire.CodeOutcomeUnknown, Message: "deposed"}), want: true},
		{name: "connection lost", err: fmt.Errorf("client 1: set: %w", client.ErrConnLost), want: true},
		{name: "no primary within the retry timeout", err: fmt.Errorf("%w: %w", client.ErrNoPrimary, client.ErrConnLost)},
		{name: "in trouble", err: &wire.Error{Code: wire.CodeInTrouble}},
		{name: "anything else", err: errors.New("refused")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unknownOutcome(tt.err); got != tt.want {
				t.Fatalf("unknownOutcome(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// steadyCalls returns calls acknowledged every millisecond over [0, end), each sent half a millisecond earlier, except
// during the given outages (pairs of from, to in milliseconds).
func steadyCalls(tb testing.TB, end int, outages ...[2]int) []call {
	tb.Helper()
	var calls []call
	for at := 0; at < end; at++ {
		out := false
		for _, o := range outages {
			out = out || (at > o[0] && at < o[1])
		}
		if !out {
			d := time.Duration(at) * time.Millisecond
			calls = append(calls, call{start: d - time.Millisecond/2, end: d})
		}
	}
	return calls
}

func TestSummarizeUnplanned(t *testing.T) {
	ms := time.Millisecond
	kill := faultRun{
		fault: mirrorresult.FaultKill,
		outages: []outage{
			{round: 1, from: "A", to: "B", fromEpoch: 1, toEpoch: 2, fault: 1000 * ms, takeover: 2100 * ms, heal: 2300 * ms, healthy: 2900 * ms},
			{round: 2, from: "B", to: "A", fromEpoch: 2, toEpoch: 3, fault: 6000 * ms, takeover: 2000 * ms, heal: 2100 * ms, healthy: 2500 * ms},
			{round: 3, from: "A", to: "B", fromEpoch: 3, toEpoch: 4, fault: 11000 * ms, takeover: 2500 * ms, heal: 3100 * ms, healthy: 3500 * ms},
		},
		calls: steadyCalls(t, 16000, [2]int{1000, 3200}, [2]int{6000, 8100}, [2]int{11000, 14000}),
		errs: []callError{
			{at: 500 * ms, err: errors.New("before any fault")},
			{at: 6500 * ms, err: fmt.Errorf("set: %w", wire.ErrOutcomeUnknown)},
			{at: 12000 * ms, err: errors.New("refused")},
		},
		end: 16000 * ms, missing: 0,
	}
	stop := faultRun{fault: mirrorresult.FaultStop, calls: steadyCalls(t, 100), end: 100 * ms, missing: -1,
		outages: []outage{{round: 1, from: "B", to: "A", fault: 10 * ms, takeover: 5 * ms}}}
	stop.calls = slices.DeleteFunc(stop.calls, func(c call) bool { return c.end > 10*ms && c.end < 40*ms })
	c := &unplannedCmd{QoS: 2 * time.Second, Clients: 16, Conns: 4, Rounds: 3, AttemptTimeout: time.Second, DialTimeout: time.Second,
		Steady: time.Second, Faults: []string{"kill", "stop", "isolate"}}
	res := summarizeUnplanned(c, []faultRun{kill, stop})

	var buf bytes.Buffer
	if err := mirrorresult.Write(&buf, res); err != nil {
		t.Fatal(err)
	}
	var got mirrorresult.Unplanned
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("decode %q: %v", buf.String(), err)
	}
	if got.System != mirrorresult.SystemUnplanned || got.QoSMs != 2000 || got.Clients != 16 || got.AttemptTimeoutMs != 1000 || len(got.Faults) != 3 {
		t.Fatalf("result %+v", got)
	}
	k := got.Faults[0]
	if k.Fault != mirrorresult.FaultKill || k.Rounds != 3 || k.Requested != 3 {
		t.Fatalf("kill summary %+v: want 3 of 3 rounds", k)
	}
	// Unavailable 2200, 2100 and 3000 ms: the first call sent after each fault was acknowledged as each outage ended.
	if k.P50Ms != 2200 || k.P99Ms != 3000 || k.MaxMs != 3000 || k.MinMs != 2100 {
		t.Fatalf("kill unavailability p50 %v, p99 %v, max %v, min %v", k.P50Ms, k.P99Ms, k.MaxMs, k.MinMs)
	}
	if k.TakeoverP50Ms != 2100 || k.TakeoverMaxMs != 2500 {
		t.Fatalf("kill takeover p50 %v, max %v", k.TakeoverP50Ms, k.TakeoverMaxMs)
	}
	if k.Errors != 2 || k.UnknownOutcomes != 1 || k.Commits != len(kill.calls) {
		t.Fatalf("kill errors %d, unknown outcomes %d, commits %d", k.Errors, k.UnknownOutcomes, k.Commits)
	}
	var perRound []int
	for _, r := range got.Rounds[:3] {
		perRound = append(perRound, r.Errors, r.UnknownOutcomes)
	}
	if !slices.Equal(perRound, []int{0, 0, 0, 1, 1, 0}) {
		t.Fatalf("errors and unknown outcomes per round %v: want the unknown outcome in round 2, the error in round 3", perRound)
	}
	if r := got.Rounds[0]; r.Fault != mirrorresult.FaultKill || r.From != "A" || r.To != "B" || r.ToEpoch != 2 || r.HealthyMs != 2900 {
		t.Fatalf("round 1: %+v", r)
	}
	if s := got.Faults[1]; s.Rounds != 1 || s.Requested != 3 || s.P50Ms != 30 || s.MinMs != 30 || s.Missing != -1 {
		t.Fatalf("stop summary %+v: one of 3 rounds, 30 ms, not checked", s)
	}
	if i := got.Faults[2]; i.Fault != mirrorresult.FaultIsolate || i.Rounds != 0 || i.Requested != 3 || i.Commits != 0 {
		t.Fatalf("isolate, never reached: %+v", i)
	}
	if got.Missing != -1 || got.Errors != 2 || got.UnknownOutcomes != 1 || len(got.Rounds) != 4 {
		t.Fatalf("totals: missing %d, errors %d, unknown outcomes %d, %d rounds", got.Missing, got.Errors, got.UnknownOutcomes, len(got.Rounds))
	}
	if !slices.Equal(got.ErrorSamples, []string{"before any fault", "refused"}) {
		t.Fatalf("error samples %q: want the errors other than unknown outcomes", got.ErrorSamples)
	}
	if failed := unplannedFailed(got); !strings.Contains(failed, "2 client calls failed") || !strings.Contains(failed, "missing") {
		t.Fatalf("unplannedFailed = %q", failed)
	}
	if failed := unplannedFailed(mirrorresult.Unplanned{}); failed != "" {
		t.Fatalf("unplannedFailed of a clean run = %q", failed)
	}
}

func TestHealthy(t *testing.T) {
	names := [2]string{"A", "B"}
	arb, both := mirror.ModeArbiter.String(), mirror.ArbiterBoth
	primary := func(epoch uint64, self, backupTransfer string) mirror.Status {
		return mirror.Status{Role: "primary", Epoch: epoch, FailoverMode: arb, ArbiterConnection: both,
			Members: []mirror.MemberStatus{{Name: "A", Status: self}, {Name: "B", JournalTransfer: backupTransfer}}}
	}
	backup := func(epoch uint64, mode string) mirror.Status {
		return mirror.Status{Role: "backup", Epoch: epoch, FailoverMode: mode, ArbiterConnection: both,
			Members: []mirror.MemberStatus{{Name: "B", Status: mirror.StatusBackup}}}
	}
	tests := []struct {
		name  string
		views [2]mirror.Status
		want  int
	}{
		{name: "healthy", views: [2]mirror.Status{primary(3, mirror.StatusPrimary, mirror.TransferActive), backup(3, arb)}, want: 0},
		{name: "backup not Active", views: [2]mirror.Status{primary(3, mirror.StatusPrimary, mirror.CaughtUp), backup(3, arb)}, want: -1},
		{name: "backup in an older epoch", views: [2]mirror.Status{primary(3, mirror.StatusPrimary, mirror.TransferActive), backup(2, arb)}, want: -1},
		{name: "Agent Controlled", views: [2]mirror.Status{primary(3, mirror.StatusPrimary, mirror.TransferActive), backup(3, mirror.ModeAgent.String())}, want: -1},
		{name: "primary In Trouble", views: [2]mirror.Status{primary(3, mirror.StatusInTrouble, mirror.TransferActive), backup(3, arb)}, want: -1},
		{name: "no primary", views: [2]mirror.Status{backup(3, arb), backup(3, arb)}, want: -1},
		{name: "two primaries", views: [2]mirror.Status{primary(3, mirror.StatusPrimary, mirror.TransferActive), primary(4, mirror.StatusPrimary, mirror.TransferActive)}, want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := healthy(tt.views, names)
			if got != tt.want || (got < 0) != (why != "") {
				t.Fatalf("healthy = %d, %q; want %d", got, why, tt.want)
			}
		})
	}
}

func TestUnplannedRejectsFlags(t *testing.T) {
	valid := func() unplannedCmd {
		return unplannedCmd{Faults: []string{"kill", "stop", "isolate"}, Rounds: 1, QoS: time.Second, Clients: 1, Conns: 1,
			Steady: time.Second, Timeout: time.Second}
	}
	tests := []struct {
		name   string
		change func(c *unplannedCmd)
	}{
		{name: "no rounds", change: func(c *unplannedCmd) { c.Rounds = 0 }},
		{name: "no QoS", change: func(c *unplannedCmd) { c.QoS = 0 }},
		{name: "unknown fault", change: func(c *unplannedCmd) { c.Faults = []string{"kill", "reboot"} }},
		{name: "fault twice", change: func(c *unplannedCmd) { c.Faults = []string{"stop", "stop"} }},
		{name: "no fault", change: func(c *unplannedCmd) { c.Faults = nil }},
		{name: "negative attempt timeout", change: func(c *unplannedCmd) { c.AttemptTimeout = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			if err := c.run(context.Background(), &bytes.Buffer{}); err == nil {
				t.Fatal("run succeeded")
			}
		})
	}
	c := valid()
	if err := c.validate(); err != nil || c.AttemptTimeout != 500*time.Millisecond || c.DialTimeout != 500*time.Millisecond {
		t.Fatalf("validate: %v, attempt timeout %v, dial timeout %v: want half the QoS timeout", err, c.AttemptTimeout, c.DialTimeout)
	}
}

// buildMember compiles the member binary into a temporary directory.
func buildMember(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "member")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/member")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build ./cmd/member: %v\n%s", err, out)
	}
	return bin
}

// TestUnplannedEndToEnd runs one round of each fault against real member processes with a 1s QoS timeout.
func TestUnplannedEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs member processes through three failovers")
	}
	c := unplannedCmd{MemberBin: buildMember(t), Dir: t.TempDir(), Faults: []string{"kill", "stop", "isolate"}, Rounds: 1,
		QoS: time.Second, DB: "BENCH", Clients: 4, Conns: 2, Warmup: 200 * time.Millisecond, Steady: 300 * time.Millisecond,
		Timeout: 60 * time.Second, JSON: true}
	var out bytes.Buffer
	if err := c.run(context.Background(), &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	var res mirrorresult.Unplanned
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("decode %q: %v", out.String(), err)
	}
	if res.Failure != "" || res.Errors != 0 || res.Missing != 0 || res.Commits == 0 {
		t.Fatalf("result %s: want commits, no failure, no error, nothing missing", out.String())
	}
	if len(res.Faults) != 3 || len(res.Rounds) != 3 {
		t.Fatalf("result %s: want one round of each fault", out.String())
	}
	for i, r := range res.Rounds {
		if r.Fault != c.Faults[i] || r.From == r.To || r.ToEpoch <= r.FromEpoch {
			t.Errorf("round %+v: want a takeover by the other member in a higher epoch", r)
		}
		// Nothing can take over before the QoS timeout has passed without the primary.
		if r.UnavailableMs < ms(c.QoS) || r.TakeoverMs < ms(c.QoS) || r.HealthyMs < r.HealMs {
			t.Errorf("round %+v: unavailable or takeover sooner than the QoS timeout, or healthy before healed", r)
		}
	}
	for i, f := range res.Faults {
		if f.Rounds != 1 || f.P50Ms != f.MaxMs || f.P50Ms != res.Rounds[i].UnavailableMs || f.Commits == 0 {
			t.Errorf("fault summary %+v", f)
		}
	}
}
