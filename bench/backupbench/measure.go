package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/mirrorkit/mirrorkit/bench/internal/timed"
)

type measureCmd struct {
	Name       string        `required:"" help:"The measurement this run belongs to (see the report's list)."`
	Round      int           `default:"1" help:"Which repetition this is."`
	DropCaches bool          `help:"Write back dirty pages and drop the page cache first (needs root; the result records whether it was done)."`
	Stdout     string        `type:"path" help:"Write the command's standard output to this file (default: standard error)."`
	Timeout    time.Duration `default:"2h" help:"Kill the command and fail after this long."`
	Command    []string      `arg:"" passthrough:"" help:"The command and its arguments."`
}

// RunResult is one timed run of a command, as measure prints it.
type RunResult struct {
	Kind          string  `json:"kind"` // kindRun
	Name          string  `json:"name"`
	Round         int     `json:"round"`
	Seconds       float64 `json:"seconds"`
	MaxRSSBytes   int64   `json:"max_rss_bytes"`
	CPUSeconds    float64 `json:"cpu_seconds"` // user and system time
	CachesDropped bool    `json:"caches_dropped"`
	Command       string  `json:"command"`
}

func (c *measureCmd) Run(ctx context.Context) error {
	if len(c.Command) > 0 && c.Command[0] == "--" {
		c.Command = c.Command[1:]
	}
	if len(c.Command) == 0 {
		return errors.New("no command to measure: give it after --")
	}
	out := io.Writer(os.Stderr)
	if c.Stdout != "" {
		f, err := os.Create(c.Stdout)
		if err != nil {
			return fmt.Errorf("output of %s: %w", c.Name, err)
		}
		defer f.Close()
		out = f
	}
	dropped := c.DropCaches && dropCaches() == nil
	res, err := measure(ctx, c.Command, out, c.Timeout)
	if err != nil {
		return fmt.Errorf("%s (round %d): %w", c.Name, c.Round, err)
	}
	res.Name, res.Round, res.CachesDropped = c.Name, c.Round, dropped
	return json.NewEncoder(os.Stdout).Encode(res)
}

// dropCaches makes the next run read from the disk, not from memory: it writes back dirty pages, then drops clean ones.
func dropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
}

// measure runs argv, timed (see timed.Run).
func measure(ctx context.Context, argv []string, stdout io.Writer, timeout time.Duration) (RunResult, error) {
	u, err := timed.Run(ctx, argv, stdout, timeout)
	if err != nil {
		return RunResult{}, err
	}
	return RunResult{Kind: kindRun, Seconds: u.Seconds, Command: u.Command, MaxRSSBytes: u.MaxRSSBytes, CPUSeconds: u.CPUSeconds}, nil
}
