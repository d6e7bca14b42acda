package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/mirrorkit/mirrorkit/bench/internal/mirrorresult"
	"github.com/mirrorkit/mirrorkit/engine/client"
)

type duringCmd struct {
	mirrorFlags
	loadFlags
	Settle       time.Duration `default:"2s" help:"How long the load keeps running after the command ends; pauses until then count."`
	Stall        time.Duration `default:"50ms" help:"A gap between consecutive acknowledgements longer than this is a pause."`
	Global       string        `default:"^D" help:"Global the load writes under (read back at the end to find lost commits)."`
	RetryTimeout time.Duration `default:"60s" help:"How long one client call may retry before it fails: longer than the longest pause the command may cause."`
	Timeout      time.Duration `default:"30m" help:"Stop the command (SIGTERM, then SIGKILL) and fail after this long."`
	CommandLog   string        `type:"path" help:"Append the command's standard output and error to this file (default: failoverbench's standard error)."`
	Command      []string      `arg:"" passthrough:"" help:"The command to run under the load, and its arguments, after --."`
}

func (c *duringCmd) Run(ctx context.Context) error { return c.run(ctx, os.Stdout) }

// commandRun is the command as the load saw it: offsets from the load's start, and how it ended.
type commandRun struct {
	argv       []string
	started    time.Time
	start, end time.Duration
	exitStatus int   // -1 when it did not exit by itself
	err        error // why it failed, if it did
}

func (c *duringCmd) run(ctx context.Context, out io.Writer) error {
	if len(c.Command) > 0 && c.Command[0] == "--" {
		c.Command = c.Command[1:]
	}
	if len(c.Command) == 0 {
		return errors.New("no command to run: give it after --")
	}
	if err := c.validate(); err != nil {
		return err
	}
	if c.Settle < 0 || c.Stall <= 0 || c.RetryTimeout <= 0 || c.Timeout <= 0 {
		return fmt.Errorf("--settle %v must not be negative; --stall %v, --retry-timeout %v and --timeout %v must be positive",
			c.Settle, c.Stall, c.RetryTimeout, c.Timeout)
	}
	cmdOut := io.Writer(os.Stderr)
	if c.CommandLog != "" {
		f, err := os.OpenFile(c.CommandLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("command log: %w", err)
		}
		defer f.Close()
		cmdOut = f
	}
	mon := newMonitor(c.Mirror, c.Members)
	primary, _, err := mon.waitReady(ctx, c.ReadyTimeout)
	if err != nil {
		return err
	}
	// Every member restarts during a rolling upgrade: the client must know them all to follow the primary role.
	cl, err := client.DialMirror(ctx, addrsPrimaryFirst(c.Members, primary),
		client.Options{Conns: c.Conns, Name: "failoverbench", RetryTimeout: c.RetryTimeout})
	if err != nil {
		return fmt.Errorf("dial mirror %s: %w", c.Mirror, err)
	}
	defer cl.Close()

	l := startLoad(ctx, cl, c.DB, c.Global, c.Clients)
	run := commandRun{argv: c.Command, exitStatus: -1}
	err = sleep(ctx, c.Warmup)
	if err == nil {
		run = c.runCommand(ctx, l, cmdOut)
		err = sleep(ctx, c.Settle)
	}
	calls, errs := l.stop()
	end := l.now()
	if err != nil {
		return err
	}
	res := summarizeDuring(run, calls, errs, c.Stall, c.Settle, end)
	res.Clients, res.WarmupMs = c.Clients, ms(c.Warmup)
	n, err := l.missing(ctx, calls)
	res.Missing, res.ReadFrom = n, cl.Current()
	failure := duringFailed(res, run)
	if err != nil {
		res.Missing, failure = -1, errors.Join(failure, err)
	}
	if failure != nil {
		res.Failure = failure.Error()
	}
	if c.JSON {
		err = mirrorresult.Write(out, res)
	} else {
		err = printDuring(out, res)
	}
	return errors.Join(err, failure)
}

// runCommand runs the command with its output to w and records when, on the load's clock. SIGINT or SIGTERM to
// failoverbench (ctx) or the timeout ends it with SIGTERM, so that a plan executor keeps its progress; SIGKILL follows if
// it has not exited 30s later.
func (c *duringCmd) runCommand(ctx context.Context, l *load, w io.Writer) commandRun {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Command[0], c.Command[1:]...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	run := commandRun{argv: c.Command, started: time.Now(), start: l.now(), exitStatus: -1}
	run.err = cmd.Run()
	run.end = l.now()
	if cmd.ProcessState != nil {
		run.exitStatus = cmd.ProcessState.ExitCode()
	}
	if run.err != nil {
		if ctx.Err() != nil {
			run.err = fmt.Errorf("%w (stopped after %v)", run.err, (run.end - run.start).Round(time.Millisecond))
		}
		run.err = fmt.Errorf("%s: %w", strings.Join(c.Command, " "), run.err)
	}
	return run
}

