package plans

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// samplePlan is a valid three-step plan whose last step is the point of no return.
func samplePlan(tb testing.TB) *Plan {
	tb.Helper()
	p := New("migrate add-db", "Add database orders to mirror m1", map[string]string{"db": "orders", "mirror": "m1"})
	p.Add(Step{Kind: "work", Member: "a", Title: "Prepare orders on a",
		Checks:   []Check{{Name: "space", Title: "room on a"}},
		Verify:   "prepared files are complete",
		Undo:     "remove the prepared files",
		Estimate: Duration(30 * time.Second)})
	p.Add(Step{Kind: "work", Member: "b", Title: "Copy orders to b", Args: map[string]string{"from": "a"},
		Checks: []Check{
			{Name: "space", Title: "room on b"},
			{Name: "reachable", Title: "b answers"},
		},
		Undo:     "delete the copy on b",
		Estimate: Duration(time.Minute)})
	p.PointOfNoReturn = p.Add(Step{Kind: "final", Member: "a", Title: "Switch the application to the mirror",
		Estimate: Duration(10 * time.Second), Downtime: true})
	return p
}

func TestRoundTrip(t *testing.T) {
	p := samplePlan(t)
	data, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"estimate": "1m0s"`) {
		t.Errorf("estimate not written as text:\n%s", data)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Errorf("round trip changed the plan:\n got %+v\nwant %+v", got, p)
	}
	if len(p.ID) != 16 || p.Version != FormatVersion {
		t.Errorf("New: id %q version %d", p.ID, p.Version)
	}
	if other := New("upgrade", "x", nil); other.ID == p.ID {
		t.Errorf("two plans share the id %s", p.ID)
	}
}

// TestFormatV1 reads plan and state files written in format version 1 and checks that writing them again gives the same bytes.
func TestFormatV1(t *testing.T) {
	planData, err := os.ReadFile("testdata/plan-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Decode(planData)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != "5f0c2a9e41b7d381" || len(p.Steps) != 3 || p.PointOfNoReturn != 3 || p.Steps[2].Estimate != Duration(1500*time.Millisecond) ||
		!p.Steps[2].Downtime || p.Steps[0].Checks[1].Name != "space" || p.Params["method"] != "backup" {
		t.Errorf("decoded plan: %+v", p)
	}
	again, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, planData) {
		t.Errorf("re-encoded plan differs from testdata:\n%s", again)
	}

	st, err := LoadState("testdata/state-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	if st.PlanID != p.ID || st.Steps[1].Status != StatusFailed || st.Steps[1].Attempts != 2 || st.Steps[0].Checks[1].Detail != "120 GiB free, 14 GiB needed" ||
		!st.Steps[2].Started.IsZero() {
		t.Errorf("decoded state: %+v", st)
	}
	stateData, err := os.ReadFile("testdata/state-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	stateAgain, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(stateAgain, '\n'), stateData) {
		t.Errorf("re-encoded state differs from testdata:\n%s", stateAgain)
	}
}

// planJSON encodes samplePlan as a generic JSON object for a test to break.
func planJSON(tb testing.TB, edit func(m map[string]any)) []byte {
	tb.Helper()
	data, err := samplePlan(tb).Encode()
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		tb.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func step(m map[string]any, n int) map[string]any {
	return m["steps"].([]any)[n-1].(map[string]any)
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want error  // nil: decodes
		msg  string // part of the error message
	}{
		{"valid", planJSON(t, func(map[string]any) {}), nil, ""},
		{"point of no return after the last step", planJSON(t, func(m map[string]any) { m["point_of_no_return"] = 4 }), nil, ""},
		{"no point of no return", planJSON(t, func(m map[string]any) { m["point_of_no_return"] = 0 }), nil, ""},
		{"newer version", planJSON(t, func(m map[string]any) { m["version"] = 3; m["from_the_future"] = true }), ErrNewerFormat,
			"plan format version 3 is newer than this tool understands (1): use a newer migrate/upgrade"},
		{"no version", planJSON(t, func(m map[string]any) { delete(m, "version") }), ErrInvalid, "plan format version 0 is invalid"},
		{"negative version", planJSON(t, func(m map[string]any) { m["version"] = -1 }), ErrInvalid, "version -1"},
		{"unknown field", planJSON(t, func(m map[string]any) { m["owner"] = "x" }), ErrInvalid, `unknown field "owner"`},
		{"unknown step field", planJSON(t, func(m map[string]any) { step(m, 2)["retries"] = 3 }), ErrInvalid, `unknown field "retries"`},
		{"no id", planJSON(t, func(m map[string]any) { m["id"] = "" }), ErrInvalid, "no id"},
		{"no tool", planJSON(t, func(m map[string]any) { delete(m, "tool") }), ErrInvalid, "no tool"},
		{"step numbered twice", planJSON(t, func(m map[string]any) { step(m, 3)["n"] = 2 }), ErrInvalid, "step 3 is numbered 2"},
		{"steps from zero", planJSON(t, func(m map[string]any) { step(m, 1)["n"] = 0 }), ErrInvalid, "step 1 is numbered 0"},
		{"no kind", planJSON(t, func(m map[string]any) { step(m, 2)["kind"] = "" }), ErrInvalid, "step 2 has no kind"},
		{"no title", planJSON(t, func(m map[string]any) { delete(step(m, 1), "title") }), ErrInvalid, "step 1 has no title"},
		{"point of no return beyond", planJSON(t, func(m map[string]any) { m["point_of_no_return"] = 5 }), ErrInvalid, "point of no return 5 is outside 0..4"},
		{"point of no return negative", planJSON(t, func(m map[string]any) { m["point_of_no_return"] = -1 }), ErrInvalid, "outside"},
		{"duplicate check", planJSON(t, func(m map[string]any) {
			step(m, 2)["checks"] = []any{map[string]any{"name": "space", "title": "a"}, map[string]any{"name": "space", "title": "b"}}
		}), ErrInvalid, `step 2 has two checks named "space"`},
		{"check without name", planJSON(t, func(m map[string]any) {
			step(m, 1)["checks"] = []any{map[string]any{"title": "a"}}
		}), ErrInvalid, "check with no name"},
		{"numeric estimate", planJSON(t, func(m map[string]any) { step(m, 1)["estimate"] = 30 }), ErrInvalid, "want a string"},
		{"estimate not a duration", planJSON(t, func(m map[string]any) { step(m, 1)["estimate"] = "soon" }), ErrInvalid, `"soon"`},
		{"negative estimate", planJSON(t, func(m map[string]any) { step(m, 1)["estimate"] = "-1s" }), ErrInvalid, "negative estimate"},
		{"pause longer than the step", planJSON(t, func(m map[string]any) { step(m, 3)["pause"] = "11s" }), ErrInvalid, "between 0 and its estimate 10s"},
		{"negative pause", planJSON(t, func(m map[string]any) { step(m, 3)["pause"] = "-1s" }), ErrInvalid, "between 0 and its estimate"},
		{"pause without downtime", planJSON(t, func(m map[string]any) { step(m, 1)["pause"] = "1s" }), ErrInvalid, "not marked as causing downtime"},
		{"trailing data", append(planJSON(t, func(map[string]any) {}), []byte(` {}`)...), ErrInvalid, "after top-level value"},
		{"not json", []byte("version: 1"), ErrInvalid, "decode plan"},
		{"null", []byte("null"), ErrInvalid, "version 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Decode(tt.data)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if p == nil || len(p.Steps) != 3 {
					t.Fatalf("Decode gave %+v", p)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
		})
	}
}

func TestEncodeRefusesInvalidPlan(t *testing.T) {
	p := samplePlan(t)
	p.Steps[1].N = 7
	if _, err := p.Encode(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Encode of a misnumbered plan: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	valid, err := samplePlan(f).Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	if sample, err := os.ReadFile("testdata/plan-v1.json"); err == nil {
		f.Add(sample)
	}
	f.Add([]byte(`{"version":1,"id":"x","tool":"t","steps":[],"point_of_no_return":1}`))
	f.Add([]byte(`{"version":1,"id":"x","tool":"t","created":"2026-01-02T03:04:05.5+01:00","params":{},` +
		`"steps":[{"n":1,"kind":"k","title":"t","args":{},"checks":[],"estimate":"9223372036854775807ns"}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Decode(data)
		if err != nil {
			return
		}
		again, err := p.Encode()
		if err != nil {
			t.Fatalf("decoded plan does not encode: %v", err)
		}
		q, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded plan does not decode: %v\n%s", err, again)
		}
		if !p.Created.Equal(q.Created) {
			t.Fatalf("created %v became %v", p.Created, q.Created)
		}
		p.Created, q.Created = time.Time{}, time.Time{}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip changed the plan:\n got %+v\nwant %+v", q, p)
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	if sample, err := os.ReadFile("testdata/state-v1.json"); err == nil {
		f.Add(sample)
	}
	f.Add([]byte(`{"plan_id":"x","version":1,"steps":[{"n":1,"status":"running","attempts":1}]}`))
	f.Add([]byte(`{"plan_id":"x","version":1,"steps":[{"n":1,"status":"maybe"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decodeState(data)
		if err != nil {
			return
		}
		for _, s := range st.Steps {
			if !s.Status.valid() {
				t.Fatalf("decoded status %q", s.Status)
			}
		}
		again, err := json.Marshal(st)
		if err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		if _, err := decodeState(again); err != nil {
			t.Fatalf("re-encoded state does not decode: %v\n%s", err, again)
		}
	})
}

func TestDecodeState(t *testing.T) {
	tests := []struct {
		name string
		data string
		want error
		msg  string
	}{
		{"unknown status", `{"plan_id":"x","version":1,"steps":[{"n":1,"status":"maybe"}]}`, ErrInvalid, `unknown status "maybe"`},
		{"misnumbered", `{"plan_id":"x","version":1,"steps":[{"n":2,"status":"done"}]}`, ErrInvalid, "numbered 2"},
		{"no plan", `{"version":1,"steps":[]}`, ErrInvalid, "names no plan"},
		{"newer", `{"plan_id":"x","version":2,"steps":[],"new":1}`, ErrNewerFormat, "state format version 2 is newer"},
		{"unknown field", `{"plan_id":"x","version":1,"steps":[],"owner":"y"}`, ErrInvalid, "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeState([]byte(tt.data))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("decodeState: %v, want %v saying %q", err, tt.want, tt.msg)
			}
		})
	}
}
