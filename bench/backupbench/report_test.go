package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mirrorkit/mirrorkit/bench/internal/facts"
)

// testSeconds are the fastest rounds of a complete run: mirrorkit's directory backup is exactly 1.5× pgBackRest's
// throughput (a boundary PASS) and its MinIO backup below the tar reference's 0.8× (a MISS).
var testSeconds = map[string]float64{
	"mirrorkit-backup-dir":         20,
	"mirrorkit-backup-s3":          40,
	"mirrorkit-backup-dir-level1":  15,
	"mirrorkit-backup-dir-good":    8,
	"tar-zstd":                     25,
	"pgbackrest-backup":            30,
	"mirrorkit-restore-dir":        10,
	"mirrorkit-restore-s3":         16,
	"mirrorkit-restore-dir-level1": 9,
	"mirrorkit-restore-dir-good":   5,
	"mirrorkit-restore-member":     12,
	"zstd-tar":                     8,
	"pgbackrest-restore":           30,
}

const testLogical = 2_000_000_000

// testResults is a complete run of two rounds; the second round is slower by a second and uses more memory.
func testResults(tb testing.TB) *Results {
	tb.Helper()
	res := &Results{Load: LoadResult{Kind: kindLoad, Rows: testLogical / RowSize, LogicalBytes: testLogical, ValueSize: ValueSize, Seconds: 60}}
	for round := 1; round <= 2; round++ {
		for _, m := range measurements {
			res.Runs = append(res.Runs, RunResult{
				Kind: kindRun, Name: m.name, Round: round, Seconds: testSeconds[m.name] + float64(round-1),
				MaxRSSBytes: int64(round) * 100 << 20, CPUSeconds: float64(round) * 2.5, CachesDropped: true, Command: m.name,
			})
		}
	}
	for _, s := range systems {
		res.Sizes = append(res.Sizes, SizeResult{Kind: kindSize, System: s.name, InputBytes: 1 << 30, StoredBytes: 500 << 20})
	}
	return res
}

// lines encodes results as the script collects them.
func lines(tb testing.TB, res *Results) string {
	tb.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	items := []any{res.Load}
	for _, r := range res.Runs {
		items = append(items, r)
	}
	for _, s := range res.Sizes {
		items = append(items, s)
	}
	for _, it := range items {
		if err := enc.Encode(it); err != nil {
			tb.Fatal(err)
		}
	}
	return b.String()
}

func TestReadResultsRoundTrip(t *testing.T) {
	want := testResults(t)
	got, err := ReadResults(strings.NewReader("\n" + lines(t, want) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Load != want.Load || len(got.Runs) != len(want.Runs) || len(got.Sizes) != len(want.Sizes) || got.Runs[3] != want.Runs[3] {
		t.Fatalf("read back %+v, want %+v", got, want)
	}
}

func TestReadResultsRejectsBadLines(t *testing.T) {
	load := `{"kind":"load","rows":10,"logical_bytes":163950,"value_size":16384,"seconds":1}`
	tests := map[string]string{
		"no load":                `{"kind":"run","name":"tar-zstd","round":1,"seconds":1,"max_rss_bytes":1,"caches_dropped":true,"command":"x"}`,
		"two loads":              load + "\n" + load,
		"load of no rows":        `{"kind":"load","rows":0,"logical_bytes":0,"value_size":16384,"seconds":1}`,
		"load smaller than rows": `{"kind":"load","rows":10,"logical_bytes":100,"value_size":16384,"seconds":1}`,
		"unknown kind":           load + "\n" + `{"kind":"walk"}`,
		"not JSON":               load + "\n" + `run tar-zstd 1s`,
		"unknown field":          load + "\n" + `{"kind":"run","name":"tar-zstd","round":1,"seconds":1,"max_rss_bytes":1,"caches_dropped":true,"command":"x","extra":1}`,
		"unknown measurement":    load + "\n" + `{"kind":"run","name":"rsync","round":1,"seconds":1,"max_rss_bytes":1,"caches_dropped":true,"command":"x"}`,
		"zero seconds":           load + "\n" + `{"kind":"run","name":"tar-zstd","round":1,"seconds":0,"max_rss_bytes":1,"caches_dropped":true,"command":"x"}`,
		"round zero":             load + "\n" + `{"kind":"run","name":"tar-zstd","round":0,"seconds":1,"max_rss_bytes":1,"caches_dropped":true,"command":"x"}`,
		"negative CPU time":      load + "\n" + `{"kind":"run","name":"tar-zstd","round":1,"seconds":1,"max_rss_bytes":1,"cpu_seconds":-1,"caches_dropped":true,"command":"x"}`,
		"negative RSS":           load + "\n" + `{"kind":"run","name":"tar-zstd","round":1,"seconds":1,"max_rss_bytes":-1,"caches_dropped":true,"command":"x"}`,
		"unknown system":         load + "\n" + `{"kind":"size","system":"rsync","input_bytes":1,"stored_bytes":1}`,
		"empty stored size":      load + "\n" + `{"kind":"size","system":"pgbackrest","input_bytes":1,"stored_bytes":0}`,
		"two objects a line":     load + "\n" + `{"kind":"size","system":"pgbackrest","input_bytes":1,"stored_bytes":1}{}`,
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ReadResults(strings.NewReader(text)); !errors.Is(err, ErrBadResults) {
				t.Fatalf("error %v, want ErrBadResults", err)
			}
		})
	}
}

