package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"

	"github.com/mirrorkit/mirrorkit/bench/internal/timed"
)

type runCmd struct {
	Members []string      `required:"" help:"Data addresses of the source and of the shadow destinations, the source first: the probe writes there and reads its writes back there."`
	DB      []string      `name:"db" required:"" help:"Databases on the source the probe writes to (comma-separated)."`
	Writers int           `default:"2" help:"Writers per database, each with one single-Set transaction in flight."`
	Settle  time.Duration `default:"3s" help:"How long the probe writes before the command starts, and after it ends."`
	Mode    string        `required:"" enum:"in-place,copy,staged" help:"The conversion path the command takes: in-place, copy or staged."`
	Round   int           `default:"1" help:"Which repetition this is."`
	Stdout  string        `required:"" type:"path" help:"Write the command's standard output to this file: the output of migrate --json, from which the plan's steps are read."`
	Timeout time.Duration `default:"2h" help:"Kill the command and fail after this long."`
	Command []string      `arg:"" passthrough:"" help:"The command and its arguments."`
}

// RoundResult is one timed conversion under the probe. run prints it without the fields marked "script"; the script
// adds them from the members after checking the round.
type RoundResult struct {
	Kind        string             `json:"kind"` // kindRound
	Mode        string             `json:"mode"`
	Round       int                `json:"round"`
	Command     string             `json:"command"`
	Seconds     float64            `json:"seconds"`
	CPUSeconds  float64            `json:"cpu_seconds"` // the command's user and system time
	MaxRSSBytes int64              `json:"max_rss_bytes"`
	Probe       ProbeResult        `json:"probe"`
	Steps       map[string]int     `json:"steps"`        // the plan's steps by kind
	StepSeconds map[string]float64 `json:"step_seconds"` // time the steps of each kind took, summed
	// BytesServed is the source's mirrorkit_snapshot_bytes_served_total after the round (script).
	BytesServed *int64 `json:"bytes_served,omitempty"`
	// Hashes are the logical hashes of the databases, equal on every member once the destinations caught up (script).
	Hashes map[string]string `json:"hashes,omitempty"`
}

// ProbeResult is what the probe's writers saw.
type ProbeResult struct {
	Databases []string `json:"databases"`
	Writers   int      `json:"writers"` // in all
	// SettleSeconds is how long the probe wrote before the command started, and again after it ended.
	SettleSeconds float64     `json:"settle_seconds"`
	Writes        int         `json:"writes"` // acknowledged, in all
	Errors        int         `json:"errors"` // failed writes, in all
	ErrorSamples  []string    `json:"error_samples,omitempty"`
	Before        WindowStats `json:"before"` // the settle period before the command
	During        WindowStats `json:"during"` // while the command ran
	ReadFrom      string      `json:"read_from"`
	ReadBack      int         `json:"read_back"` // acknowledged writes found with their value
	Missing       int         `json:"missing"`   // acknowledged writes not found, or holding another value
}

// ErrLostWrites is returned when an acknowledged write of the probe is not on the source after the round.
var ErrLostWrites = errors.New("acknowledged writes lost")

func (c *runCmd) Run(ctx context.Context) error {
	if len(c.Command) > 0 && c.Command[0] == "--" {
		c.Command = c.Command[1:]
	}
	if len(c.Command) == 0 {
		return errors.New("no command to run: give it after --")
	}
	members, dbs := c.Members, c.DB
	if c.Writers < 1 || c.Settle < 0 {
		return fmt.Errorf("--writers %d must be at least 1 and --settle %v not negative", c.Writers, c.Settle)
	}
	out, err := os.Create(c.Stdout)
	if err != nil {
		return fmt.Errorf("output of the command: %w", err)
	}
	defer out.Close()
	cl, err := client.DialMirror(ctx, members, client.Options{Conns: 2, Name: "convertbench-probe"})
	if err != nil {
		return fmt.Errorf("connect to %s: %w", strings.Join(members, ","), err)
	}
	defer cl.Close()
	if cl.Current() != members[0] {
		return fmt.Errorf("the probe reached %s, not the source %s", cl.Current(), members[0])
	}

	p := startProbe(ctx, cl, dbs, c.Writers)
	if err := sleep(ctx, c.Settle); err != nil {
		p.stop()
		return err
	}
	from := p.now()
	res, err := measure(ctx, c.Command, out, c.Timeout)
	to := p.now()
	if err == nil {
		err = sleep(ctx, c.Settle)
	}
	acks, failures, errs := p.stop()
	end := p.now()
	if err != nil {
		return fmt.Errorf("%s (round %d): %w", c.Mode, c.Round, err)
	}
	plan, err := readPlanOutput(c.Stdout)
	if err != nil {
		return err
	}
	if !plan.Finished {
		return fmt.Errorf("%s (round %d): the command ended without finishing its plan (see %s)", c.Mode, c.Round, c.Stdout)
	}
	res.Mode, res.Round, res.Steps, res.StepSeconds = c.Mode, c.Round, plan.Steps, plan.StepSeconds
	res.Probe = ProbeResult{Databases: dbs, Writers: len(p.writers), SettleSeconds: c.Settle.Seconds(),
		Writes: len(acks), Errors: len(failures), ErrorSamples: errs,
		Before:   window(acks, failures, 0, end, 0, from),
		During:   window(acks, failures, 0, end, from, to),
		ReadFrom: cl.Current()}
	if res.Probe.ReadFrom != members[0] {
		// The source stays primary through a conversion: the client left it only if the source refused its writes.
		return fmt.Errorf("%s (round %d): the probe's client moved from the source %s to %s", c.Mode, c.Round, members[0], res.Probe.ReadFrom)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if res.Probe.ReadBack, res.Probe.Missing, err = p.readBack(rctx); err != nil {
		return err
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return err
	}
	if res.Probe.Missing > 0 {
		return fmt.Errorf("%s (round %d): %d of %d acknowledged writes of the probe are not on %s: %w", c.Mode, c.Round,
			res.Probe.Missing, len(acks), res.Probe.ReadFrom, ErrLostWrites)
	}
	return nil
}

func readPlanOutput(path string) (planOutput, error) {
	f, err := os.Open(path)
	if err != nil {
		return planOutput{}, err
	}
	defer f.Close()
	return parsePlanOutput(f)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// measure runs argv, timed (see timed.Run).
func measure(ctx context.Context, argv []string, stdout io.Writer, timeout time.Duration) (RoundResult, error) {
	u, err := timed.Run(ctx, argv, stdout, timeout)
	if err != nil {
		return RoundResult{}, err
	}
	return RoundResult{Kind: kindRound, Seconds: u.Seconds, Command: u.Command, MaxRSSBytes: u.MaxRSSBytes, CPUSeconds: u.CPUSeconds}, nil
}
