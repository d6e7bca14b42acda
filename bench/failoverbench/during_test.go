package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/bench/internal/mirrorresult"
)

func TestPauses(t *testing.T) {
	ms := time.Millisecond
	stall := 50 * ms
	tests := []struct {
		name          string
		acks          []time.Duration
		from, to, end time.Duration
		want          []interval
	}{
		{name: "steady acks: none", acks: msd(0, 10, 20, 30, 40, 50), from: 0, to: 50 * ms, end: 55 * ms},
		{name: "a gap of exactly the stall is not a pause", acks: msd(0, 50, 100), from: 0, to: 100 * ms, end: 100 * ms},
		{name: "two pauses inside the window", acks: msd(0, 10, 110, 120, 400, 410), from: 5 * ms, to: 405 * ms, end: 420 * ms,
			want: []interval{{10 * ms, 110 * ms}, {120 * ms, 400 * ms}}},
		{name: "a pause straddling the window start is clipped", acks: msd(0, 100, 110), from: 60 * ms, to: 110 * ms, end: 120 * ms,
			want: []interval{{60 * ms, 100 * ms}}},
		{name: "a pause straddling the window end is clipped", acks: msd(0, 10, 300), from: 0, to: 100 * ms, end: 300 * ms,
			want: []interval{{10 * ms, 100 * ms}}},
		{name: "pauses outside the window are ignored", acks: msd(0, 100, 110, 120, 130, 300), from: 105 * ms, to: 125 * ms, end: 300 * ms},
		{name: "no ack after the last: a pause until the load ended", acks: msd(0, 10), from: 0, to: 500 * ms, end: 500 * ms,
			want: []interval{{10 * ms, 500 * ms}}},
		{name: "no acks at all", from: 100 * ms, to: 200 * ms, end: 300 * ms, want: []interval{{100 * ms, 200 * ms}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pauses(tt.acks, stall, tt.from, tt.to, tt.end); !slices.Equal(got, tt.want) {
				t.Fatalf("pauses = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSummarizeDuring(t *testing.T) {
	ms := time.Millisecond
	// Acks every millisecond over 10s, but for a 100 ms pause before the command, and a 300 ms and a 40 ms one while it
	// runs (from 2s to 8s), and a 70 ms one 500 ms after it ended (settle 1s); then a 200 ms one after the settle time.
	var calls []call
	skip := [][2]time.Duration{{1000 * ms, 1100 * ms}, {3000 * ms, 3300 * ms}, {5000 * ms, 5040 * ms}, {8500 * ms, 8570 * ms}, {9500 * ms, 9700 * ms}}
	for at := time.Duration(0); at <= 10000*ms; at += ms {
		if !slices.ContainsFunc(skip, func(s [2]time.Duration) bool { return at > s[0] && at < s[1] }) {
			calls = append(calls, call{start: at - ms, end: at})
		}
	}
	errs := []callError{{start: 3000 * ms, at: 3200 * ms, err: errors.New("conn lost")}}
	started := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	run := commandRun{argv: []string{"upgrade", "apply"}, started: started, start: 2000 * ms, end: 8000 * ms, exitStatus: 0}
	res := summarizeDuring(run, calls, errs, 50*ms, 1000*ms, 10000*ms)

	if res.System != mirrorresult.SystemDuring || res.CommandMs != 6000 || res.ExitStatus != 0 || res.CommandError != "" {
		t.Errorf("command: %+v", res)
	}
	if res.CommandStarted != "2026-05-01T12:00:00Z" {
		t.Errorf("command started %q", res.CommandStarted)
	}
	if res.Pauses != 2 || res.UnavailableMs != 370 || res.LongestPauseMs != 300 {
		t.Errorf("pauses %d, unavailable %v ms, longest %v ms; want 2, 370, 300", res.Pauses, res.UnavailableMs, res.LongestPauseMs)
	}
	if want := []mirrorresult.Pause{{AtMs: 1000, Ms: 300}, {AtMs: 6500, Ms: 70}}; !slices.Equal(res.PauseList, want) {
		t.Errorf("pause list %v, want %v", res.PauseList, want)
	}
	if res.Commits != len(calls) || res.CommitsDuring != 7001-299-39-69 || res.Errors != 1 || res.SettleMs != 1000 || res.StallMs != 50 {
		t.Errorf("counts: %+v", res)
	}
	if !slices.Equal(res.ErrorSamples, []string{"conn lost"}) {
		t.Errorf("error samples %v", res.ErrorSamples)
	}
}

func TestDuringFailed(t *testing.T) {
	ok := mirrorresult.During{ReadFrom: "B"}
	if err := duringFailed(ok, commandRun{}); err != nil {
		t.Fatalf("a clean run failed: %v", err)
	}
	tests := []struct {
		name string
		res  mirrorresult.During
		run  commandRun
		want string
	}{
		{name: "the command failed", res: ok, run: commandRun{err: errors.New("exit status 1")}, want: "the command failed: exit status 1"},
		{name: "client errors", res: mirrorresult.During{Errors: 2, ErrorSamples: []string{"x"}}, want: "2 client calls failed: x"},
		{name: "missing commits", res: mirrorresult.During{Missing: 3, ReadFrom: "B"}, want: "3 acknowledged commits are missing on B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := duringFailed(tt.res, tt.run); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("duringFailed = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestDuringCommand runs a command under load on a mirror in the test process: its exit status is reported, and a
// failing command fails the run after the result is printed.
func TestDuringCommand(t *testing.T) {
	ms := startMirror(t, "A", "B")
	for _, status := range []string{"0", "3"} {
		t.Run("exit "+status, func(t *testing.T) {
			c := duringCmd{
				mirrorFlags: mirrorFlagsFor(ms),
				loadFlags:   loadFlags{DB: "BENCH", Clients: 4, Conns: 2, Warmup: 100 * time.Millisecond, JSON: true},
				Settle:      100 * time.Millisecond, Stall: 50 * time.Millisecond, Global: "^D", RetryTimeout: 10 * time.Second,
				Timeout: time.Minute, CommandLog: t.TempDir() + "/command.log",
				Command: []string{"--", "sh", "-c", "sleep 0.2; exit " + status},
			}
			var out bytes.Buffer
			err := c.run(context.Background(), &out)
			var res mirrorresult.During
			if derr := json.Unmarshal(out.Bytes(), &res); derr != nil {
				t.Fatalf("run: %v; decode %q: %v", err, out.String(), derr)
			}
			if res.Errors != 0 || res.Missing != 0 || res.Commits == 0 || res.CommitsDuring == 0 || res.CommandMs < 200 || res.ReadFrom != ms[0].addr() {
				t.Fatalf("result %+v: want commits during a command of 200 ms or more, no errors, nothing missing on A", res)
			}
			if status == "0" && (err != nil || res.ExitStatus != 0 || res.Failure != "") {
				t.Fatalf("run = %v, result %+v: want success", err, res)
			}
			if status == "3" && (err == nil || res.ExitStatus != 3 || !strings.Contains(res.Failure, "the command failed")) {
				t.Fatalf("run = %v, result %+v: want the command's failure with exit status 3", err, res)
			}
		})
	}
}