func FuzzReadResults(f *testing.F) {
	f.Add(lines(f, testResults(f)))
	f.Add(`{"kind":"load","rows":1,"logical_bytes":16395,"value_size":16384,"seconds":0}`)
	f.Add(`{"kind":"size","system":"tar-zstd","input_bytes":1,"stored_bytes":1}`)
	f.Fuzz(func(t *testing.T, text string) {
		res, err := ReadResults(strings.NewReader(text))
		if err != nil {
			return
		}
		if res.Load.Rows <= 0 || res.Load.LogicalBytes < res.Load.Rows {
			t.Fatalf("accepted load %+v", res.Load)
		}
		for _, r := range res.Runs {
			if _, ok := measurementNamed(r.Name); !ok || !(r.Seconds > 0) {
				t.Fatalf("accepted run %+v", r)
			}
		}
		// Whatever was accepted, rendering must not fail other than for a missing result.
		if _, _, err := render(res, nil, "cmd", ""); err != nil && !errors.Is(err, ErrMissing) {
			t.Fatalf("render: %v", err)
		}
	})
}

func TestSummarizeKeepsTheFastestRoundAndTheLargestRSS(t *testing.T) {
	sums, err := summarize(testResults(t).Runs)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range measurements {
		s := sums[m.name]
		if s.best.Seconds != testSeconds[m.name] || s.best.Round != 1 || s.peakRSS != 200<<20 || s.rounds != 2 || s.dropped != 2 {
			t.Errorf("%s: best %v s in round %d, peak RSS %d, %d rounds, %d dropped", m.name, s.best.Seconds, s.best.Round, s.peakRSS, s.rounds, s.dropped)
		}
	}
}

func TestSummarizeWantsEveryMeasurement(t *testing.T) {
	runs := testResults(t).Runs
	runs = runs[:len(runs)-1] // pgbackrest-restore's second round: still measured
	if _, err := summarize(runs); err != nil {
		t.Fatalf("one round of a measurement is enough: %v", err)
	}
	var without []RunResult
	for _, r := range runs {
		if r.Name != "zstd-tar" {
			without = append(without, r)
		}
	}
	if _, err := summarize(without); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "zstd-tar") {
		t.Fatalf("error %v, want zstd-tar missing", err)
	}
}

