package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/mirrorkit/mirrorkit/bench/internal/facts"
)

// Operations measured.
const (
	opBackup  = "backup"
	opRestore = "restore"
)

// measurement is one timed operation of one system.
type measurement struct {
	name    string // as measure --name gives it
	op      string
	label   string
	migrate bool // a run of the migrate binary: its peak RSS is judged
}

// measurements are the report's rows, in order. Each must have run at least once.
var measurements = []measurement{
	{"mirrorkit-backup-dir", opBackup, "mirrorkit `migrate backup` → directory", true},
	{"mirrorkit-backup-s3", opBackup, "mirrorkit `migrate backup` → MinIO", true},
	{"mirrorkit-backup-dir-level1", opBackup, "mirrorkit `migrate backup --level 1` → directory", true},
	{"mirrorkit-backup-dir-good", opBackup, "mirrorkit `migrate backup` → directory, from a member run with `--db-compression good`", true},
	{"tar-zstd", opBackup, "`tar -cf - | zstd -3 -T2` (reference)", false},
	{"pgbackrest-backup", opBackup, "pgBackRest `backup --type=full`", false},
	{"mirrorkit-restore-dir", opRestore, "mirrorkit `migrate restore --dir` from the directory", true},
	{"mirrorkit-restore-s3", opRestore, "mirrorkit `migrate restore --dir` from MinIO", true},
	{"mirrorkit-restore-dir-level1", opRestore, "mirrorkit `migrate restore --dir` of the `--level 1` backup", true},
	{"mirrorkit-restore-dir-good", opRestore, "mirrorkit `migrate restore --dir` of the backup of the `--db-compression good` member", true},
	{"mirrorkit-restore-member", opRestore, "mirrorkit `migrate restore --to` a member, from the directory", true},
	{"zstd-tar", opRestore, "`zstd -d -T2 | tar -x` (reference)", false},
	{"pgbackrest-restore", opRestore, "pgBackRest `restore` into an empty PGDATA", false},
}

// The baselines of each operation, measured in the same run.
var (
	peerOf      = map[string]string{opBackup: "pgbackrest-backup", opRestore: "pgbackrest-restore"}
	referenceOf = map[string]string{opBackup: "tar-zstd", opRestore: "zstd-tar"}
)

// goal is a throughput target: ours at least min times the baseline's.
type goal struct {
	ours, baseline string
	min            float64
}

var goals = []goal{
	{"mirrorkit-backup-dir", "pgbackrest-backup", 1.5},
	{"mirrorkit-backup-s3", "pgbackrest-backup", 1.5},
	{"mirrorkit-backup-dir", "tar-zstd", 0.8},
	{"mirrorkit-backup-s3", "tar-zstd", 0.8},
	{"mirrorkit-restore-dir", "pgbackrest-restore", 2},
	{"mirrorkit-restore-s3", "pgbackrest-restore", 2},
}

// maxMigrateRSS is the memory target: migrate's peak resident set at its defaults.
const maxMigrateRSS = 256 << 20

// system is a tool whose input and stored sizes are reported.
type system struct{ name, label string }

var systems = []system{
	{"mirrorkit", "mirrorkit (database directory; one backup in the directory target)"},
	{"mirrorkit-level1", "mirrorkit at `--level 1` (database directory; one backup in the directory target)"},
	{"mirrorkit-good", "mirrorkit, member run with `--db-compression good` (its database directory; one backup)"},
	{"tar-zstd", "`tar | zstd -3` (copy of the database directory; the .tar.zst)"},
	{"pgbackrest", "pgBackRest (PGDATA; one full backup in the repository, WAL archive excluded)"},
}

func measurementNamed(name string) (measurement, bool) {
	i := slices.IndexFunc(measurements, func(m measurement) bool { return m.name == name })
	if i < 0 {
		return measurement{}, false
	}
	return measurements[i], true
}

func systemNamed(name string) (system, bool) {
	i := slices.IndexFunc(systems, func(s system) bool { return s.name == name })
	if i < 0 {
		return system{}, false
	}
	return systems[i], true
}

