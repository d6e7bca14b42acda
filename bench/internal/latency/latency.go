// Package latency summarises a benchmark run — operation count, rate and latency percentiles — in one JSON shape shared by
// every benchmark program, so mirrorkit, PostgreSQL and the fsync baseline are measured and reported the same way. It owns
// only the arithmetic and the JSON form; it must not run or time anything itself.
package latency

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// ErrNoSamples is returned when a run produced no measured operation, which would make every figure meaningless.
var ErrNoSamples = errors.New("no operations measured")

// Summary is one measured point: a system at a client count. Latencies are in milliseconds.
type Summary struct {
	System    string  `json:"system"`
	Clients   int     `json:"clients"`
	Ops       int     `json:"ops"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MeanMs    float64 `json:"mean_ms"`
	MaxMs     float64 `json:"max_ms"`
}

// Summarize computes the summary of samples, the latencies of the operations that completed within a measured window of
// length elapsed. Throughput is len(samples)/elapsed. samples is sorted in place.
func Summarize(system string, clients int, elapsed time.Duration, samples []time.Duration) (Summary, error) {
	if len(samples) == 0 {
		return Summary{}, fmt.Errorf("%s with %d clients: %w", system, clients, ErrNoSamples)
	}
	if elapsed <= 0 {
		return Summary{}, fmt.Errorf("%s with %d clients: measured window %v is not positive", system, clients, elapsed)
	}
	slices.Sort(samples)
	var total time.Duration
	for _, s := range samples {
		total += s
	}
	return Summary{
		System:    system,
		Clients:   clients,
		Ops:       len(samples),
		Seconds:   elapsed.Seconds(),
		PerSecond: float64(len(samples)) / elapsed.Seconds(),
		P50Ms:     ms(Percentile(samples, 50)),
		P99Ms:     ms(Percentile(samples, 99)),
		MeanMs:    ms(total / time.Duration(len(samples))),
		MaxMs:     ms(samples[len(samples)-1]),
	}, nil
}

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of sorted, which must be sorted ascending and non-empty:
// the smallest sample such that at least p% of the samples are less than or equal to it.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// Write writes s as one line of JSON, the form scripts/bench.sh collects.
func (s Summary) Write(w io.Writer) error {
	line, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode summary: %w", err)
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// Print writes s for a person reading the terminal.
func (s Summary) Print(w io.Writer) error {
	_, err := fmt.Fprintf(w, "%s, %d clients: %d ops in %.2fs = %.0f/s; latency p50 %.3f ms, p99 %.3f ms, mean %.3f ms, max %.3f ms\n",
		s.System, s.Clients, s.Ops, s.Seconds, s.PerSecond, s.P50Ms, s.P99Ms, s.MeanMs, s.MaxMs)
	if err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// Output writes s as JSON when asJSON is set, as text otherwise.
func (s Summary) Output(w io.Writer, asJSON bool) error {
	if asJSON {
		return s.Write(w)
	}
	return s.Print(w)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
