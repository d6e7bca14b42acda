package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/mirrorkit/mirrorkit/bench/internal/jsonl"
)

// Kinds of result lines, one JSON object a line, in the file scripts/bench-backup.sh collects.
const (
	kindLoad = "load" // LoadResult, printed by load: exactly one
	kindRun  = "run"  // RunResult, printed by measure
	kindSize = "size" // SizeResult, written by the script
)

// SizeResult is one system's input on disk and what it stored for one backup.
type SizeResult struct {
	Kind        string `json:"kind"` // kindSize
	System      string `json:"system"`
	InputBytes  int64  `json:"input_bytes"`
	StoredBytes int64  `json:"stored_bytes"`
}

// Results is one run's result lines, checked.
type Results struct {
	Load  LoadResult
	Runs  []RunResult
	Sizes []SizeResult
}

// ErrBadResults marks a result file that cannot be reported on.
var ErrBadResults = errors.New("bad results")

// ReadResults parses the result lines strictly: unknown kinds or fields, a measurement or system the report does not
// know, and impossible figures are errors, so a broken run cannot turn into a plausible report.
func ReadResults(r io.Reader) (*Results, error) {
	var res Results
	if err := jsonl.Each(r, res.add); err != nil {
		return nil, err
	}
	if res.Load.Kind == "" {
		return nil, fmt.Errorf("no %q line: %w", kindLoad, ErrBadResults)
	}
	return &res, nil
}

func (res *Results) add(line []byte) error {
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(line, &head); err != nil {
		return fmt.Errorf("%w: %w", ErrBadResults, err)
	}
	switch head.Kind {
	case kindLoad:
		if res.Load.Kind != "" {
			return fmt.Errorf("a second %q line: %w", kindLoad, ErrBadResults)
		}
		if err := decodeStrict(line, &res.Load); err != nil {
			return err
		}
		if l := res.Load; l.Rows <= 0 || l.ValueSize <= 0 || l.LogicalBytes < l.Rows*int64(l.ValueSize) || !finite(l.Seconds) || l.Seconds < 0 {
			return fmt.Errorf("load of %d rows, %d bytes, value size %d, %v s: %w", l.Rows, l.LogicalBytes, l.ValueSize, l.Seconds, ErrBadResults)
		}
	case kindRun:
		var run RunResult
		if err := decodeStrict(line, &run); err != nil {
			return err
		}
		if _, ok := measurementNamed(run.Name); !ok {
			return fmt.Errorf("unknown measurement %q: %w", run.Name, ErrBadResults)
		}
		if !finite(run.Seconds) || run.Seconds <= 0 || run.MaxRSSBytes < 0 || !finite(run.CPUSeconds) || run.CPUSeconds < 0 || run.Round < 1 {
			return fmt.Errorf("%s round %d: %v s, peak RSS %d bytes: %w", run.Name, run.Round, run.Seconds, run.MaxRSSBytes, ErrBadResults)
		}
		res.Runs = append(res.Runs, run)
	case kindSize:
		var size SizeResult
		if err := decodeStrict(line, &size); err != nil {
			return err
		}
		if _, ok := systemNamed(size.System); !ok {
			return fmt.Errorf("sizes of unknown system %q: %w", size.System, ErrBadResults)
		}
		if size.InputBytes <= 0 || size.StoredBytes <= 0 {
			return fmt.Errorf("sizes of %s: input %d, stored %d bytes: %w", size.System, size.InputBytes, size.StoredBytes, ErrBadResults)
		}
		res.Sizes = append(res.Sizes, size)
	default:
		return fmt.Errorf("unknown kind %q: %w", head.Kind, ErrBadResults)
	}
	return nil
}

func decodeStrict(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadResults, err)
	}
	if dec.More() {
		return fmt.Errorf("data after the object: %w", ErrBadResults)
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
