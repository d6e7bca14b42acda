package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
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

// measure runs argv with its standard output to stdout and times it. The peak resident set size is the largest of the
// command and of every descendant it waited for (a shell pipeline's stages), as wait4 reports it; the CPU time is theirs
// summed. The command runs in a
// process group of its own so that a timeout or an interrupt kills all of it.
func measure(ctx context.Context, argv []string, stdout io.Writer, timeout time.Duration) (RunResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	if ctx.Err() != nil && cmd.ProcessState != nil && !cmd.ProcessState.Success() {
		return RunResult{}, fmt.Errorf("%s: stopped after %v: %w", argv[0], elapsed.Round(time.Second), ctx.Err())
	}
	if err != nil {
		return RunResult{}, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	res := RunResult{Kind: kindRun, Seconds: elapsed.Seconds(), Command: strings.Join(argv, " ")}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.MaxRSSBytes = ru.Maxrss << 10 // Linux counts it in KiB
		res.CPUSeconds = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	return res, nil
}
