package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/bench/internal/latency"
	"github.com/mirrorkit/mirrorkit/bench/internal/mirrorresult"
	"github.com/mirrorkit/mirrorkit/engine/client"
)

type failoverCmd struct {
	mirrorFlags
	loadFlags
	MemberBin string        `default:"bin/member" help:"The member command line; each failover runs 'member mirror failover' against the primary."`
	Rounds    int           `default:"20" help:"Planned failovers to make."`
	Steady    time.Duration `default:"1s" help:"Load time between the backup becoming Active and the next failover."`
	Settle    time.Duration `default:"1s" help:"How long after the failover command returns a pause still counts as the failover's."`
	Global    string        `default:"^F" help:"Global the load writes under (read back at the end to find lost commits)."`

	// handOver makes the failover from the primary at addr; nil runs the member command line.
	handOver func(ctx context.Context, addr string) error
}

func (c *failoverCmd) Run(ctx context.Context) error { return c.run(ctx, os.Stdout) }

// window is one failover as the load saw it: offsets from the load's start.
type window struct {
	from, to         string // primary before and after
	cmdStart, cmdEnd time.Duration
	cmdErr           error         // how the failover command failed, if it did
	activeAfter      time.Duration // from cmdStart until the old primary was an Active backup again
}

func (c *failoverCmd) run(ctx context.Context, out io.Writer) error {
	if err := c.validate(); err != nil {
		return err
	}
	if c.Rounds < 1 || c.Steady <= 0 || c.Settle <= 0 {
		return fmt.Errorf("--rounds %d, --steady %v and --settle %v: all must be positive", c.Rounds, c.Steady, c.Settle)
	}
	if c.handOver == nil {
		c.handOver = c.memberFailover
	}
	mon := newMonitor(c.Mirror, c.Members)
	primary, _, err := mon.waitReady(ctx, c.ReadyTimeout)
	if err != nil {
		return err
	}
	cl, err := client.DialMirror(ctx, addrsPrimaryFirst(c.Members, primary), client.Options{Conns: c.Conns, Name: "failoverbench"})
	if err != nil {
		return fmt.Errorf("dial mirror %s: %w", c.Mirror, err)
	}
	defer cl.Close()

	l := startLoad(ctx, cl, c.DB, c.Global, c.Clients)
	windows, failure := c.rounds(ctx, mon, l)
	calls, errs := l.stop()
	end := l.now()
	if err := ctx.Err(); err != nil {
		return err
	}
	res := summarizeFailovers(windows, calls, errs, c.Settle, end)
	res.Clients, res.Requested, res.SteadyMs = c.Clients, c.Rounds, ms(c.Steady)
	// Every acknowledged commit must survive every failover; read them back from the final primary.
	n, err := l.missing(ctx, calls)
	res.Missing = n
	if err != nil {
		res.Missing, failure = -1, errors.Join(failure, err)
	}
	if failure != nil {
		res.Failure = failure.Error()
	}
	if c.JSON {
		return mirrorresult.Write(out, res)
	}
	return printFailover(out, res)
}

// rounds makes the failovers: each waits until the backup is Active, lets the load run steadily, hands over and records
// when. It returns the completed failovers (whose new primary was seen with an Active backup) and, if it stopped early,
// why.
func (c *failoverCmd) rounds(ctx context.Context, mon *monitor, l *load) ([]window, error) {
	if err := sleep(ctx, c.Warmup); err != nil {
		return nil, err
	}
	var done []window
	var pending *window
	for round := 1; ; round++ {
		addr, st, err := mon.waitReady(ctx, c.ReadyTimeout)
		if pending != nil {
			if err != nil {
				return done, fmt.Errorf("after failover %d from %s: %w", round-1, pending.from, err)
			}
			if st.Primary == pending.from {
				return done, errors.Join(fmt.Errorf("after failover %d: %s is still primary in epoch %d", round-1, st.Primary, st.Epoch),
					pending.cmdErr)
			}
			pending.to, pending.activeAfter = st.Primary, l.now()-pending.cmdStart
			done = append(done, *pending)
			pending = nil
		} else if err != nil {
			return done, fmt.Errorf("before failover %d: %w", round, err)
		}
		if round > c.Rounds {
			// The last failover's window must be complete before the load stops.
			last := done[len(done)-1]
			return done, sleep(ctx, last.cmdEnd+c.Settle-l.now())
		}
		if err := sleep(ctx, c.Steady); err != nil {
			return done, err
		}
		// A failed command is recorded, not fatal: what counts is whether another member became primary.
		w := window{from: st.Primary, cmdStart: l.now()}
		w.cmdErr = c.handOver(ctx, addr)
		w.cmdEnd = l.now()
		if ctx.Err() != nil {
			return done, ctx.Err()
		}
		pending = &w
	}
}

// memberFailover runs `member mirror failover` against the primary at addr, as an operator would.
func (c *failoverCmd) memberFailover(ctx context.Context, addr string) error {
	args := []string{"mirror", "failover", c.Mirror, "--member", addr, "--timeout", c.ReadyTimeout.String()}
	msg, err := exec.CommandContext(ctx, c.MemberBin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", c.MemberBin, strings.Join(args, " "), err, strings.TrimSpace(string(msg)))
	}
	return nil
}

