// Package mirrorresult is the JSON form of the mirroring benchmarks' results — planned failovers under load, an async
// member's lag under full commit load, unplanned failovers (a primary killed, stopped or isolated) and a command such as a
// rolling upgrade run under load — written by bench/failoverbench and read by bench/benchreport (and, for the last, by
// scripts/bench-upgrade.sh), so that both agree on one shape. It owns only these types and their encoding; it must not
// run or time anything itself.
package mirrorresult

import (
	"encoding/json"
	"fmt"
	"io"
)

// System names of the two results, in the "system" field every benchmark summary carries.
const (
	SystemFailover = "failover"
	SystemAsyncLag = "async-lag"
)

// Round is one planned failover under load. Times are in milliseconds.
type Round struct {
	Round int    `json:"round"`
	From  string `json:"from"` // primary before the failover
	To    string `json:"to"`   // primary after it
	// PauseMs is the longest interval without any acknowledgement, across all clients, that overlaps the failover
	// (from the failover command's start until a settling time after it returned): what an application sees as a stall.
	PauseMs float64 `json:"pause_ms"`
	// MaxLatencyMs is the longest single call that was in flight during that window.
	MaxLatencyMs float64 `json:"max_latency_ms"`
	CommandMs    float64 `json:"command_ms"` // `member mirror failover`, from start to exit
	// ActiveAfterMs is how long after the failover command started the old primary was an Active backup again.
	ActiveAfterMs float64 `json:"active_after_ms"`
	Errors        int     `json:"errors"` // client calls that failed between this failover and the next
	// CommandError is how `member mirror failover` failed, when it did; the round still counts when another member
	// became primary all the same.
	CommandError string `json:"command_error,omitempty"`
}

// Failover is a run of planned failovers while clients write through one mirror-aware client.
type Failover struct {
	System    string  `json:"system"`
	Clients   int     `json:"clients"`
	Requested int     `json:"requested_rounds"`
	Rounds    []Round `json:"rounds"`    // the completed rounds, in order
	SteadyMs  float64 `json:"steady_ms"` // load time between the backup becoming Active and the next failover
	SettleMs  float64 `json:"settle_ms"` // how long after the command returned a pause still counted
	// Pause and latency figures over the completed rounds (zero when none completed).
	PauseP50Ms      float64 `json:"pause_p50_ms"`
	PauseMaxMs      float64 `json:"pause_max_ms"`
	MaxLatencyP50Ms float64 `json:"max_latency_p50_ms"`
	MaxLatencyMaxMs float64 `json:"max_latency_max_ms"`
	Commits         int     `json:"commits"`        // acknowledged commits over the whole run
	Seconds         float64 `json:"seconds"`        // length of the whole run under load
	Errors          int     `json:"errors"`         // failed client calls over the whole run; every one is a failure of the mirror
	CommandErrors   int     `json:"command_errors"` // failover commands that failed
	// ErrorSamples holds the first distinct error messages, so a report can say what failed.
	ErrorSamples []string `json:"error_samples,omitempty"`
	// Missing counts acknowledged commits whose key the final primary does not hold; -1 when it could not be checked.
	Missing int `json:"missing"`
	// Failure says why the run stopped before completing every requested round, or why its figures are incomplete.
	Failure string `json:"failure,omitempty"`
}

// AsyncLag is an async member's lag behind the primary, sampled from the primary's Mirror Monitor while clients commit
// at full load.
type AsyncLag struct {
	System           string  `json:"system"`
	Clients          int     `json:"clients"`
	Async            string  `json:"async"` // the async member's name
	IntervalMs       float64 `json:"interval_ms"`
	Samples          int     `json:"samples"`
	Seconds          float64 `json:"seconds"`
	CommitsPerSecond float64 `json:"commits_per_second"`
	// JournalBytesPerSecond is the primary's durable mirror journal growth over the measured window; it turns a lag in
	// bytes into a lag in time.
	JournalBytesPerSecond float64 `json:"journal_bytes_per_second"`
	MaxLagBytes           uint64  `json:"max_lag_bytes"`
	P50LagMs              float64 `json:"p50_lag_ms"`
	P99LagMs              float64 `json:"p99_lag_ms"`
	MaxLagMs              float64 `json:"max_lag_ms"`
	// Transfer counts how often the primary showed each journal transfer status for the async ("Caught up", "2s behind").
	Transfer map[string]int `json:"journal_transfer"`
	Errors   int            `json:"errors"` // failed client calls
	Failure  string         `json:"failure,omitempty"`
}

// Write writes v as one line of JSON, the form scripts/bench.sh collects.
func Write(w io.Writer, v any) error {
	line, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}