// summarizeDuring computes what the clients saw of the command from the acknowledged calls (ordered by acknowledgement)
// and the errors of a load that ran until end: the pauses overlapping [command start, command end + settle], each
// clipped to it.
func summarizeDuring(run commandRun, calls []call, errs []callError, stall, settle, end time.Duration) mirrorresult.During {
	res := mirrorresult.During{System: mirrorresult.SystemDuring, Command: run.argv, CommandMs: ms(run.end - run.start),
		ExitStatus: run.exitStatus, SettleMs: ms(settle), StallMs: ms(stall),
		Commits: len(calls), Seconds: end.Seconds(), Errors: len(errs), ErrorSamples: errorSamples(errs)}
	if !run.started.IsZero() {
		res.CommandStarted = run.started.UTC().Format(time.RFC3339Nano)
	}
	if run.err != nil {
		res.CommandError = run.err.Error()
	}
	acks := make([]time.Duration, len(calls))
	for i, c := range calls {
		acks[i] = c.end
	}
	from, to := run.start, run.end+settle
	lo := sort.Search(len(acks), func(k int) bool { return acks[k] >= from })
	hi := sort.Search(len(acks), func(k int) bool { return acks[k] > to })
	res.CommitsDuring = hi - lo
	var total, longest time.Duration
	for _, p := range pauses(acks, stall, from, to, end) {
		d := p.to - p.from
		total, longest = total+d, max(longest, d)
		res.PauseList = append(res.PauseList, mirrorresult.Pause{AtMs: ms(p.from - run.start), Ms: ms(d)})
	}
	res.UnavailableMs, res.LongestPauseMs, res.Pauses = ms(total), ms(longest), len(res.PauseList)
	return res
}

// interval is a span of the load's clock.
type interval struct{ from, to time.Duration }

// pauses returns the gaps between consecutive acknowledgements (sorted acks) longer than stall that overlap [from, to],
// each clipped to it, in order. The load's start and end bound the first and last gaps, as in longestGap: a load that
// stopped being acknowledged shows a pause until it ended. Consecutive gaps do not overlap, so their lengths add up to
// the time without any acknowledgement.
func pauses(acks []time.Duration, stall, from, to, end time.Duration) []interval {
	var out []interval
	add := func(a, b time.Duration) {
		if b-a > stall && b > from && a < to {
			out = append(out, interval{max(a, from), min(b, to)})
		}
	}
	prev := time.Duration(0)
	for _, at := range acks {
		if prev >= to {
			return out
		}
		add(prev, at)
		prev = at
	}
	add(prev, end)
	return out
}

// duringFailed says what makes the run a failure: the command failed, a client call failed or an acknowledged commit is
// missing.
func duringFailed(res mirrorresult.During, run commandRun) error {
	var errs []error
	if run.err != nil {
		errs = append(errs, fmt.Errorf("the command failed: %w", run.err))
	}
	if res.Errors > 0 {
		errs = append(errs, fmt.Errorf("%d client calls failed: %s", res.Errors, strings.Join(res.ErrorSamples, "; ")))
	}
	if res.Missing > 0 {
		errs = append(errs, fmt.Errorf("%d acknowledged commits are missing on %s", res.Missing, res.ReadFrom))
	}
	return errors.Join(errs...)
}

func printDuring(w io.Writer, res mirrorresult.During) error {
	var b strings.Builder
	fmt.Fprintf(&b, "command %s: exit status %d after %.1f s\n", strings.Join(res.Command, " "), res.ExitStatus, res.CommandMs/1000)
	fmt.Fprintf(&b, "client-visible unavailability (gaps over %.0f ms between acknowledgements, from the command's start until %.1f s after it ended): %.1f ms in %d pauses, the longest %.1f ms\n",
		res.StallMs, res.SettleMs/1000, res.UnavailableMs, res.Pauses, res.LongestPauseMs)
	for _, p := range res.PauseList {
		fmt.Fprintf(&b, "  pause at %+.3f s: %.1f ms\n", p.AtMs/1000, p.Ms)
	}
	fmt.Fprintf(&b, "%d clients: %d commits in %.1f s (%d from the command's start), %d errors, %d acknowledged commits missing on %s\n",
		res.Clients, res.Commits, res.Seconds, res.CommitsDuring, res.Errors, res.Missing, res.ReadFrom)
	return writeReport(w, &b, res.ErrorSamples, res.Failure)
}
