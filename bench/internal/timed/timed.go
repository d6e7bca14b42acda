// Package timed runs a command for a benchmark and reports its wall time, peak resident set size and CPU time.
package timed

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Usage is what one run of a command took.
type Usage struct {
	Seconds     float64
	MaxRSSBytes int64
	CPUSeconds  float64
	Command     string
}

// Run runs argv with its standard output to stdout and times it. The peak resident set size is the largest of the command
// and of every descendant it waited for (a shell pipeline's stages), as wait4 reports it; the CPU time is theirs summed.
// The command runs in a process group of its own so that a timeout or an interrupt kills all of it.
func Run(ctx context.Context, argv []string, stdout io.Writer, timeout time.Duration) (Usage, error) {
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
		return Usage{}, fmt.Errorf("%s: stopped after %v: %w", argv[0], elapsed.Round(time.Second), ctx.Err())
	}
	if err != nil {
		return Usage{}, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	u := Usage{Seconds: elapsed.Seconds(), Command: strings.Join(argv, " ")}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		u.MaxRSSBytes = ru.Maxrss << 10 // Linux counts it in KiB
		u.CPUSeconds = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	return u, nil
}
