package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// planOutput is what `migrate convert-shadow --json` printed: its plan (one JSON object), then one JSON event per line.
type planOutput struct {
	Steps       map[string]int     // the plan's steps by kind
	StepSeconds map[string]float64 // time the steps of each kind took to run and verify, summed
	Finished    bool               // the final "done" event says the plan finished
}

// parsePlanOutput reads the JSON values migrate printed. Values it does not know are skipped; text that is not JSON is
// an error, as is output without a plan.
func parsePlanOutput(r io.Reader) (planOutput, error) {
	out := planOutput{Steps: map[string]int{}, StepSeconds: map[string]float64{}}
	d := json.NewDecoder(r)
	for {
		var v struct {
			Plan    json.RawMessage `json:"plan"`
			Event   string          `json:"event"`
			Kind    string          `json:"kind"`
			Phase   string          `json:"phase"`
			Elapsed string          `json:"elapsed"`
			State   struct {
				Finished bool `json:"finished"`
			} `json:"state"`
		}
		err := d.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return planOutput{}, fmt.Errorf("output of migrate: %w", err)
		}
		var plan struct {
			Steps []struct {
				Kind string `json:"kind"`
			} `json:"steps"`
		}
		switch {
		case v.Event == "done":
			out.Finished = v.State.Finished
		case len(v.Plan) > 0 && v.Plan[0] == '{':
			if err := json.Unmarshal(v.Plan, &plan); err != nil {
				return planOutput{}, fmt.Errorf("plan in the output of migrate: %w", err)
			}
			clear(out.Steps)
			for _, s := range plan.Steps {
				out.Steps[s.Kind]++
			}
		case v.Phase == "done" && v.Kind != "":
			elapsed, err := time.ParseDuration(v.Elapsed)
			if err != nil {
				return planOutput{}, fmt.Errorf("step %s in the output of migrate: elapsed %q: %w", v.Kind, v.Elapsed, err)
			}
			out.StepSeconds[v.Kind] += elapsed.Seconds()
		}
	}
	if len(out.Steps) == 0 {
		return planOutput{}, errors.New("output of migrate: no plan")
	}
	return out, nil
}
