package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/mirrorkit/mirrorkit/bench/internal/jsonl"
)

// Kinds of result lines, one JSON object a line, in the file scripts/bench-convert.sh collects.
const (
	kindSetup = "setup" // SetupResult, written by the script: exactly one
	kindRound = "round" // RoundResult, printed by run and completed by the script
)

// Conversion paths, as run --mode names them.
const (
	modeInPlace = "in-place"
	modeCopy    = "copy"
	modeStaged  = "staged"
)

// modes are the report's rows, in order; the first two must have run.
var modes = []string{modeInPlace, modeCopy, modeStaged}

// SetupResult describes the databases every round converts.
type SetupResult struct {
	Kind         string   `json:"kind"` // kindSetup
	Databases    []string `json:"databases"`
	Rows         int64    `json:"rows"`          // in all databases
	LogicalBytes int64    `json:"logical_bytes"` // keys and values, in all databases
	ValueSize    int      `json:"value_size"`
	LoadSeconds  float64  `json:"load_seconds"`
	// CatchUpSeconds is how long after the load the shadows took to apply all of it, with equal hashes.
	CatchUpSeconds     float64 `json:"catch_up_seconds"`
	SourceDBBytes      int64   `json:"source_db_bytes"`      // the databases' directories on the source
	SourceJournalBytes int64   `json:"source_journal_bytes"` // the source's journal directory
	// CachesDropped tells whether the page cache was dropped before every round.
	CachesDropped bool `json:"caches_dropped"`
}

// Results is one run's result lines, checked.
type Results struct {
	Setup  SetupResult
	Rounds []RoundResult
}

// ErrBadResults marks a result file that cannot be reported on.
var ErrBadResults = errors.New("bad results")

// ReadResults parses the result lines strictly: unknown kinds, modes or fields, a round the script did not complete,
// and impossible figures are errors, so a broken run cannot turn into a plausible report.
func ReadResults(r io.Reader) (*Results, error) {
	var res Results
	if err := jsonl.Each(r, res.add); err != nil {
		return nil, err
	}
	if res.Setup.Kind == "" {
		return nil, fmt.Errorf("no %q line: %w", kindSetup, ErrBadResults)
	}
	for _, m := range modes[:2] {
		if !slices.ContainsFunc(res.Rounds, func(r RoundResult) bool { return r.Mode == m }) {
			return nil, fmt.Errorf("no round of mode %s: %w", m, ErrBadResults)
		}
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
	case kindSetup:
		if res.Setup.Kind != "" {
			return fmt.Errorf("a second %q line: %w", kindSetup, ErrBadResults)
		}
		if err := decodeStrict(line, &res.Setup); err != nil {
			return err
		}
		s := res.Setup
		if len(s.Databases) == 0 || s.Rows <= 0 || s.ValueSize <= 0 || s.LogicalBytes < s.Rows*int64(s.ValueSize) ||
			!nonNegative(s.LoadSeconds, s.CatchUpSeconds) || s.SourceDBBytes <= 0 || s.SourceJournalBytes < 0 {
			return fmt.Errorf("%q line with impossible figures: %w", kindSetup, ErrBadResults)
		}
	case kindRound:
		var r RoundResult
		if err := decodeStrict(line, &r); err != nil {
			return err
		}
		if !slices.Contains(modes, r.Mode) {
			return fmt.Errorf("round of unknown mode %q: %w", r.Mode, ErrBadResults)
		}
		if r.BytesServed == nil || len(r.Hashes) == 0 {
			return fmt.Errorf("%s round %d lacks bytes_served or hashes (the script adds them after its checks): %w", r.Mode, r.Round, ErrBadResults)
		}
		if len(r.Steps) == 0 {
			return fmt.Errorf("%s round %d has no plan steps: %w", r.Mode, r.Round, ErrBadResults)
		}
		for k, sec := range r.StepSeconds {
			if r.Steps[k] == 0 || !nonNegative(sec) {
				return fmt.Errorf("%s round %d: %g s in steps %q the plan does not have: %w", r.Mode, r.Round, sec, k, ErrBadResults)
			}
		}
		p := r.Probe
		if r.Round < 1 || r.Seconds <= 0 || !nonNegative(r.Seconds, r.CPUSeconds, p.During.MaxPauseSeconds, p.Before.MaxPauseSeconds,
			p.During.SlowestWriteSeconds) || r.MaxRSSBytes < 0 || *r.BytesServed < 0 || p.Writers < 1 || p.Writes < 0 || p.Errors < 0 ||
			p.ReadBack != p.Writes || p.Missing != 0 {
			return fmt.Errorf("%s round %d with impossible figures or lost writes: %w", r.Mode, r.Round, ErrBadResults)
		}
		res.Rounds = append(res.Rounds, r)
	default:
		return fmt.Errorf("unknown kind %q: %w", head.Kind, ErrBadResults)
	}
	return nil
}

func decodeStrict(line []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadResults, err)
	}
	return nil
}

func nonNegative(fs ...float64) bool {
	for _, f := range fs {
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return false
		}
	}
	return true
}
