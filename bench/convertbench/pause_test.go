package main

import (
	"math"
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	acks := func(at ...int) []write {
		var ws []write
		for _, a := range at {
			ws = append(ws, write{sent: ms(a - 5), done: ms(a)})
		}
		return ws
	}
	tests := []struct {
		name              string
		acks, failures    []write
		begin, end        time.Duration
		from, to          time.Duration
		writes, errors    int
		pause, pauseStart float64 // seconds
		slowest           float64 // seconds
	}{
		{name: "steady", acks: acks(10, 20, 30, 40, 50, 60), begin: 0, end: ms(70), from: ms(25), to: ms(45),
			writes: 2, pause: 0.010, pauseStart: -0.005, slowest: 0.005},
		{name: "gap inside", acks: acks(10, 20, 300, 310), begin: 0, end: ms(320), from: ms(100), to: ms(200),
			writes: 0, pause: 0.280, pauseStart: -0.080, slowest: 0},
		{name: "gap crossing the start is counted whole", acks: acks(10, 150, 160), begin: 0, end: ms(170), from: ms(100), to: ms(165),
			writes: 2, pause: 0.140, pauseStart: -0.090, slowest: 0.005},
		{name: "gap outside is not counted", acks: acks(10, 500, 510, 520), begin: 0, end: ms(530), from: ms(505), to: ms(525),
			writes: 2, pause: 0.010, pauseStart: -0.005, slowest: 0.005},
		{name: "stalled until stopped", acks: acks(10, 20), begin: 0, end: ms(900), from: ms(50), to: ms(100),
			writes: 0, pause: 0.880, pauseStart: -0.030, slowest: 0},
		{name: "no ack at all", begin: 0, end: ms(100), from: ms(10), to: ms(20), pause: 0.100, pauseStart: -0.010},
		{name: "failures overlapping", acks: acks(10, 20, 30), begin: 0, end: ms(40), from: ms(12), to: ms(28),
			failures: []write{{ms(0), ms(11)}, {ms(11), ms(13)}, {ms(28), ms(35)}, {ms(29), ms(35)}},
			writes:   1, errors: 2, pause: 0.010, pauseStart: -0.002, slowest: 0.005},
		{name: "slow write", acks: append(acks(10, 20, 30), write{sent: ms(95), done: ms(500)}), begin: 0, end: ms(510),
			from: ms(100), to: ms(200), writes: 0, pause: 0.470, pauseStart: -0.070, slowest: 0.405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := window(tt.acks, tt.failures, tt.begin, tt.end, tt.from, tt.to)
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
			if got.Writes != tt.writes || got.Errors != tt.errors || !near(got.MaxPauseSeconds, tt.pause) ||
				!near(got.PauseStartSeconds, tt.pauseStart) || !near(got.SlowestWriteSeconds, tt.slowest) ||
				!near(got.Seconds, (tt.to-tt.from).Seconds()) {
				t.Fatalf("window = %+v, want writes %d, errors %d, pause %gs starting at %gs, slowest %gs", got,
					tt.writes, tt.errors, tt.pause, tt.pauseStart, tt.slowest)
			}
		})
	}
}

func TestByDone(t *testing.T) {
	ws := []write{{done: 3}, {done: 1}, {done: 2}}
	byDone(ws)
	for i, w := range ws {
		if w.done != time.Duration(i+1) {
			t.Fatalf("byDone = %v, want ordered by done", ws)
		}
	}
}
