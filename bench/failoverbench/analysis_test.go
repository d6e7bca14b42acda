package main

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
)

func msd(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestLongestGap(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name          string
		acks          []time.Duration
		from, to, end time.Duration
		want          time.Duration
	}{
		{name: "steady acks", acks: msd(0, 1, 2, 3, 4, 5, 6), from: 2 * ms, to: 4 * ms, end: 7 * ms, want: ms},
		{name: "pause inside the window", acks: msd(0, 1, 2, 90, 91, 92), from: 1 * ms, to: 95 * ms, end: 100 * ms, want: 88 * ms},
		{name: "pause straddling the window start", acks: msd(0, 1, 50, 51), from: 10 * ms, to: 20 * ms, end: 60 * ms, want: 49 * ms},
		{name: "pause straddling the window end", acks: msd(0, 1, 2, 200), from: 0, to: 10 * ms, end: 300 * ms, want: 198 * ms},
		{name: "pause after the window ignored", acks: msd(0, 1, 2, 3, 100), from: 0, to: 2 * ms, end: 300 * ms, want: ms},
		{name: "pause before the window ignored", acks: msd(0, 100, 101, 102), from: 101 * ms, to: 102 * ms, end: 103 * ms, want: ms},
		{name: "no ack after the window: until the end", acks: msd(0, 1, 2), from: 1 * ms, to: 5 * ms, end: 500 * ms, want: 498 * ms},
		{name: "no acks at all", acks: nil, from: 1 * ms, to: 5 * ms, end: 500 * ms, want: 500 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := longestGap(tt.acks, tt.from, tt.to, tt.end); got != tt.want {
				t.Fatalf("longestGap = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLongestCallAndErrors(t *testing.T) {
	ms := time.Millisecond
	calls := []call{{start: 0, end: 5 * ms}, {start: 8 * ms, end: 40 * ms}, {start: 50 * ms, end: 51 * ms}, {start: 100 * ms, end: 400 * ms}}
	errs := []callError{{start: 20 * ms, at: 90 * ms, err: errors.New("a")}, {start: 200 * ms, at: 210 * ms, err: errors.New("b")}}
	tests := []struct {
		name     string
		from, to time.Duration
		want     time.Duration
		errors   int
	}{
		{name: "before anything slow", from: 0, to: 6 * ms, want: 5 * ms, errors: 0},
		{name: "a slow call and a failed one", from: 30 * ms, to: 60 * ms, want: 70 * ms, errors: 1},
		{name: "the slowest call, in flight across the window", from: 150 * ms, to: 160 * ms, want: 300 * ms, errors: 0},
		{name: "nothing in flight", from: 401 * ms, to: 500 * ms, want: 0, errors: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := longestCall(calls, errs, tt.from, tt.to); got != tt.want {
				t.Errorf("longestCall = %v, want %v", got, tt.want)
			}
			if got := countErrors(errs, tt.from, tt.to+40*ms); got != tt.errors {
				t.Errorf("countErrors = %d, want %d", got, tt.errors)
			}
		})
	}
}

func TestSummarizeFailovers(t *testing.T) {
	ms := time.Millisecond
	// Acks every millisecond, except a 100 ms pause in the first failover and a 30 ms one in the second.
	var calls []call
	for at := time.Duration(0); at < 3000*ms; at += ms {
		if (at > 1000*ms && at < 1100*ms) || (at > 2000*ms && at < 2030*ms) {
			continue
		}
		calls = append(calls, call{start: at - ms/2, end: at})
	}
	errs := []callError{{start: 2001 * ms, at: 2010 * ms, err: errors.New("refused")}}
	windows := []window{
		{from: "A", to: "B", cmdStart: 1000 * ms, cmdEnd: 1150 * ms, activeAfter: 200 * ms},
		{from: "B", to: "A", cmdStart: 1990 * ms, cmdEnd: 2040 * ms, activeAfter: 100 * ms, cmdErr: errors.New("no answer")},
	}
	res := summarizeFailovers(windows, calls, errs, 500*ms, 3000*ms)
	if len(res.Rounds) != 2 || res.Rounds[0].PauseMs != 100 || res.Rounds[1].PauseMs != 30 {
		t.Fatalf("rounds %+v: want pauses of 100 and 30 ms", res.Rounds)
	}
	if res.PauseP50Ms != 30 || res.PauseMaxMs != 100 {
		t.Fatalf("pause p50 %v, max %v: want 30 and 100", res.PauseP50Ms, res.PauseMaxMs)
	}
	if res.Errors != 1 || res.Rounds[0].Errors != 0 || res.Rounds[1].Errors != 1 || !slices.Equal(res.ErrorSamples, []string{"refused"}) {
		t.Fatalf("errors %d (%v), per round %d and %d: want the one error in round 2", res.Errors, res.ErrorSamples,
			res.Rounds[0].Errors, res.Rounds[1].Errors)
	}
	if res.CommandErrors != 1 || res.Rounds[1].CommandError != "no answer" || res.Rounds[0].CommandError != "" {
		t.Fatalf("command errors %d, rounds %+v: want round 2's", res.CommandErrors, res.Rounds)
	}
	if res.Commits != len(calls) || res.Rounds[0].CommandMs != 150 || res.Rounds[0].ActiveAfterMs != 200 {
		t.Fatalf("result %+v: commits, command time or active time wrong", res)
	}
}

func TestErrorSamples(t *testing.T) {
	var errs []callError
	for _, m := range []string{"a", "b", "a", "c", "d", "e", "f"} {
		errs = append(errs, callError{err: errors.New(m)})
	}
	if got := errorSamples(errs); !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Fatalf("errorSamples = %q", got)
	}
}

func pos(epoch, segment, offset uint64) journal.Position {
	return journal.Position{Epoch: epoch, Segment: segment, Offset: offset}
}

func TestDistance(t *testing.T) {
	const seg = 1000
	tests := []struct {
		name     string
		from, to journal.Position
		want     uint64
	}{
		{name: "same segment", from: pos(1, 3, 100), to: pos(1, 3, 350), want: 250},
		{name: "equal", from: pos(1, 3, 100), to: pos(1, 3, 100), want: 0},
		{name: "ahead", from: pos(1, 3, 400), to: pos(1, 3, 100), want: 0},
		{name: "next segment", from: pos(1, 3, 900), to: pos(1, 4, 50), want: 150},
		{name: "two segments on, across an epoch", from: pos(1, 3, 900), to: pos(2, 5, 50), want: 1150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := distance(tt.from, tt.to, seg); got != tt.want {
				t.Fatalf("distance(%s, %s) = %d, want %d", tt.from, tt.to, got, tt.want)
			}
		})
	}
}

func TestSummarizeLag(t *testing.T) {
	s := time.Second
	// The journal grows 1000 bytes a second; the async is 0, 500 and 250 bytes behind.
	samples := []lagSample{
		{at: 0, end: pos(1, 1, 1000), received: pos(1, 1, 1000), transfer: "Caught up"},
		{at: s, end: pos(1, 1, 2000), received: pos(1, 1, 1500), transfer: "Caught up"},
		{at: 2 * s, end: pos(1, 1, 3000), received: pos(1, 1, 2750), transfer: "1s behind"},
	}
	res, err := summarizeLag(samples, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if res.JournalBytesPerSecond != 1000 || res.MaxLagBytes != 500 || res.MaxLagMs != 500 || res.P50LagMs != 250 {
		t.Fatalf("result %+v: want 1000 B/s, 500 bytes and 500 ms at most, 250 ms median", res)
	}
	if res.Transfer["Caught up"] != 2 || res.Transfer["1s behind"] != 1 {
		t.Fatalf("journal transfer tally %v", res.Transfer)
	}

	bad := []struct {
		name    string
		samples []lagSample
	}{
		{name: "one sample", samples: samples[:1]},
		{name: "journal did not grow", samples: []lagSample{{at: 0, end: pos(1, 1, 10)}, {at: s, end: pos(1, 1, 10)}}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := summarizeLag(tt.samples, 1<<20); err == nil {
				t.Fatal("summarizeLag succeeded")
			}
		})
	}
}

func TestNotReady(t *testing.T) {
	row := func(name, typ, transfer string) mirror.MemberStatus {
		return mirror.MemberStatus{Name: name, Type: typ, JournalTransfer: transfer}
	}
	fo, dr := mirror.Failover.Label(), mirror.DR.Label()
	tests := []struct {
		name  string
		rows  []mirror.MemberStatus
		ready bool
	}{
		{name: "active backup, caught-up async", ready: true,
			rows: []mirror.MemberStatus{row("A", fo, mirror.TransferNA), row("B", fo, mirror.TransferActive), row("C", dr, mirror.CaughtUp)}},
		{name: "backup only caught up",
			rows: []mirror.MemberStatus{row("A", fo, mirror.TransferNA), row("B", fo, mirror.CaughtUp)}},
		{name: "async behind",
			rows: []mirror.MemberStatus{row("A", fo, mirror.TransferNA), row("B", fo, mirror.TransferActive), row("C", dr, "3s behind")}},
		{name: "primary alone", ready: true, rows: []mirror.MemberStatus{row("A", fo, mirror.TransferNA)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			why := notReady(mirror.Status{Primary: "A", Members: tt.rows})
			if (why == "") != tt.ready {
				t.Fatalf("notReady = %q, want ready %v", why, tt.ready)
			}
		})
	}
}

func TestAddrsPrimaryFirst(t *testing.T) {
	got := addrsPrimaryFirst([]string{"a:1", "b:1", "c:1"}, "b:1")
	if !slices.Equal(got, []string{"b:1", "a:1", "c:1"}) {
		t.Fatalf("addrsPrimaryFirst = %v", got)
	}
}
