package plans

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func renderText(tb testing.TB, p *Plan, st *State, dry []StepReport) string {
	tb.Helper()
	var buf bytes.Buffer
	if err := RenderText(&buf, p, st, dry); err != nil {
		tb.Fatal(err)
	}
	return buf.String()
}

// lineIndex returns the index of the first line starting with prefix, or -1.
func lineIndex(lines []string, prefix string) int {
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

func TestRenderText(t *testing.T) {
	p := samplePlan(t)
	p.Steps[0].Title = "Prepare\torders on a" // a tab in a title must not break the table
	st := newState(p)
	st.Steps[0].Status = StatusDone
	st.Steps[1].Status = StatusFailed
	st.Steps[1].Error = "pre-check failed: reachable: b refused the connection"
	dry := []StepReport{
		{N: 1, Checks: []CheckResult{{"space", true, "10 GiB free"}}},
		{N: 2, Checks: []CheckResult{{"space", true, ""}, {"reachable", false, "b refused the connection"}}},
		{N: 3},
	}
	out := renderText(t, p, st, dry)
	lines := strings.Split(out, "\n")

	header := lineIndex(lines, "#")
	if header < 0 {
		t.Fatalf("no table header:\n%s", out)
	}
	statusCol := strings.Index(lines[header], "status")
	for _, h := range []string{"step", "member", "estimate", "downtime", "status"} {
		if !strings.Contains(lines[header], h) {
			t.Errorf("header %q lacks %q", lines[header], h)
		}
	}
	rows := map[string]string{"1  ": "done", "2  ": "failed", "3  ": "pending"}
	for prefix, status := range rows {
		i := lineIndex(lines, prefix)
		if i < 0 {
			t.Fatalf("no row %q:\n%s", prefix, out)
		}
		if got := strings.TrimSpace(lines[i][statusCol:]); got != status {
			t.Errorf("row %q: status column %q, want %q (columns not aligned?)", lines[i], got, status)
		}
	}
	if !strings.Contains(lines[lineIndex(lines, "1  ")], "Prepare orders on a") {
		t.Errorf("tab in a title kept: %q", lines[lineIndex(lines, "1  ")])
	}
	if !strings.Contains(lines[lineIndex(lines, "3  ")], "yes") {
		t.Errorf("downtime step not marked: %q", lines[lineIndex(lines, "3  ")])
	}

	marker := lineIndex(lines, PointOfNoReturnMarker)
	if marker < 0 || marker+1 != lineIndex(lines, "3  ") {
		t.Errorf("point of no return marker at line %d, step 3 at %d:\n%s", marker, lineIndex(lines, "3  "), out)
	}
	for _, want := range []string{
		"  ✓ space: 10 GiB free\n",
		"  ✓ space: room on b\n", // no detail: the check's title
		"  ✗ reachable: b refused the connection\n",
		"  verify: prepared files are complete\n",
		"  undo: delete the copy on b\n",
		"  undo: none\n",
		"  error: pre-check failed: reachable: b refused the connection\n",
		"total estimate 1m40s; expected application-visible pause up to 10s (step 3)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	plain := renderText(t, p, nil, nil)
	for _, want := range []string{"  · room on b\n", "  · b answers\n"} {
		if !strings.Contains(plain, want) {
			t.Errorf("output without a dry run lacks %q:\n%s", want, plain)
		}
	}
	if strings.ContainsAny(plain, "✓✗") || strings.Contains(plain, "done") {
		t.Errorf("output without state or dry run shows results:\n%s", plain)
	}
	pending := strings.Split(plain, "\n")
	if got := strings.TrimSpace(pending[lineIndex(pending, "1  ")][statusCol:]); got != "pending" {
		t.Errorf("status without state %q", got)
	}
}

// A downtime step that pauses applications for less than its whole duration counts with its pause.
func TestRenderTextExpectedPause(t *testing.T) {
	p := samplePlan(t)
	p.Steps[2].Pause = Duration(200 * time.Millisecond)
	p.Add(Step{Kind: "final", Member: "b", Title: "Restart b", Estimate: Duration(5 * time.Second), Downtime: true})
	if err := p.validate(); err != nil {
		t.Fatal(err)
	}
	out := renderText(t, p, nil, nil)
	if !strings.Contains(out, "total estimate 1m45s; expected application-visible pause up to 5.2s (steps 3, 4)\n") {
		t.Errorf("footer:\n%s", out)
	}
}

func TestRenderTextMarkerAfterLastStep(t *testing.T) {
	p := samplePlan(t)
	p.PointOfNoReturn = len(p.Steps) + 1
	for i := range p.Steps {
		p.Steps[i].Downtime = false
	}
	out := renderText(t, p, nil, nil)
	if !strings.Contains(out, "  undo: none\n"+PointOfNoReturnMarker+"\n\ntotal estimate") {
		t.Errorf("marker not after the last step:\n%s", out)
	}
	if !strings.Contains(out, "no expected application-visible pause") {
		t.Errorf("footer:\n%s", out)
	}

	p.PointOfNoReturn = 0
	if out := renderText(t, p, nil, nil); strings.Contains(out, PointOfNoReturnMarker) {
		t.Errorf("marker without a point of no return:\n%s", out)
	}
}

func TestRenderJSON(t *testing.T) {
	p := samplePlan(t)
	st := newState(p)
	st.Steps[0].Status = StatusDone
	st.Steps[0].Started = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	dry := []StepReport{{N: 1, Checks: []CheckResult{{"space", true, "10 GiB free"}}}}
	var buf bytes.Buffer
	if err := RenderJSON(&buf, p, st, dry); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Plan   json.RawMessage `json:"plan"`
		State  *State          `json:"state"`
		Checks []StepReport    `json:"checks"`
	}
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	plan, err := Decode(got.Plan)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(plan, p) || !reflect.DeepEqual(got.State, st) || !reflect.DeepEqual(got.Checks, dry) {
		t.Errorf("RenderJSON round trip:\n%+v\n%+v\n%+v", plan, got.State, got.Checks)
	}
}
