package latency

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func durations(tb testing.TB, ms ...int) []time.Duration {
	tb.Helper()
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name    string
		samples []int
		p       float64
		want    int
	}{
		{"single sample", []int{7}, 50, 7},
		{"single sample p99", []int{7}, 99, 7},
		{"median of odd count", []int{1, 2, 3}, 50, 2},
		{"median of even count takes lower", []int{1, 2, 3, 4}, 50, 2},
		{"p99 of 100", hundred, 99, 99},
		{"p100 is the max", hundred, 100, 100},
		{"p99 of two is the max", []int{1, 9}, 99, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Percentile(durations(t, tt.samples...), tt.p)
			if want := time.Duration(tt.want) * time.Millisecond; got != want {
				t.Fatalf("Percentile(p%v) = %v, want %v", tt.p, got, want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name    string
		samples []int
		elapsed time.Duration
		want    Summary
		wantErr error
	}{
		{
			name:    "unsorted samples",
			samples: []int{4, 1, 3, 2},
			elapsed: 2 * time.Second,
			want: Summary{System: "x", Clients: 3, Ops: 4, Seconds: 2, PerSecond: 2,
				P50Ms: 2, P99Ms: 4, MeanMs: 2.5, MaxMs: 4},
		},
		{name: "no samples", elapsed: time.Second, wantErr: ErrNoSamples},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Summarize("x", 3, tt.elapsed, durations(t, tt.samples...))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Summarize error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("Summarize = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSummarizeRejectsEmptyWindow(t *testing.T) {
	if _, err := Summarize("x", 1, 0, durations(t, 1)); err == nil {
		t.Fatal("Summarize with a zero window succeeded")
	}
}

func TestWriteRoundTrip(t *testing.T) {
	in := Summary{System: "mirrorkit", Clients: 64, Ops: 10, Seconds: 1, PerSecond: 10, P50Ms: 1.5, P99Ms: 3, MeanMs: 2, MaxMs: 4}
	var buf bytes.Buffer
	if err := in.Write(&buf); err != nil {
		t.Fatal(err)
	}
	var out Summary
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
		t.Fatalf("decode %q: %v", buf.String(), err)
	}
	if out != in {
		t.Fatalf("round trip = %+v, want %+v", out, in)
	}
}
