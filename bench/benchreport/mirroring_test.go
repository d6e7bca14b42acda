package main

import (
	"errors"
	"strings"
	"testing"
)

const mirroringRun = `{"system":"mirrorkit-backup","clients":64,"ops":150000,"seconds":10,"per_second":15000,"p50_ms":4,"p99_ms":9,"mean_ms":4,"max_ms":20}
{"system":"postgresql-sync","clients":64,"ops":30000,"seconds":10,"per_second":3000,"p50_ms":20,"p99_ms":60,"mean_ms":21,"max_ms":90}
{"system":"failover","clients":64,"requested_rounds":2,"rounds":[{"round":1,"from":"A","to":"B","pause_ms":80,"max_latency_ms":90,"command_ms":120,"active_after_ms":300,"errors":0},{"round":2,"from":"B","to":"A","pause_ms":120,"max_latency_ms":130,"command_ms":150,"active_after_ms":310,"errors":0}],"steady_ms":1000,"settle_ms":1000,"pause_p50_ms":80,"pause_max_ms":120,"max_latency_p50_ms":90,"max_latency_max_ms":130,"commits":50000,"seconds":8,"errors":0,"command_errors":0,"missing":0}
{"system":"async-lag","clients":64,"async":"C","interval_ms":250,"samples":41,"seconds":10,"commits_per_second":9000,"journal_bytes_per_second":1500000,"max_lag_bytes":30000,"p50_lag_ms":5,"p99_lag_ms":20,"max_lag_ms":20,"journal_transfer":{"Caught up":41},"errors":0}
`

// withFailover replaces the failover line of mirroringRun.
func withFailover(line string) string {
	lines := strings.Split(mirroringRun, "\n")
	lines[2] = line
	return strings.Join(lines, "\n")
}

const badFailover = `{"system":"failover","clients":64,"requested_rounds":20,"rounds":[{"round":1,"from":"A","to":"B","pause_ms":4030,"max_latency_ms":4040,"command_ms":4100,"active_after_ms":4110,"errors":2,"command_error":"no answer | from B"}],"pause_p50_ms":4030,"pause_max_ms":4030,"commits":9000,"seconds":8,"errors":2,"error_samples":["client 3: set: no primary found"],"command_errors":1,"missing":-1,"failure":"after failover 2: A is still primary"}`

func TestReadMirroringResults(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		wantErr error
		anyErr  bool
	}{
		{name: "full run", text: fullRun + mirroringRun},
		{name: "sync copy at a client count measured alone", text: fullRun + strings.Replace(mirroringRun, `"mirrorkit-backup","clients":64`, `"mirrorkit-backup","clients":16`, 1),
			wantErr: ErrMissingResult, anyErr: true},
		{name: "second failover result", text: fullRun + mirroringRun + strings.Split(mirroringRun, "\n")[2] + "\n", anyErr: true},
		{name: "second lag result", text: fullRun + mirroringRun + strings.Split(mirroringRun, "\n")[3] + "\n", anyErr: true},
		{name: "bad failover result", text: fullRun + `{"system":"failover","rounds":3}` + "\n", anyErr: true},
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
			if err == nil && (len(res.backup) != 1 || len(res.standby) != 1 || res.failover == nil || res.lag == nil || len(res.clients) != 2) {
				t.Fatalf("results %+v: want every mirroring result and the two plain client counts", res)
			}
		})
	}
}

func TestJudgeMirroring(t *testing.T) {
	tests := []struct {
		name       string
		text       string
		wantMet    []bool
		wantJudged []bool
	}{
		{name: "all met", text: fullRun + mirroringRun,
			wantMet:    []bool{true, true, true, true, true, true, true, true},
			wantJudged: []bool{true, true, true, true, true, true, true, true}},
		{name: "nothing measured", text: fullRun,
			wantMet:    []bool{false, false, false, false, false, false, false, false},
			wantJudged: []bool{false, false, false, false, false, false, false, false}},
		{name: "failovers misbehave", text: fullRun + withFailover(badFailover),
			wantMet:    []bool{true, true, false, false, false, false, false, true},
			wantJudged: []bool{true, true, true, true, true, true, true, true}},
		{name: "slow with a backup, async behind",
			text:       fullRun + strings.NewReplacer(`"per_second":15000`, `"per_second":5000`, `"max_lag_ms":20`, `"max_lag_ms":1500`).Replace(mirroringRun),
			wantMet:    []bool{false, false, true, true, true, true, true, false},
			wantJudged: []bool{true, true, true, true, true, true, true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := readResults(strings.NewReader(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			got := judgeMirroring(res, 64)
			checkTargets(t, "judgeMirroring", got, tt.wantMet, tt.wantJudged)
		})
	}
}

func TestRenderMirroring(t *testing.T) {
	tests := []struct {
		name       string
		text       string
		want       []string
		notWant    []string
		wantFailed bool
	}{
		{
			name: "healthy mirror",
			text: fullRun + mirroringRun,
			want: []string{
				"| 64 | 20000 | 15000 | 4.00 | 9.00 | 0.75× | 5000 | 3000 | 20.00 | 60.00 | 0.60× | 5.00× |\n",
				"| 1 | A → B | 80.0 | 90.0 | 120 | 300 | 0 | ok |\n",
				"| 64 | 41 | 9000 | 1465 | 5.0 | 20.0 | 20.0 | 30000 | Caught up ×41 |\n",
				"| planned failover under load: client-visible pause p50 < 200 ms | 80 ms over 2 failovers | **PASS** |",
				"| DR async lag under full commit load ≤ 1s | max 20 ms, p50 5 ms (64 clients, 41 samples) | **PASS** |",
			},
			notWant: []string{"FAIL"},
		},
		{
			name: "failing failovers",
			text: fullRun + withFailover(badFailover),
			want: []string{
				"> **FAIL**: the run stopped after 1 of 20 failovers: after failover 2: A is still primary\n",
				"> **FAIL**: 2 client calls failed; the first distinct errors: client 3: set: no primary found\n",
				"**failed**: no answer \\| from B |",
				"| planned failover under load: no client call fails | 2 errors in 9000 acknowledged commits over only 1 of 20 failovers | **FAIL** |",
				"| planned failover under load: client-visible pause max < 1s | 4030 ms over only 1 of 20 failovers | **MISS** |",
			},
			wantFailed: true,
		},
		{
			name:    "no mirroring results",
			text:    fullRun,
			want:    []string{"| planned failover under load: no client call fails | not measured | **NOT MEASURED** |"},
			notWant: []string{"## Mirroring"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := readResults(strings.NewReader(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			writeMirroring(&b, res)
			targets := append(judge(res, 64), judgeMirroring(res, 64)...)
			writeTargets(&b, targets)
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
			if err := failures(targets, "REPORT.md"); errors.Is(err, ErrFailed) != tt.wantFailed {
				t.Fatalf("failures = %v, want failed %v", err, tt.wantFailed)
			}
		})
	}
}

// checkTargets compares judged targets with the wanted met and judged flags, one per target in order.
func checkTargets(t *testing.T, judge string, got []target, wantMet, wantJudged []bool) {
	t.Helper()
	if len(got) != len(wantMet) {
		t.Fatalf("%s returned %d targets, want %d", judge, len(got), len(wantMet))
	}
	for i, tg := range got {
		if tg.met != wantMet[i] || tg.judged != wantJudged[i] {
			t.Errorf("target %q (%s): met %v judged %v, want met %v judged %v", tg.goal, tg.measured, tg.met, tg.judged, wantMet[i], wantJudged[i])
		}
	}
}
