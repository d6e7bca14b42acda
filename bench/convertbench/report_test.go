package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/mirrorkit/mirrorkit/bench/internal/facts"
)

const (
	setupLine = `{"kind":"setup","databases":["ORDERS","STOCK"],"rows":131070,"logical_bytes":2147500000,"value_size":16384,` +
		`"load_seconds":80.5,"catch_up_seconds":20.1,"source_db_bytes":1500000000,"source_journal_bytes":2200000000,"caches_dropped":true}`
	inPlaceLine = `{"kind":"round","mode":"in-place","round":1,"command":"migrate convert-shadow","seconds":10,"cpu_seconds":0.5,` +
		`"max_rss_bytes":31457280,"probe":{"databases":["ORDERS","STOCK"],"writers":4,"settle_seconds":3,"writes":9000,"errors":0,` +
		`"before":{"seconds":3,"writes":3000,"errors":0,"max_pause_seconds":0.02,"pause_start_seconds":-1,"slowest_write_seconds":0.01},` +
		`"during":{"seconds":10,"writes":3000,"errors":0,"max_pause_seconds":0.2,"pause_start_seconds":4,"slowest_write_seconds":0.15},` +
		`"read_from":"127.0.0.51:1","read_back":9000,"missing":0},"bytes_served":0,"steps":{"join-in-place":4,"create-mirror":1},` +
		`"step_seconds":{"join-in-place":8.5,"create-mirror":0.5},` +
		`"hashes":{"ORDERS":"f92b5e340481058f1b87fce1cbff9c63","STOCK":"0123456789abcdef0123"}}`
	copyLine = `{"kind":"round","mode":"copy","round":1,"command":"migrate convert-shadow --force-copy","seconds":25,"cpu_seconds":0.7,` +
		`"max_rss_bytes":41943040,"probe":{"databases":["ORDERS","STOCK"],"writers":4,"settle_seconds":3,"writes":20000,"errors":2,` +
		`"error_samples":["writer 1 on ORDERS: no primary found"],` +
		`"before":{"seconds":3,"writes":3000,"errors":0,"max_pause_seconds":0.03,"pause_start_seconds":-1,"slowest_write_seconds":0.01},` +
		`"during":{"seconds":25,"writes":14000,"errors":2,"max_pause_seconds":0.9,"pause_start_seconds":12,"slowest_write_seconds":0.8},` +
		`"read_from":"127.0.0.51:1","read_back":20000,"missing":0},"bytes_served":3221225472,"steps":{"copy":4,"discard-copy":4,"backup-ish":1},` +
		`"step_seconds":{"copy":20,"discard-copy":0.4,"backup-ish":1},` +
		`"hashes":{"ORDERS":"f92b5e340481058f1b87fce1cbff9c63","STOCK":"0123456789abcdef0123"}}`
)

func TestReadResults(t *testing.T) {
	good := strings.Join([]string{inPlaceLine, copyLine, setupLine}, "\n")
	res, err := ReadResults(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rounds) != 2 || res.Setup.Rows != 131070 || *res.Rounds[1].BytesServed != 3<<30 || res.Rounds[0].Steps["join-in-place"] != 4 {
		t.Fatalf("ReadResults = %+v", res)
	}
	bad := map[string]string{
		"no setup":         inPlaceLine + "\n" + copyLine,
		"two setups":       good + "\n" + setupLine,
		"no copy round":    setupLine + "\n" + inPlaceLine,
		"unknown kind":     good + "\n" + `{"kind":"other"}`,
		"unknown field":    strings.Replace(good, `"rows":`, `"extra":1,"rows":`, 1),
		"unknown mode":     good + "\n" + strings.Replace(copyLine, `"mode":"copy"`, `"mode":"rsync"`, 1),
		"not completed":    setupLine + "\n" + copyLine + "\n" + strings.Replace(inPlaceLine, `"bytes_served":0,`, "", 1),
		"lost write":       setupLine + "\n" + copyLine + "\n" + strings.Replace(inPlaceLine, `"missing":0`, `"missing":1`, 1),
		"fewer read back":  setupLine + "\n" + copyLine + "\n" + strings.Replace(inPlaceLine, `"read_back":9000`, `"read_back":8999`, 1),
		"no time":          setupLine + "\n" + copyLine + "\n" + strings.Replace(inPlaceLine, `"seconds":10,"cpu`, `"seconds":0,"cpu`, 1),
		"impossible setup": strings.Replace(good, `"rows":131070`, `"rows":0`, 1),
		"not JSON":         good + "\nnot json",
		"negative bytes":   setupLine + "\n" + inPlaceLine + "\n" + strings.Replace(copyLine, `"bytes_served":3221225472`, `"bytes_served":-1`, 1),
		"round zero":       setupLine + "\n" + copyLine + "\n" + strings.Replace(inPlaceLine, `"round":1`, `"round":0`, 1),
		"no plan steps": setupLine + "\n" + copyLine + "\n" + strings.Replace(inPlaceLine, `"steps":{"join-in-place":4,"create-mirror":1},`+
			`"step_seconds":{"join-in-place":8.5,"create-mirror":0.5},`, "", 1),
		"negative catch-up":     strings.Replace(good, `"catch_up_seconds":20.1`, `"catch_up_seconds":-1`, 1),
		"no databases in setup": strings.Replace(good, `"databases":["ORDERS","STOCK"],"rows"`, `"databases":[],"rows"`, 1),
	}
	for name, in := range bad {
		if _, err := ReadResults(strings.NewReader(in)); !errors.Is(err, ErrBadResults) {
			t.Errorf("%s: ReadResults error = %v, want ErrBadResults", name, err)
		}
	}
}

