package main

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mirrorkit/mirrorkit/bench/internal/latency"
)

const fullRun = `{"system":"fsync","clients":1,"ops":30000,"seconds":10,"per_second":3000,"p50_ms":0.3,"p99_ms":1,"mean_ms":0.3,"max_ms":5}
{"system":"mirrorkit","clients":1,"ops":20000,"seconds":10,"per_second":2000,"p50_ms":0.5,"p99_ms":1,"mean_ms":0.5,"max_ms":3}
{"system":"postgresql","clients":1,"ops":10000,"seconds":10,"per_second":1000,"p50_ms":1,"p99_ms":2,"mean_ms":1,"max_ms":4}
{"system":"mirrorkit","clients":64,"ops":200000,"seconds":10,"per_second":20000,"p50_ms":3,"p99_ms":6,"mean_ms":3,"max_ms":9}
{"system":"postgresql","clients":64,"ops":50000,"seconds":10,"per_second":5000,"p50_ms":10,"p99_ms":30,"mean_ms":12,"max_ms":40}
`

func TestReadResults(t *testing.T) {
	tests := []struct {
		name        string
		text        string
		wantClients []int
		wantErr     error
		anyErr      bool
	}{
		{name: "full run", text: fullRun, wantClients: []int{1, 64}},
		{name: "no fsync baseline", text: strings.SplitN(fullRun, "\n", 2)[1], wantErr: ErrMissingResult, anyErr: true},
		{name: "postgresql point missing", text: strings.Replace(fullRun, `"system":"postgresql","clients":64`, `"system":"postgresql","clients":16`, 1),
			wantErr: ErrMissingResult, anyErr: true},
		{name: "unknown system", text: fullRun + `{"system":"other","clients":1}` + "\n", anyErr: true},
		{name: "duplicate point", text: fullRun + strings.Split(fullRun, "\n")[1] + "\n", anyErr: true},
		{name: "not json", text: "tps = 1\n", anyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := readResults(strings.NewReader(tt.text))
			if (err != nil) != tt.anyErr {
				t.Fatalf("readResults error = %v, want error %v", err, tt.anyErr)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("readResults error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && !slices.Equal(res.clients, tt.wantClients) {
				t.Fatalf("clients = %v, want %v", res.clients, tt.wantClients)
			}
		})
	}
}

func TestJudge(t *testing.T) {
	res, err := readResults(strings.NewReader(fullRun))
	if err != nil {
		t.Fatal(err)
	}
	slow := res
	withFd := res
	withFd.fdatasync = &latency.Summary{System: "fdatasync", Clients: 1, PerSecond: 5000}
	slow.mirrorkit = map[int]latency.Summary{1: res.mirrorkit[1], 64: {System: "mirrorkit", Clients: 64, PerSecond: 9000, P99Ms: 31}}
	tests := []struct {
		name       string
		res        results
		clients    int
		wantMet    []bool
		wantJudged bool
	}{
		{name: "all met", res: res, clients: 64, wantMet: []bool{true, true, true}, wantJudged: true},
		{name: "with the stricter baseline", res: withFd, clients: 64, wantMet: []bool{true, true, true, false}, wantJudged: true},
		{name: "all missed", res: slow, clients: 64, wantMet: []bool{false, false, false}, wantJudged: true},
		{name: "client count not measured", res: res, clients: 16, wantMet: []bool{false, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := judge(tt.res, tt.clients)
			if len(got) != len(tt.wantMet) {
				t.Fatalf("judge returned %d targets, want %d", len(got), len(tt.wantMet))
			}
			for i, tg := range got {
				if tg.met != tt.wantMet[i] || tg.judged != tt.wantJudged {
					t.Errorf("target %q: met %v judged %v, want met %v judged %v", tg.goal, tg.met, tg.judged, tt.wantMet[i], tt.wantJudged)
				}
			}
		})
	}
}

const fdatasyncLine = `{"system":"fdatasync","clients":1,"ops":50000,"seconds":10,"per_second":5000,"p50_ms":0.2,"p99_ms":0.5,"mean_ms":0.2,"max_ms":3}
`

func TestRender(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    []string
		notWant []string
	}{
		{
			name: "fsync baseline only",
			text: fullRun,
			want: []string{
				"| 64 | 20000 | 3.00 | 6.00 | 5000 | 10.00 | 30.00 | 4.00× | 0.20× | 6.67× |\n",
				"append + fsync: **3000 fsyncs/s**",
				"| mirrorkit commits/s at 64 clients ≥ 2× PostgreSQL's | 4.00× (20000 vs 5000 tx/s) | **PASS** |",
			},
			notWant: []string{"fdatasync"},
		},
		{
			name: "with the fdatasync baseline",
			text: fullRun + fdatasyncLine,
			want: []string{
				"| 64 | 20000 | 3.00 | 6.00 | 5000 | 10.00 | 30.00 | 4.00× | 0.20× | 6.67× | 4.00× |\n",
				"preallocated write + fdatasync: **5000 fdatasyncs/s**",
				"| 4.00× (20000 vs 5000 fdatasyncs/s) | miss |",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := readResults(strings.NewReader(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			writeResults(&b, res)
			writeTargets(&b, judge(res, 64))
			out := b.String()
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("report lacks %q:\n%s", want, out)
				}
			}
			for _, bad := range tt.notWant {
				if strings.Contains(out, bad) {
					t.Errorf("report mentions %q:\n%s", bad, out)
				}
			}
		})
	}
}