func TestJudge(t *testing.T) {
	res := testResults(t)
	sums, err := summarize(res.Runs)
	if err != nil {
		t.Fatal(err)
	}
	got := judge(sums)
	want := []struct {
		prefix, measured string
		met              bool
	}{
		{"mirrorkit `migrate backup` → directory ≥ 1.5× pgBackRest", "1.50× (20.0 s vs 30.0 s)", true},
		{"mirrorkit `migrate backup` → MinIO ≥ 1.5× pgBackRest", "0.75× (40.0 s vs 30.0 s)", false},
		{"mirrorkit `migrate backup` → directory ≥ 0.8× `tar", "1.25× (20.0 s vs 25.0 s)", true},
		{"mirrorkit `migrate backup` → MinIO ≥ 0.8× `tar", "0.62× (40.0 s vs 25.0 s)", false},
		{"mirrorkit `migrate restore --dir` from the directory ≥ 2× pgBackRest", "3.00× (10.0 s vs 30.0 s)", true},
		{"mirrorkit `migrate restore --dir` from MinIO ≥ 2× pgBackRest", "1.88× (16.0 s vs 30.0 s)", false},
		{"peak RSS of `migrate` at its defaults ≤ 256 MiB", "200 MiB (mirrorkit `migrate backup` → directory)", true},
	}
	if len(got) != len(want) {
		t.Fatalf("%d targets, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i].goal, w.prefix) || got[i].measured != w.measured || got[i].met != w.met {
			t.Errorf("target %d = %+v, want %q %q met=%v", i, got[i], w.prefix, w.measured, w.met)
		}
	}

	// Memory over the target in any migrate run is a MISS naming that run; a reference's memory does not count.
	for i, r := range res.Runs {
		switch r.Name {
		case "mirrorkit-restore-s3":
			res.Runs[i].MaxRSSBytes = 300 << 20
		case "tar-zstd":
			res.Runs[i].MaxRSSBytes = 900 << 20
		}
	}
	sums, err = summarize(res.Runs)
	if err != nil {
		t.Fatal(err)
	}
	rss := judge(sums)[len(want)-1]
	if rss.met || rss.measured != "300 MiB (mirrorkit `migrate restore --dir` from MinIO)" {
		t.Fatalf("memory target %+v, want a MISS at 300 MiB in the MinIO restore", rss)
	}
}

func TestRender(t *testing.T) {
	res := testResults(t)
	doc, targets, err := render(res, []facts.Fact{{Name: "CPU", Value: "two cores"}}, "./scripts/bench-backup.sh", "[global]\ncompress-type=zst\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != len(goals)+1 {
		t.Fatalf("%d targets", len(targets))
	}
	for _, want := range []string{
		"## Backup and restore\n",
		"Command: `./scripts/bench-backup.sh`",
		"| CPU | two cores |",
		"Each measurement ran 2 times",
		"the page cache was dropped before every run",
		// 2e9 bytes in 20 s: 100 MB/s; pgBackRest's 30 s makes 1.50×, the reference's 25 s 1.25×.
		"| backup | mirrorkit `migrate backup` → directory | 20.0 | 100 | 1.50× | 1.25× | 2.5 | 200 |",
		"| backup | pgBackRest `backup --type=full` | 30.0 | 67 | 1× | 0.83× | 2.5 | 200 |",
		"| restore | `zstd -d -T2 \\| tar -x` (reference) | 8.0 | 250 | 3.75× | 1× | 2.5 | 200 |",
		// 2e9 logical bytes over 500 MiB stored.
		"| 1024 | 500 | 3.81 |",
		"| **PASS** |",
		"| **MISS** |",
		"```ini\n[global]\ncompress-type=zst\n```",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("report lacks %q:\n%s", want, doc)
		}
	}

	res.Sizes = res.Sizes[1:]
	if _, _, err := render(res, nil, "x", ""); !errors.Is(err, ErrMissing) {
		t.Fatalf("render without mirrorkit's sizes: %v, want ErrMissing", err)
	}
}

func TestRenderStatesWhenCachesWereNotDropped(t *testing.T) {
	res := testResults(t)
	res.Runs[0].CachesDropped = false
	doc, _, err := render(res, nil, "x", "")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("dropped before %d of the %d runs", len(res.Runs)-1, len(res.Runs)); !strings.Contains(doc, want) {
		t.Fatalf("report lacks %q", want)
	}
}