func TestRender(t *testing.T) {
	res, err := ReadResults(strings.NewReader(setupLine + "\n" + inPlaceLine + "\n" + copyLine))
	if err != nil {
		t.Fatal(err)
	}
	doc, summary := render(res, []facts.Fact{{Name: "CPU", Value: "two cores"}, {Name: "Load average (1, 5, 15 min) at the start", Value: "1.0 2.0 3.0"}},
		"BENCH_CONVERT_GIB=2 ./scripts/bench-convert.sh")
	for _, want := range []string{
		"## Shadow conversion",
		"Command: `BENCH_CONVERT_GIB=2 ./scripts/bench-convert.sh`",
		"| CPU | two cores |",
		"| Load average (1, 5, 15 min) at the start | 1.0 2.0 3.0 |",
		"131070 rows, 2.00 GiB",
		// in place: 10 s, 200 ms pause; copy: 25 s (2.50×), 900 ms (4.50×), 3072 MiB copied.
		"| in place (default) | 10.0 | 1.00× | 200 | 1.00× | 20 | 150 | 3000 | 0 | 0 | 0.5 | 30 |",
		"| copy from the source (`--force-copy`) | 25.0 | 2.50× | 900 | 4.50× | 30 | 800 | 14000 | 2 | 3072 | 0.7 | 40 |",
		"| step | in place (default) | copy from the source (`--force-copy`) |\n|---|---|---|\n" +
			"| create-mirror | 0.5 (1) | – |\n| join-in-place | 8.5 (4) | – |\n| discard-copy | – | 0.4 (4) |\n" +
			"| copy | – | 20.0 (4) |\n| backup-ish | – | 1.0 (1) |\n",
		"**2.50×** the wall time of the in-place conversion (25.0 s against 10.0 s)",
		"**4.50×** the in-place one (900 ms against 200 ms)",
		"For scale, the longest pause with no conversion running was 20 ms before the in-place conversion and 30 ms before the copy conversion.",
		"no target",
		"each of the 29000 writes",
		"ORDERS f92b5e340481058f…",
		"- `writer 1 on ORDERS: no primary found`",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("report lacks %q:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "staged") && strings.Contains(doc, "| staged") {
		t.Error("report has a staged row though no staged round ran")
	}
	if strings.Contains(doc, "Every round, in the order run") {
		t.Error("report lists the rounds though each mode ran once")
	}
	if !strings.Contains(summary, "2.50×") || strings.Contains(summary, "\n") {
		t.Errorf("summary = %q, want the comparison on one line", summary)
	}
}

func TestRenderRounds(t *testing.T) {
	second := strings.Replace(strings.Replace(inPlaceLine, `"round":1`, `"round":2`, 1), `"seconds":10,"cpu`, `"seconds":8,"cpu`, 1)
	res, err := ReadResults(strings.NewReader(strings.Join([]string{setupLine, inPlaceLine, copyLine, second}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := render(res, nil, "cmd")
	if !strings.Contains(doc, "Every round, in the order run") || !strings.Contains(doc, "| in place (default) | 2 | 8.0 |") ||
		!strings.Contains(doc, "(25.0 s against 8.0 s)") {
		t.Errorf("report with two rounds:\n%s", doc)
	}
}

func TestRatio(t *testing.T) {
	if got := ratio(3, 0); got != "–" {
		t.Errorf("ratio(3, 0) = %q", got)
	}
	if got := ratio(3, 2); got != "1.50×" {
		t.Errorf("ratio(3, 2) = %q", got)
	}
}