// ErrMissing marks a measurement or size the run did not record.
var ErrMissing = errors.New("missing result")

// summary is one measurement over its rounds.
type summary struct {
	measurement
	best    RunResult // the fastest round
	rounds  int
	peakRSS int64 // the largest of all rounds
	dropped int   // rounds that ran with the page cache dropped
}

// summarize keeps the fastest round of each measurement and the largest peak RSS of any round.
func summarize(runs []RunResult) (map[string]*summary, error) {
	out := map[string]*summary{}
	for _, r := range runs {
		s := out[r.Name]
		if s == nil {
			m, _ := measurementNamed(r.Name)
			s = &summary{measurement: m, best: r}
			out[r.Name] = s
		}
		s.rounds++
		if r.Seconds < s.best.Seconds {
			s.best = r
		}
		s.peakRSS = max(s.peakRSS, r.MaxRSSBytes)
		if r.CachesDropped {
			s.dropped++
		}
	}
	for _, m := range measurements {
		if out[m.name] == nil {
			return nil, fmt.Errorf("measurement %s: %w", m.name, ErrMissing)
		}
	}
	return out, nil
}

// target is one line of the targets table.
type target struct {
	goal, measured string
	met            bool
}

// judge evaluates every target.
func judge(sums map[string]*summary) []target {
	var out []target
	for _, g := range goals {
		ours, base := sums[g.ours], sums[g.baseline]
		r := base.best.Seconds / ours.best.Seconds
		out = append(out, target{
			goal:     fmt.Sprintf("%s ≥ %g× %s", ours.label, g.min, base.label),
			measured: fmt.Sprintf("%.2f× (%.1f s vs %.1f s)", r, ours.best.Seconds, base.best.Seconds),
			met:      r >= g.min,
		})
	}
	var peak *summary
	for _, m := range measurements {
		if s := sums[m.name]; m.migrate && (peak == nil || s.peakRSS > peak.peakRSS) {
			peak = s
		}
	}
	out = append(out, target{
		goal:     fmt.Sprintf("peak RSS of `migrate` at its defaults ≤ %d MiB (largest of all its runs)", maxMigrateRSS>>20),
		measured: fmt.Sprintf("%.0f MiB (%s)", mib(peak.peakRSS), peak.label),
		met:      peak.peakRSS <= maxMigrateRSS,
	})
	return out
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// reportCmd writes bench/backup.md.
type reportCmd struct {
	Results        string   `required:"" type:"existingfile" help:"The result lines of the run."`
	Out            string   `required:"" help:"Markdown file to write."`
	Command        string   `required:"" help:"The command that reproduces the run."`
	Fact           []string `sep:"none" help:"A line of the environment table, as \"name=value\" (repeatable, kept in order)."`
	PgbackrestConf string   `type:"existingfile" help:"pgBackRest's configuration file, shown in the report."`
}

func (c *reportCmd) Run() error {
	f, err := os.Open(c.Results)
	if err != nil {
		return fmt.Errorf("open results: %w", err)
	}
	res, err := ReadResults(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("results %s: %w", c.Results, err)
	}
	facts, err := facts.Parse(c.Fact)
	if err != nil {
		return err
	}
	var conf string
	if c.PgbackrestConf != "" {
		b, err := os.ReadFile(c.PgbackrestConf)
		if err != nil {
			return fmt.Errorf("pgBackRest configuration: %w", err)
		}
		conf = string(b)
	}
	doc, targets, err := render(res, facts, c.Command, conf)
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.Out, []byte(doc), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return printTargets(os.Stdout, targets)
}

func printTargets(w io.Writer, targets []target) error {
	for _, t := range targets {
		verdict := "MISS"
		if t.met {
			verdict = "PASS"
		}
		if _, err := fmt.Fprintf(w, "%s  %s: %s\n", verdict, t.goal, t.measured); err != nil {
			return err
		}
	}
	return nil
}
