// Command benchreport writes BENCHMARKS.md from the summaries the benchmark programs printed in one run of
// scripts/bench.sh (one JSON line each): the method, the machine, the results per client count as ratios against the
// baselines measured in the same run, and the targets with PASS or MISS. It prints the results and targets to stdout too.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/mirrorkit/mirrorkit/bench/internal/facts"
	"github.com/mirrorkit/mirrorkit/bench/internal/latency"
	"github.com/mirrorkit/mirrorkit/bench/internal/mirrorresult"
)

type cli struct {
	Results       string        `required:"" type:"existingfile" help:"File of JSON summaries, one a line."`
	Out           string        `required:"" help:"Markdown file to write."`
	Fact          []string      `sep:"none" help:"A line of the environment table, as \"name=value\" (repeatable, kept in order)."`
	Duration      time.Duration `required:"" help:"Measured duration of each point."`
	Warmup        time.Duration `required:"" help:"Warmup before each point."`
	Conns         int           `required:"" help:"Connections in the mirrorkit client's pool."`
	QoS           time.Duration `name:"qos" default:"2s" help:"QoS timeout of the mirrors the run made."`
	PgbenchScript string        `required:"" type:"existingfile" help:"The pgbench custom script that was run."`
	PgbenchArgs   string        `required:"" help:"The pgbench options used, with N for the client count."`
	TargetClients int           `default:"64" help:"Client count the targets are judged at."`
	Include       []string      `type:"existingfile" help:"A Markdown file appended to the report as it is (a result recorded by another run, e.g. bench/longfaults.md); repeatable."`
}

func main() {
	var c cli
	kong.Parse(&c, kong.Name("benchreport"), kong.Description("Write BENCHMARKS.md from one benchmark run's summaries."))
	if err := c.run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func (c *cli) run() error {
	f, err := os.Open(c.Results)
	if err != nil {
		return fmt.Errorf("open results: %w", err)
	}
	res, err := readResults(f)
	if closeErr := f.Close(); err == nil && closeErr != nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("results %s: %w", c.Results, err)
	}
	script, err := os.ReadFile(c.PgbenchScript)
	if err != nil {
		return fmt.Errorf("read pgbench script: %w", err)
	}
	env, err := facts.Parse(c.Fact)
	if err != nil {
		return err
	}
	var doc strings.Builder
	writeHeader(&doc, c, res, env, string(script))
	var tables strings.Builder
	writeResults(&tables, res)
	writeMirroring(&tables, res)
	writeUnplanned(&tables, res.unplanned)
	targets := append(judge(res, c.TargetClients), judgeMirroring(res, c.TargetClients)...)
	targets = append(targets, judgeUnplanned(res.unplanned)...)
	writeTargets(&tables, targets)
	for _, path := range c.Include {
		part, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("include: %w", err)
		}
		tables.WriteString("\n")
		tables.Write(part)
	}
	doc.WriteString(tables.String())
	if err := os.WriteFile(c.Out, []byte(doc.String()), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if _, err := io.WriteString(os.Stdout, tables.String()); err != nil {
		return err
	}
	return failures(targets, c.Out)
}

// ErrFailed is returned, after the report is written, when the run found the product misbehaving.
var ErrFailed = errors.New("benchmark found failures")

