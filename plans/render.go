package plans

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// PointOfNoReturnMarker is the line RenderText puts before the first step that cannot be undone.
const PointOfNoReturnMarker = "── point of no return ──"

// RenderText writes p as a numbered table for people: one row per step with its status from st ("pending" when st is nil),
// its pre-checks beneath it (with their dry-run results when dry is given), its verification and undo, the point of no return,
// and a footer with the total estimate and the expected application-visible pause.
func RenderText(w io.Writer, p *Plan, st *State, dry []StepReport) error {
	var out bytes.Buffer
	fmt.Fprintf(&out, "Plan %s: %s\n", p.ID, oneLine(p.Title))
	fmt.Fprintf(&out, "tool %s, created %s\n", oneLine(p.Tool), p.Created.UTC().Format(time.DateTime+" MST"))
	if len(p.Params) > 0 {
		params := make([]string, 0, len(p.Params))
		for _, k := range slices.Sorted(maps.Keys(p.Params)) {
			params = append(params, k+"="+p.Params[k])
		}
		fmt.Fprintf(&out, "params: %s\n", oneLine(strings.Join(params, " ")))
	}
	out.WriteString("\n")

	rows, err := tableRows(p, st)
	if err != nil {
		return err
	}
	out.WriteString(rows[0])
	reports := map[int]StepReport{}
	for _, r := range dry {
		reports[r.N] = r
	}
	for i, s := range p.Steps {
		if s.N == p.PointOfNoReturn {
			out.WriteString(PointOfNoReturnMarker + "\n")
		}
		out.WriteString(rows[i+1])
		report, checked := reports[s.N]
		for _, c := range s.Checks {
			out.WriteString(checkLine(c, report, checked && dry != nil))
		}
		if s.Verify != "" {
			fmt.Fprintf(&out, "  verify: %s\n", oneLine(s.Verify))
		}
		undo := s.Undo
		if undo == "" {
			undo = "none"
		}
		fmt.Fprintf(&out, "  undo: %s\n", oneLine(undo))
		if ss := stepState(st, s.N); ss != nil && ss.Error != "" {
			fmt.Fprintf(&out, "  error: %s\n", oneLine(ss.Error))
		}
	}
	if p.PointOfNoReturn == len(p.Steps)+1 {
		out.WriteString(PointOfNoReturnMarker + "\n")
	}

	var total, pause time.Duration
	var downSteps []string
	for _, s := range p.Steps {
		total += time.Duration(s.Estimate)
		if s.Downtime {
			pause += s.ExpectedPause()
			downSteps = append(downSteps, fmt.Sprint(s.N))
		}
	}
	fmt.Fprintf(&out, "\ntotal estimate %s; ", total)
	if len(downSteps) == 0 {
		out.WriteString("no expected application-visible pause\n")
	} else {
		noun := "steps"
		if len(downSteps) == 1 {
			noun = "step"
		}
		fmt.Fprintf(&out, "expected application-visible pause up to %s (%s %s)\n", pause, noun, strings.Join(downSteps, ", "))
	}
	if _, err := w.Write(out.Bytes()); err != nil {
		return fmt.Errorf("render plan %s: %w", p.ID, err)
	}
	return nil
}

// tableRows aligns the header and step rows with tabwriter on their own, so that the detail lines printed between rows do
// not break the alignment.
func tableRows(p *Plan, st *State) ([]string, error) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tstep\tmember\testimate\tdowntime\tstatus")
	for _, s := range p.Steps {
		status := StatusPending
		if ss := stepState(st, s.N); ss != nil {
			status = ss.Status
		}
		down := "no"
		if s.Downtime {
			down = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", s.N, oneLine(s.Title), oneLine(s.Member), s.Estimate, down, status)
	}
	if err := tw.Flush(); err != nil {
		return nil, fmt.Errorf("render plan %s: %w", p.ID, err)
	}
	return strings.SplitAfter(buf.String(), "\n"), nil
}

func checkLine(c Check, report StepReport, checked bool) string {
	if !checked {
		return fmt.Sprintf("  · %s\n", oneLine(c.Title))
	}
	mark, detail := "✗", "no result"
	for _, r := range report.Checks {
		if r.Name == c.Name {
			detail = r.Detail
			if r.OK {
				mark = "✓"
			}
			if detail == "" {
				detail = c.Title
			}
		}
	}
	return fmt.Sprintf("  %s %s: %s\n", mark, oneLine(c.Name), oneLine(detail))
}

func stepState(st *State, n int) *StepState {
	if st == nil || n < 1 || n > len(st.Steps) {
		return nil
	}
	return &st.Steps[n-1]
}

// oneLine keeps text from a plan from breaking the table's rows and columns.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

// RenderJSON writes p, its state and its dry-run results as one JSON object {plan, state, checks}.
func RenderJSON(w io.Writer, p *Plan, st *State, dry []StepReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	err := enc.Encode(struct {
		Plan   *Plan        `json:"plan"`
		State  *State       `json:"state"`
		Checks []StepReport `json:"checks"`
	}{p, st, dry})
	if err != nil {
		return fmt.Errorf("render plan %s: %w", p.ID, err)
	}
	return nil
}
