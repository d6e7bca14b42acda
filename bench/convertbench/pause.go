package main

import (
	"cmp"
	"slices"
	"time"
)

// write is one write of the probe: when it was sent and when it returned, as offsets from the probe's start.
type write struct {
	sent, done time.Duration
}

// WindowStats is what the probe's writers saw during one stretch of time.
type WindowStats struct {
	Seconds float64 `json:"seconds"`
	Writes  int     `json:"writes"` // acknowledged within the window
	Errors  int     `json:"errors"` // writes that failed and overlapped the window
	// MaxPauseSeconds is the longest time without any acknowledgement, over the gaps that overlap the window (the
	// whole gap, even where it starts before the window or ends after it). PauseStartSeconds is when that gap began,
	// from the window's start (negative: before it).
	MaxPauseSeconds   float64 `json:"max_pause_seconds"`
	PauseStartSeconds float64 `json:"pause_start_seconds"`
	// SlowestWriteSeconds is the longest single acknowledged write that overlapped the window, from sending to answer.
	SlowestWriteSeconds float64 `json:"slowest_write_seconds"`
}

// window summarises acks and failures over [from, to]. The writers ran over [begin, end]: a stretch without an
// acknowledgement at either edge counts as a pause too, so writers that stalled until they were stopped are not missed.
// acks must be sorted by done.
func window(acks, failures []write, begin, end, from, to time.Duration) WindowStats {
	s := WindowStats{Seconds: (to - from).Seconds()}
	prev := begin
	var pause, pauseStart time.Duration
	gap := func(a, b time.Duration) {
		if b > from && a < to && b-a > pause {
			pause, pauseStart = b-a, a
		}
	}
	for _, w := range acks {
		gap(prev, w.done)
		prev = w.done
		if w.done >= from && w.done <= to {
			s.Writes++
		}
		if w.sent < to && w.done > from {
			s.SlowestWriteSeconds = max(s.SlowestWriteSeconds, (w.done - w.sent).Seconds())
		}
	}
	gap(prev, end)
	for _, f := range failures {
		if f.sent <= to && f.done >= from {
			s.Errors++
		}
	}
	s.MaxPauseSeconds = pause.Seconds()
	s.PauseStartSeconds = (pauseStart - from).Seconds()
	return s
}

// byDone orders writes by acknowledgement.
func byDone(ws []write) {
	slices.SortFunc(ws, func(a, b write) int { return cmp.Compare(a.done, b.done) })
}
