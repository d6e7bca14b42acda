package main

import (
	"errors"
	"strings"
	"testing"
)

const unplannedRun = `{"system":"unplanned-failover","qos_ms":2000,"clients":16,"conns":4,"attempt_timeout_ms":1000,"dial_timeout_ms":1000,"steady_ms":1000,` +
	`"faults":[{"fault":"kill","requested_rounds":2,"rounds":2,"p50_ms":2200,"p99_ms":2600,"max_ms":2600,"min_ms":2200,"takeover_p50_ms":2100,"takeover_max_ms":2150,"commits":9000,"errors":0,"unknown_outcomes":0,"missing":0},` +
	`{"fault":"stop","requested_rounds":2,"rounds":2,"p50_ms":2300,"p99_ms":3100,"max_ms":3100,"min_ms":2300,"takeover_p50_ms":2050,"takeover_max_ms":2080,"commits":8000,"errors":0,"unknown_outcomes":1,"missing":0},` +
	`{"fault":"isolate","requested_rounds":2,"rounds":2,"p50_ms":2250,"p99_ms":2400,"max_ms":2400,"min_ms":2250,"takeover_p50_ms":2200,"takeover_max_ms":2210,"commits":8500,"errors":0,"unknown_outcomes":0,"missing":0}],` +
	`"rounds":[{"fault":"kill","round":1,"from":"A","to":"B","from_epoch":1,"to_epoch":2,"unavailable_ms":2200,"takeover_ms":2100,"heal_ms":2210,"healthy_ms":2900,"errors":0,"unknown_outcomes":0},` +
	`{"fault":"kill","round":2,"from":"B","to":"A","from_epoch":2,"to_epoch":3,"unavailable_ms":2600,"takeover_ms":2150,"heal_ms":2610,"healthy_ms":3000,"errors":0,"unknown_outcomes":0},` +
	`{"fault":"stop","round":1,"from":"A","to":"B","from_epoch":3,"to_epoch":4,"unavailable_ms":2300,"takeover_ms":2050,"heal_ms":2310,"healthy_ms":2800,"errors":0,"unknown_outcomes":1},` +
	`{"fault":"stop","round":2,"from":"B","to":"A","from_epoch":4,"to_epoch":5,"unavailable_ms":3100,"takeover_ms":2080,"heal_ms":3110,"healthy_ms":3600,"errors":0,"unknown_outcomes":0},` +
	`{"fault":"isolate","round":1,"from":"A","to":"B","from_epoch":5,"to_epoch":6,"unavailable_ms":2250,"takeover_ms":2200,"heal_ms":2260,"healthy_ms":2700,"errors":0,"unknown_outcomes":0},` +
	`{"fault":"isolate","round":2,"from":"B","to":"A","from_epoch":6,"to_epoch":7,"unavailable_ms":2400,"takeover_ms":2210,"heal_ms":2410,"healthy_ms":2750,"errors":0,"unknown_outcomes":0}],` +
	`"commits":25500,"errors":0,"unknown_outcomes":1,"missing":0}
`

// A run that stopped in the first stop round: a client error, a kill round over the bar, a write lost.
const badUnplanned = `{"system":"unplanned-failover","qos_ms":2000,"clients":16,"conns":4,"attempt_timeout_ms":1000,"dial_timeout_ms":1000,"steady_ms":1000,` +
	`"faults":[{"fault":"kill","requested_rounds":2,"rounds":2,"p50_ms":2200,"p99_ms":4500,"max_ms":4500,"min_ms":2200,"takeover_p50_ms":2100,"takeover_max_ms":2150,"commits":9000,"errors":1,"unknown_outcomes":0,"missing":1},` +
	`{"fault":"stop","requested_rounds":2,"rounds":0,"commits":100,"errors":0,"unknown_outcomes":0,"missing":0}],` +
	`"rounds":[{"fault":"kill","round":1,"from":"A","to":"B","from_epoch":1,"to_epoch":2,"unavailable_ms":2200,"takeover_ms":2100,"heal_ms":2210,"healthy_ms":2900,"errors":1,"unknown_outcomes":0},` +
	`{"fault":"kill","round":2,"from":"B","to":"A","from_epoch":2,"to_epoch":3,"unavailable_ms":4500,"takeover_ms":2150,"heal_ms":4510,"healthy_ms":5000,"errors":0,"unknown_outcomes":0}],` +
	`"commits":9100,"errors":1,"unknown_outcomes":0,"missing":1,"error_samples":["client 2: set ^UKill(\"k1\") in database BENCH: no primary found"],` +
	`"failure":"stop, round 1 of 2: B primary in an epoch after 3: not within 1m30s: B is backup in epoch 3 | ..."}
`

