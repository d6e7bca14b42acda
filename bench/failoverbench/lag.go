package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/bench/internal/latency"
	"github.com/mirrorkit/mirrorkit/bench/internal/mirrorresult"
	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
)

type lagCmd struct {
	mirrorFlags
	loadFlags
	Async       string        `required:"" help:"Name of the async member whose lag is measured."`
	Duration    time.Duration `default:"10s" help:"How long to measure."`
	Interval    time.Duration `default:"250ms" help:"How often to sample the primary's Mirror Monitor."`
	SegmentSize int64         `default:"67108864" help:"Journal segment size of the members, to measure distances that cross segments."`
	Global      string        `default:"^L" help:"Global the load writes under."`
}

func (c *lagCmd) Run(ctx context.Context) error { return c.run(ctx, os.Stdout) }

// lagSample is one reading of the primary's Mirror Monitor: its durable mirror journal end and the async's durably
// received position, from one snapshot, and the journal transfer status it showed for the async.
type lagSample struct {
	at            time.Duration // when the reading was asked for, as an offset from the load's start
	end, received journal.Position
	transfer      string
}

func (c *lagCmd) run(ctx context.Context, out io.Writer) error {
	if err := c.validate(); err != nil {
		return err
	}
	if c.Duration <= 0 || c.Interval <= 0 || c.SegmentSize <= 0 {
		return fmt.Errorf("--duration %v, --interval %v and --segment-size %d: all must be positive", c.Duration, c.Interval, c.SegmentSize)
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
	samples, failure := c.sample(ctx, mon, primary, l)
	calls, errs := l.stop()
	if err := ctx.Err(); err != nil {
		return err
	}
	res, err := summarizeLag(samples, c.SegmentSize)
	failure = errors.Join(failure, err)
	res.Clients, res.Async, res.IntervalMs, res.Errors = c.Clients, c.Async, ms(c.Interval), len(errs)
	if len(samples) > 1 {
		from, to := samples[0].at, samples[len(samples)-1].at
		n := 0
		for _, cl := range calls {
			if cl.end >= from && cl.end <= to {
				n++
			}
		}
		res.CommitsPerSecond = float64(n) / (to - from).Seconds()
	}
	if len(errs) > 0 {
		failure = errors.Join(failure, fmt.Errorf("%d client calls failed: %s", len(errs), strings.Join(errorSamples(errs), "; ")))
	}
	if failure != nil {
		res.Failure = failure.Error()
	}
	if c.JSON {
		return mirrorresult.Write(out, res)
	}
	return printLag(out, res)
}

// sample reads the primary's Mirror Monitor every Interval for Duration, after the warmup.
func (c *lagCmd) sample(ctx context.Context, mon *monitor, primary string, l *load) ([]lagSample, error) {
	if err := sleep(ctx, c.Warmup); err != nil {
		return nil, err
	}
	tick := time.NewTicker(c.Interval)
	defer tick.Stop()
	start := l.now()
	var samples []lagSample
	for {
		at := l.now()
		st, err := mon.view(ctx, primary, "/api/v1/mirror/status")
		if err != nil {
			return samples, err
		}
		s, err := c.reading(st)
		if err != nil {
			return samples, fmt.Errorf("member %s: %w", primary, err)
		}
		s.at = at
		samples = append(samples, s)
		if at-start >= c.Duration {
			return samples, nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return samples, ctx.Err()
		}
	}
}

// reading takes the async's lag from the primary's Mirror Monitor st.
func (c *lagCmd) reading(st mirror.Status) (lagSample, error) {
	if st.Role != mirror.RolePrimary.String() {
		return lagSample{}, fmt.Errorf("mirror %s: no longer primary (role %s, primary %s)", st.Mirror, st.Role, st.Primary)
	}
	end, err := journal.ParsePosition(st.JournalEnd)
	if err != nil {
		return lagSample{}, fmt.Errorf("mirror %s: journal end: %w", st.Mirror, err)
	}
	i := slices.IndexFunc(st.Members, func(r mirror.MemberStatus) bool { return strings.EqualFold(r.Name, c.Async) })
	if i < 0 {
		return lagSample{}, fmt.Errorf("mirror %s has no member %s", st.Mirror, c.Async)
	}
	row := st.Members[i]
	received, err := journal.ParsePosition(row.Received)
	if err != nil {
		return lagSample{}, fmt.Errorf("mirror %s: member %s (journal transfer %q): received position: %w", st.Mirror, row.Name, row.JournalTransfer, err)
	}
	return lagSample{end: end, received: received, transfer: row.JournalTransfer}, nil
}

// summarizeLag turns the samples into lags in bytes and, through the rate the primary's journal grew at over the
// samples, in time.
func summarizeLag(samples []lagSample, segmentSize int64) (mirrorresult.AsyncLag, error) {
	res := mirrorresult.AsyncLag{System: mirrorresult.SystemAsyncLag, Samples: len(samples), Transfer: map[string]int{}}
	if len(samples) < 2 {
		return res, fmt.Errorf("%d samples of the Mirror Monitor: need at least 2", len(samples))
	}
	first, last := samples[0], samples[len(samples)-1]
	elapsed := last.at - first.at
	res.Seconds = elapsed.Seconds()
	grown := distance(first.end, last.end, segmentSize)
	if grown == 0 || elapsed <= 0 {
		return res, fmt.Errorf("the primary's mirror journal did not grow from %s in %v under load", first.end, elapsed)
	}
	rate := float64(grown) / elapsed.Seconds()
	res.JournalBytesPerSecond = rate
	lags := make([]time.Duration, len(samples))
	for i, s := range samples {
		behind := distance(s.received, s.end, segmentSize)
		res.MaxLagBytes = max(res.MaxLagBytes, behind)
		lags[i] = time.Duration(float64(behind) / rate * float64(time.Second))
		res.Transfer[s.transfer]++
	}
	slices.Sort(lags)
	res.P50LagMs, res.P99LagMs = ms(latency.Percentile(lags, 50)), ms(latency.Percentile(lags, 99))
	res.MaxLagMs = ms(lags[len(lags)-1])
	return res, nil
}

// distance is the number of journal bytes from one position to a later one (zero when to is not later). A segment is
// counted as segmentSize bytes long, the size segments roll at, so a distance across segments is at most a record's
// length too long.
func distance(from, to journal.Position, segmentSize int64) uint64 {
	if !from.Less(to) {
		return 0
	}
	if from.Segment == to.Segment {
		return to.Offset - from.Offset
	}
	size := uint64(segmentSize)
	return size - min(from.Offset, size) + (to.Segment-from.Segment-1)*size + to.Offset
}

func printLag(w io.Writer, res mirrorresult.AsyncLag) error {
	var b strings.Builder
	fmt.Fprintf(&b, "async %s, %d clients: %d samples over %.1fs, %.0f commits/s, journal %.0f bytes/s; lag p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d bytes); journal transfer %v; %d errors\n",
		res.Async, res.Clients, res.Samples, res.Seconds, res.CommitsPerSecond, res.JournalBytesPerSecond,
		res.P50LagMs, res.P99LagMs, res.MaxLagMs, res.MaxLagBytes, res.Transfer, res.Errors)
	if res.Failure != "" {
		fmt.Fprintf(&b, "FAILED: %s\n", res.Failure)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