// summarizeFailovers computes each failover's client-visible pause from the acknowledged calls (ordered by
// acknowledgement) and the errors (ordered by time) of a load that ran until end.
func summarizeFailovers(windows []window, calls []call, errs []callError, settle, end time.Duration) mirrorresult.Failover {
	acks := make([]time.Duration, len(calls))
	for i, c := range calls {
		acks[i] = c.end
	}
	res := mirrorresult.Failover{System: mirrorresult.SystemFailover, SettleMs: ms(settle), Commits: len(calls),
		Seconds: end.Seconds(), Errors: len(errs), ErrorSamples: errorSamples(errs)}
	var pauses, longest []time.Duration
	for i, w := range windows {
		from, to := w.cmdStart, w.cmdEnd+settle
		gap := longestGap(acks, from, to, end)
		lat := longestCall(calls, errs, from, to)
		next := end
		if i+1 < len(windows) {
			next = windows[i+1].cmdStart
		}
		r := mirrorresult.Round{
			Round: i + 1, From: w.from, To: w.to,
			PauseMs: ms(gap), MaxLatencyMs: ms(lat), CommandMs: ms(w.cmdEnd - w.cmdStart), ActiveAfterMs: ms(w.activeAfter),
			Errors: countErrors(errs, w.cmdStart, next),
		}
		if w.cmdErr != nil {
			r.CommandError = w.cmdErr.Error()
			res.CommandErrors++
		}
		res.Rounds = append(res.Rounds, r)
		pauses, longest = append(pauses, gap), append(longest, lat)
	}
	if len(pauses) > 0 {
		slices.Sort(pauses)
		slices.Sort(longest)
		res.PauseP50Ms, res.PauseMaxMs = ms(latency.Percentile(pauses, 50)), ms(pauses[len(pauses)-1])
		res.MaxLatencyP50Ms, res.MaxLatencyMaxMs = ms(latency.Percentile(longest, 50)), ms(longest[len(longest)-1])
	}
	return res
}

// longestGap is the longest interval between consecutive acknowledgements (sorted acks) that overlaps [from, to]. The
// load's start and end bound the first and last intervals, so a load that stopped being acknowledged shows a pause
// until it ended.
func longestGap(acks []time.Duration, from, to, end time.Duration) time.Duration {
	i := sort.Search(len(acks), func(k int) bool { return acks[k] >= from })
	prev := time.Duration(0)
	if i > 0 {
		prev = acks[i-1]
	}
	var gap time.Duration
	for ; i < len(acks); i++ {
		gap = max(gap, acks[i]-prev)
		if acks[i] > to {
			return gap
		}
		prev = acks[i]
	}
	return max(gap, end-prev)
}

// longestCall is the longest call, acknowledged or failed, that was in flight at some point of [from, to].
func longestCall(calls []call, errs []callError, from, to time.Duration) time.Duration {
	var out time.Duration
	for _, c := range calls {
		if c.start <= to && c.end >= from {
			out = max(out, c.end-c.start)
		}
	}
	for _, e := range errs {
		if e.start <= to && e.at >= from {
			out = max(out, e.at-e.start)
		}
	}
	return out
}

// countErrors counts the errors (ordered by time) that returned in [from, to).
func countErrors(errs []callError, from, to time.Duration) int {
	lo := sort.Search(len(errs), func(k int) bool { return errs[k].at >= from })
	hi := sort.Search(len(errs), func(k int) bool { return errs[k].at >= to })
	return hi - lo
}

func printFailover(w io.Writer, res mirrorresult.Failover) error {
	var b strings.Builder
	for _, r := range res.Rounds {
		fmt.Fprintf(&b, "failover %d: %s -> %s, pause %.1f ms, longest call %.1f ms, command %.1f ms, backup Active after %.0f ms, %d errors\n",
			r.Round, r.From, r.To, r.PauseMs, r.MaxLatencyMs, r.CommandMs, r.ActiveAfterMs, r.Errors)
		if r.CommandError != "" {
			fmt.Fprintf(&b, "  the failover command failed: %s\n", r.CommandError)
		}
	}
	fmt.Fprintf(&b, "%d of %d failovers, %d clients: pause p50 %.1f ms, max %.1f ms; %d commits in %.1fs, %d errors, %d acknowledged commits missing\n",
		len(res.Rounds), res.Requested, res.Clients, res.PauseP50Ms, res.PauseMaxMs, res.Commits, res.Seconds, res.Errors, res.Missing)
	return writeReport(w, &b, res.ErrorSamples, res.Failure)
}

// sleep waits for d (nothing when d is not positive) unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// writeReport ends a text report with the client error samples and why the run failed (if it did), and writes it to w.
func writeReport(w io.Writer, b *strings.Builder, errorSamples []string, failure string) error {
	for _, e := range errorSamples {
		fmt.Fprintf(b, "error: %s\n", e)
	}
	if failure != "" {
		fmt.Fprintf(b, "FAILED: %s\n", failure)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