func TestReadUnplannedResults(t *testing.T) {
	res, err := readResults(strings.NewReader(fullRun + unplannedRun))
	if err != nil {
		t.Fatal(err)
	}
	if u := res.unplanned; u == nil || len(u.Faults) != 3 || len(u.Rounds) != 6 || u.UnknownOutcomes != 1 {
		t.Fatalf("unplanned result %+v", res.unplanned)
	}
	if _, err := readResults(strings.NewReader(fullRun + unplannedRun + unplannedRun)); err == nil {
		t.Fatal("a second unplanned result was accepted")
	}
	if _, err := readResults(strings.NewReader(fullRun + `{"system":"unplanned-failover","faults":3}` + "\n")); err == nil {
		t.Fatal("a malformed unplanned result was accepted")
	}
}

func TestJudgeUnplanned(t *testing.T) {
	tests := []struct {
		name       string
		text       string
		wantMet    []bool
		wantJudged []bool
	}{
		// Per fault p50 and p99, then: every round made, no client error, nothing lost.
		{name: "all met", text: fullRun + unplannedRun,
			wantMet:    []bool{true, true, true, true, true, true, true, true, true},
			wantJudged: []bool{true, true, true, true, true, true, true, true, true}},
		{name: "not measured", text: fullRun,
			wantMet:    []bool{false, false, false, false, false, false, false, false, false},
			wantJudged: []bool{false, false, false, false, false, false, false, false, false}},
		{name: "slow stop", text: fullRun + strings.Replace(unplannedRun, `"p50_ms":2300,"p99_ms":3100`, `"p50_ms":2600,"p99_ms":4100`, 1),
			wantMet:    []bool{true, true, false, false, true, true, true, true, true},
			wantJudged: []bool{true, true, true, true, true, true, true, true, true}},
		{name: "failing run", text: fullRun + badUnplanned,
			wantMet:    []bool{true, false, false, false, false, false, false},
			wantJudged: []bool{true, true, false, false, true, true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := readResults(strings.NewReader(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			got := judgeUnplanned(res.unplanned)
			checkTargets(t, "judgeUnplanned", got, tt.wantMet, tt.wantJudged)
		})
	}
}

func TestRenderUnplanned(t *testing.T) {
	tests := []struct {
		name       string
		text       string
		want       []string
		notWant    []string
		wantFailed bool
	}{
		{
			name: "healthy run",
			text: fullRun + unplannedRun,
			want: []string{
				"## Unplanned failover\n",
				"| primary killed (SIGKILL, restarted after the takeover) | 2 of 2 | 2200 | 2600 | 2200 | 2600 | 2100 | 2150 | 9000 | 0 | 0 | 0 |\n",
				"| stop | 2 | B → A | 4 → 5 | 3100 | 2080 | 3110 | 3600 | 0 | 0 |\n",
				"- MongoDB replica set elections: the median time before a new primary is elected should not typically exceed 12 s at the default settings;\n",
				"- Patroni: about 30 s at the default ttl of 30 s.\n",
				"| unplanned failover, primary isolated (links to the backup and the arbiter black-holed, healed after the takeover): unavailability p99 ≤ 4s with QoS 2s | 2400 ms over 2 rounds (max 2400 ms) | **PASS** |",
				"| unplanned failover: no acknowledged write is lost | 0 of 25500 missing on the final primary | **PASS** |",
			},
			notWant: []string{"FAIL", "MISS"},
		},
		{
			name: "failing run",
			text: fullRun + badUnplanned,
			want: []string{
				"> **FAIL**: the run did not complete: stop, round 1 of 2: B primary in an epoch after 3: not within 1m30s: B is backup in epoch 3 \\| ...\n",
				"> **FAIL**: 1 client calls failed; the first distinct errors: client 2: set ^UKill(\"k1\") in database BENCH: no primary found\n",
				"> **FAIL**: 1 acknowledged writes are missing on the final primary\n",
				"| primary stopped (SIGSTOP, SIGCONT after the takeover) | 0 of 2 | 0 | 0 | 0 | 0 | 0 | 0 | 100 | 0 | 0 | 0 |\n",
				"unavailability p99 ≤ 4s with QoS 2s | 4500 ms over 2 rounds (max 4500 ms) | **MISS** |",
				"| unplanned failover: after every fault the other member takes over in a higher epoch and the mirror heals | 2 of 4 rounds: stop, round 1 of 2",
				"| unplanned failover: no acknowledged write is lost | 1 of 9100 missing on the final primary | **FAIL** |",
			},
			wantFailed: true,
		},
		{
			name:    "not measured",
			text:    fullRun,
			want:    []string{"| unplanned failover: no acknowledged write is lost | not measured | **NOT MEASURED** |"},
			notWant: []string{"## Unplanned failover"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := readResults(strings.NewReader(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			writeUnplannedMethod(&b, res.unplanned)
			writeUnplanned(&b, res.unplanned)
			targets := judgeUnplanned(res.unplanned)
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