// failures names every correctness goal the run did not meet.
func failures(targets []target, out string) error {
	var failed []string
	for _, t := range targets {
		if t.correctness && t.judged && !t.met {
			failed = append(failed, fmt.Sprintf("%s: %s", t.goal, t.measured))
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("%w (see %s):\n  %s", ErrFailed, out, strings.Join(failed, "\n  "))
}

// System names of the summaries a run produces, besides the fsync and fdatasync baselines.
const (
	systemMirrorkit  = "mirrorkit"
	systemPostgreSQL = "postgresql"
	systemBackup     = "mirrorkit-backup" // mirrorkit with an Active backup
	systemStandby    = "postgresql-sync"  // PostgreSQL with a synchronous standby
)

// results holds one run's summaries: the two systems by client count, the fsync baseline and, when the run measured it,
// the stricter preallocated-fdatasync baseline; and the mirroring results: both systems with a synchronous copy by
// client count, the planned failovers and the async's lag; and the unplanned failovers.
type results struct {
	clients    []int
	mirrorkit  map[int]latency.Summary
	postgresql map[int]latency.Summary
	fsync      latency.Summary
	fdatasync  *latency.Summary
	backup     map[int]latency.Summary
	standby    map[int]latency.Summary
	failover   *mirrorresult.Failover
	lag        *mirrorresult.AsyncLag
	unplanned  *mirrorresult.Unplanned
}

// ErrMissingResult is returned when a run lacks a figure every report needs.
var ErrMissingResult = errors.New("missing result")

func readResults(r io.Reader) (results, error) {
	res := results{mirrorkit: map[int]latency.Summary{}, postgresql: map[int]latency.Summary{},
		backup: map[int]latency.Summary{}, standby: map[int]latency.Summary{}}
	haveFsync := false
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20) // a failover result lists every round
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var probe struct {
			System string `json:"system"`
		}
		if err := json.Unmarshal(sc.Bytes(), &probe); err != nil {
			return results{}, fmt.Errorf("line %d: %w", line, err)
		}
		switch probe.System {
		case mirrorresult.SystemFailover:
			if res.failover != nil {
				return results{}, fmt.Errorf("line %d: second failover result", line)
			}
			res.failover = &mirrorresult.Failover{}
			if err := json.Unmarshal(sc.Bytes(), res.failover); err != nil {
				return results{}, fmt.Errorf("line %d: %w", line, err)
			}
			continue
		case mirrorresult.SystemAsyncLag:
			if res.lag != nil {
				return results{}, fmt.Errorf("line %d: second async lag result", line)
			}
			res.lag = &mirrorresult.AsyncLag{}
			if err := json.Unmarshal(sc.Bytes(), res.lag); err != nil {
				return results{}, fmt.Errorf("line %d: %w", line, err)
			}
			continue
		case mirrorresult.SystemUnplanned:
			if res.unplanned != nil {
				return results{}, fmt.Errorf("line %d: second unplanned failover result", line)
			}
			res.unplanned = &mirrorresult.Unplanned{}
			if err := json.Unmarshal(sc.Bytes(), res.unplanned); err != nil {
				return results{}, fmt.Errorf("line %d: %w", line, err)
			}
			continue
		}
		var s latency.Summary
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return results{}, fmt.Errorf("line %d: %w", line, err)
		}
		var into map[int]latency.Summary
		switch s.System {
		case "fsync":
			res.fsync, haveFsync = s, true
			continue
		case "fdatasync":
			res.fdatasync = &s
			continue
		case systemMirrorkit:
			into = res.mirrorkit
		case systemPostgreSQL:
			into = res.postgresql
		case systemBackup:
			into = res.backup
		case systemStandby:
			into = res.standby
		default:
			return results{}, fmt.Errorf("line %d: unknown system %q", line, s.System)
		}
		if _, dup := into[s.Clients]; dup {
			return results{}, fmt.Errorf("line %d: second %s result at %d clients", line, s.System, s.Clients)
		}
		if s.System == systemMirrorkit || s.System == systemPostgreSQL {
			if _, seen := res.mirrorkit[s.Clients]; !seen {
				if _, seen := res.postgresql[s.Clients]; !seen {
					res.clients = append(res.clients, s.Clients)
				}
			}
		}
		into[s.Clients] = s
	}
	if err := sc.Err(); err != nil {
		return results{}, fmt.Errorf("read: %w", err)
	}
	if !haveFsync {
		return results{}, fmt.Errorf("fsync baseline: %w", ErrMissingResult)
	}
	for _, n := range res.clients {
		for name, m := range map[string]map[int]latency.Summary{"mirrorkit": res.mirrorkit, "postgresql": res.postgresql} {
			if _, ok := m[n]; !ok {
				return results{}, fmt.Errorf("%s at %d clients: %w", name, n, ErrMissingResult)
			}
		}
	}
	// A system with a synchronous copy is compared with the same system alone.
	for name, m := range map[string]map[int]latency.Summary{systemBackup: res.backup, systemStandby: res.standby} {
		for n := range m {
			if !slices.Contains(res.clients, n) {
				return results{}, fmt.Errorf("%s at %d clients, without mirrorkit and postgresql at %d clients: %w", name, n, n, ErrMissingResult)
			}
		}
	}
	return res, nil
}

// target is one goal from the benchmark's brief, judged on this run's figures.
type target struct {
	goal     string
	measured string
	met      bool
	judged   bool // false when the run did not measure the client count the goal names
	note     bool // not a goal of the brief: the same bar against a stricter baseline, for information
	// correctness marks a goal that is a property rather than a speed: not meeting it is a failure of the product, so the
	// report says FAIL and the run exits with an error.
	correctness bool
}

func judge(res results, n int) []target {
	goals := []string{
		fmt.Sprintf("mirrorkit commits/s at %d clients ≥ 2× PostgreSQL's", n),
		fmt.Sprintf("mirrorkit commits/s at %d clients ≥ 5× one fsync per commit", n),
		fmt.Sprintf("mirrorkit p99 latency at %d clients ≤ PostgreSQL's p99 at %d clients", n, n),
	}
	mk, okM := res.mirrorkit[n]
	pg, okP := res.postgresql[n]
	if !okM || !okP {
		out := make([]target, len(goals))
		for i, g := range goals {
			out[i] = target{goal: g, measured: fmt.Sprintf("not measured (no %d-client point)", n)}
		}
		return out
	}
	vsPG := mk.PerSecond / pg.PerSecond
	vsFsync := mk.PerSecond / res.fsync.PerSecond
	out := []target{
		{goal: goals[0], measured: fmt.Sprintf("%.2f× (%.0f vs %.0f tx/s)", vsPG, mk.PerSecond, pg.PerSecond), met: vsPG >= 2, judged: true},
		{goal: goals[1], measured: fmt.Sprintf("%.2f× (%.0f vs %.0f fsyncs/s)", vsFsync, mk.PerSecond, res.fsync.PerSecond),
			met: vsFsync >= 5, judged: true},
		{goal: goals[2], measured: fmt.Sprintf("%.2f ms vs %.2f ms (%.2f×)", mk.P99Ms, pg.P99Ms, mk.P99Ms/pg.P99Ms),
			met: mk.P99Ms <= pg.P99Ms, judged: true},
	}
	if fd := res.fdatasync; fd != nil {
		vsFd := mk.PerSecond / fd.PerSecond
		out = append(out, target{
			goal:     fmt.Sprintf("(for information) mirrorkit commits/s at %d clients ≥ 5× one preallocated write + fdatasync per commit", n),
			measured: fmt.Sprintf("%.2f× (%.0f vs %.0f fdatasyncs/s)", vsFd, mk.PerSecond, fd.PerSecond),
			met:      vsFd >= 5, judged: true, note: true,
		})
	}
	return out
}
