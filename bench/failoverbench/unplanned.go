package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/mirrorkit/mirrorkit/bench/internal/latency"
	"github.com/mirrorkit/mirrorkit/bench/internal/mirrorresult"
	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

type unplannedCmd struct {
	MemberBin      string        `default:"bin/member" help:"The member binary; the arbiter and both members run it."`
	Dir            string        `type:"path" help:"Directory for the data and logs of the arbiter and the members (default: a temporary directory, removed unless the run fails)."`
	Faults         []string      `default:"kill,stop,isolate" sep:"," help:"Faults to do to the primary, in order: kill (SIGKILL, then restart), stop (SIGSTOP, then SIGCONT), isolate (its links to the backup and the arbiter black-holed, then healed)."`
	Rounds         int           `default:"20" help:"Rounds of each fault."`
	QoS            time.Duration `name:"qos" default:"2s" help:"QoS timeout of the mirror."`
	DB             string        `name:"db" default:"BENCH" help:"Database the load writes to."`
	Clients        int           `default:"16" help:"Concurrent clients, each with one write in flight."`
	Conns          int           `default:"4" help:"Connections in the client's pool."`
	AttemptTimeout time.Duration `help:"How long the client waits for one response before it tries another member (default: half the QoS timeout)."`
	DialTimeout    time.Duration `help:"How long the client waits for a member to answer a connection (default: half the QoS timeout)."`
	Warmup         time.Duration `default:"2s" help:"Load time before the first fault of each kind."`
	Steady         time.Duration `default:"1s" help:"Load time with a healthy mirror before each fault."`
	Timeout        time.Duration `default:"90s" help:"How long each wait may take (the takeover, writes resuming, the mirror healthy again) before the run fails; also the client's retry timeout."`
	JSON           bool          `name:"json" help:"Print the result as one line of JSON."`
}

func (c *unplannedCmd) Run(ctx context.Context) error { return c.run(ctx, os.Stdout) }

// globals the load writes under, one per fault kind, so that a lost write is traced to the fault it was lost in.
var faultGlobals = map[string]string{
	mirrorresult.FaultKill: "^UKill", mirrorresult.FaultStop: "^UStop", mirrorresult.FaultIsolate: "^UIsolate",
}

func (c *unplannedCmd) validate() error {
	if c.Rounds < 1 || c.Clients < 1 || c.Conns < 1 {
		return fmt.Errorf("--rounds %d, --clients %d and --conns %d: all must be at least 1", c.Rounds, c.Clients, c.Conns)
	}
	if c.QoS <= 0 || c.Steady <= 0 || c.Timeout <= 0 || c.Warmup < 0 || c.AttemptTimeout < 0 || c.DialTimeout < 0 {
		return fmt.Errorf("--qos %v, --steady %v and --timeout %v must be positive; --warmup %v, --attempt-timeout %v and --dial-timeout %v not negative",
			c.QoS, c.Steady, c.Timeout, c.Warmup, c.AttemptTimeout, c.DialTimeout)
	}
	if len(c.Faults) == 0 {
		return errors.New("--faults: name at least one of kill, stop, isolate")
	}
	for i, f := range c.Faults {
		if _, ok := faultGlobals[f]; !ok {
			return fmt.Errorf("--faults: unknown fault %q (want kill, stop or isolate)", f)
		}
		if slices.Contains(c.Faults[:i], f) {
			return fmt.Errorf("--faults: %s named twice", f)
		}
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = c.QoS / 2
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = c.QoS / 2
	}
	return nil
}

// outage is one fault as the load of its kind saw it.
type outage struct {
	round              int
	from, to           string
	fromEpoch, toEpoch uint64
	fault              time.Duration // when the fault was done, as an offset from the load's start
	// After the fault: when the other member was first seen primary in a higher epoch, when the fault was healed and
	// when the mirror was seen healthy again.
	takeover, heal, healthy time.Duration
}

// faultRun is the rounds of one fault kind and the load that ran through them.
type faultRun struct {
	fault   string
	load    *load
	outages []outage // completed rounds
	calls   []call
	errs    []callError
	end     time.Duration // when the load stopped
	missing int           // acknowledged writes the final primary lacks; -1 when not checked
}

func (c *unplannedCmd) run(ctx context.Context, out io.Writer) (err error) {
	if err := c.validate(); err != nil {
		return err
	}
	dir, keep := c.Dir, true
	if dir == "" {
		if dir, err = os.MkdirTemp("", "failoverbench-unplanned-"); err != nil {
			return err
		}
		keep = false
		defer func() {
			if !keep {
				os.RemoveAll(dir)
			}
		}()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The logs are kept for a failure; a directory given by the caller is the caller's to keep or remove.
	where := ""
	if c.Dir == "" {
		where = fmt.Sprintf(" (data and logs in %s)", dir)
	}
	pair, err := startPair(ctx, c.MemberBin, dir, c.DB, c.QoS, c.Timeout)
	if err != nil {
		keep = true
		return fmt.Errorf("start the mirror%s: %w", where, err)
	}
	runs, failure := c.measure(ctx, pair)
	failure = errors.Join(failure, pair.close())
	if err := ctx.Err(); err != nil {
		return err
	}
	res := summarizeUnplanned(c, runs)
	if failure != nil {
		keep = true
		res.Failure = fmt.Sprintf("%v%s", failure, where)
	}
	if c.JSON {
		return mirrorresult.Write(out, res)
	}
	if err := printUnplanned(out, res); err != nil {
		return err
	}
	if failed := unplannedFailed(res); failed != "" {
		return errors.New(failed)
	}
	return nil
}

// measure runs every fault kind in turn through one mirror-aware client, then reads every acknowledged write back from
// the final primary. It stops at the first round that goes wrong and says why.
func (c *unplannedCmd) measure(ctx context.Context, pair *arbitratedPair) ([]faultRun, error) {
	primary, _, err := pair.waitHealthy(ctx)
	if err != nil {
		return nil, err
	}
	cl, err := client.DialMirror(ctx, addrsPrimaryFirst([]string{pair.nodes[0].addr, pair.nodes[1].addr}, primary.addr),
		client.Options{Conns: c.Conns, Name: "failoverbench", RetryTimeout: c.Timeout, DialTimeout: c.DialTimeout,
			AttemptTimeout: c.AttemptTimeout})
	if err != nil {
		return nil, fmt.Errorf("dial mirror %s: %w", unplannedMirror, err)
	}
	defer cl.Close()
	var (
		runs    []faultRun
		failure error
	)
	for _, f := range c.Faults {
		fr := faultRun{fault: f, load: startLoad(ctx, cl, c.DB, faultGlobals[f], c.Clients)}
		err := c.rounds(ctx, pair, &fr)
		fr.calls, fr.errs = fr.load.stop()
		fr.end = fr.load.now()
		runs = append(runs, fr)
		if err != nil {
			failure = fmt.Errorf("%s, round %d of %d: %w", f, len(fr.outages)+1, c.Rounds, err)
			break
		}
	}
	if ctx.Err() != nil {
		return runs, ctx.Err()
	}
	// The final primary must hold every acknowledged write, whichever fault it was acknowledged through.
	if _, _, err := pair.waitHealthy(ctx); err != nil {
		failure = errors.Join(failure, fmt.Errorf("before reading back: %w", err))
	}
	for i := range runs {
		n, err := runs[i].load.missing(ctx, runs[i].calls)
		if err != nil {
			n, failure = -1, errors.Join(failure, err)
		}
		runs[i].missing = n
	}
	return runs, failure
}

// rounds does fr's fault to the primary Rounds times. Each round waits until the mirror is healthy, lets the load run
// steadily, does the fault, waits until the other member is primary in a higher epoch and a write sent after the fault
// is acknowledged, and heals the fault. The last round also waits until the mirror is healthy again.
func (c *unplannedCmd) rounds(ctx context.Context, pair *arbitratedPair, fr *faultRun) error {
	l := fr.load
	if err := sleep(ctx, c.Warmup); err != nil {
		return err
	}
	var pending *outage
	for round := 1; ; round++ {
		primary, epoch, err := pair.waitHealthy(ctx)
		if pending != nil {
			if err != nil {
				return fmt.Errorf("after healing: %w", err)
			}
			if primary.name != pending.to || epoch != pending.toEpoch {
				return fmt.Errorf("after healing: %s is primary in epoch %d, not %s in epoch %d as after the takeover",
					primary.name, epoch, pending.to, pending.toEpoch)
			}
			pending.healthy = l.now() - pending.fault
			fr.outages = append(fr.outages, *pending)
			pending = nil
		} else if err != nil {
			return err
		}
		if round > c.Rounds {
			return nil
		}
		if err := sleep(ctx, c.Steady); err != nil {
			return err
		}
		o, err := c.outage(ctx, pair, fr.fault, l, primary, epoch)
		if err != nil {
			return err
		}
		o.round = round
		pending = &o
	}
}

// outage does one fault to the primary and heals it once the other member has taken over and writes go on; if
// anything fails meanwhile the fault is healed all the same, so that the mirror can recover for the read-back.
func (c *unplannedCmd) outage(ctx context.Context, pair *arbitratedPair, fault string, l *load, primary *node, epoch uint64) (outage, error) {
	other := pair.other(primary)
	o := outage{from: primary.name, fromEpoch: epoch, fault: l.now()}
	if err := doFault(pair, fault, primary); err != nil {
		return o, errors.Join(err, healFault(pair, fault, primary))
	}
	err := pair.waitFor(ctx, fmt.Sprintf("%s primary in an epoch after %d", other.name, epoch), func(ctx context.Context) (bool, error) {
		if !other.proc.running() {
			return false, other.proc.gone()
		}
		st, err := pair.local(ctx, other)
		if err != nil {
			return false, err
		}
		if st.Role != mirror.RolePrimary.String() || st.Epoch <= epoch {
			return false, fmt.Errorf("%s is %s in epoch %d (%s)", other.name, st.Role, st.Epoch, st.Takeover)
		}
		o.to, o.toEpoch, o.takeover = other.name, st.Epoch, l.now()-o.fault
		return true, nil
	})
	if err == nil {
		err = pair.waitFor(ctx, "a write sent after the fault acknowledged", func(context.Context) (bool, error) {
			return l.ackedSince(o.fault), nil
		})
	}
	o.heal = l.now() - o.fault
	return o, errors.Join(err, healFault(pair, fault, primary))
}

// doFault does the fault to member n.
func doFault(pair *arbitratedPair, fault string, n *node) error {
	switch fault {
	case mirrorresult.FaultKill:
		return n.proc.kill()
	case mirrorresult.FaultStop:
		return n.proc.signal(syscall.SIGSTOP)
	case mirrorresult.FaultIsolate:
		n.toPeer.BlackHole()
		pair.other(n).toPeer.BlackHole()
		n.toArbiter.BlackHole()
		return nil
	}
	return fmt.Errorf("unknown fault %q", fault)
}

// healFault undoes the fault done to member n: a killed member is started again, a stopped one continued, an isolated
// one's links healed.
func healFault(pair *arbitratedPair, fault string, n *node) error {
	switch fault {
	case mirrorresult.FaultKill:
		if n.proc.running() {
			return nil
		}
		return n.proc.start()
	case mirrorresult.FaultStop:
		return n.proc.signal(syscall.SIGCONT)
	case mirrorresult.FaultIsolate:
		n.toPeer.Heal()
		pair.other(n).toPeer.Heal()
		n.toArbiter.Heal()
		return nil
	}
	return fmt.Errorf("unknown fault %q", fault)
}

// unknownOutcome reports whether a failed write may or may not have been applied: the member or the connection went
// away with the write in flight. Such a write is not counted as acknowledged, so it is allowed; any other failure,
// including a client that found no primary within its retry timeout, is a failure of the mirror.
func unknownOutcome(err error) bool {
	if errors.Is(err, client.ErrNoPrimary) {
		return false
	}
	return errors.Is(err, wire.ErrOutcomeUnknown) || errors.Is(err, client.ErrConnLost)
}

// unavailable is how long after the fault at `at` the first write sent after it was acknowledged, given the calls
// ordered by acknowledgement; ok is false when there is none. Writes sent before the fault do not count: an
// acknowledgement already on its way from the old primary says nothing about the new one.
func unavailable(calls []call, at time.Duration) (time.Duration, bool) {
	for i := sort.Search(len(calls), func(k int) bool { return calls[k].end > at }); i < len(calls); i++ {
		if calls[i].start > at {
			return calls[i].end - at, true
		}
	}
	return 0, false
}

// summarizeUnplanned turns the fault runs into the result.
func summarizeUnplanned(c *unplannedCmd, runs []faultRun) mirrorresult.Unplanned {
	res := mirrorresult.Unplanned{System: mirrorresult.SystemUnplanned, QoSMs: ms(c.QoS), Clients: c.Clients, Conns: c.Conns,
		AttemptTimeoutMs: ms(c.AttemptTimeout), DialTimeoutMs: ms(c.DialTimeout), SteadyMs: ms(c.Steady)}
	var allErrs []callError
	for _, fault := range c.Faults {
		// A fault the run did not get to is listed with no round.
		fr := faultRun{fault: fault}
		if i := slices.IndexFunc(runs, func(r faultRun) bool { return r.fault == fault }); i >= 0 {
			fr = runs[i]
		}
		f, rounds := summarizeFault(fr, c.Rounds)
		res.Faults = append(res.Faults, f)
		res.Rounds = append(res.Rounds, rounds...)
		res.Commits += f.Commits
		res.Errors += f.Errors
		res.UnknownOutcomes += f.UnknownOutcomes
		if f.Missing < 0 || res.Missing < 0 {
			res.Missing = -1
		} else {
			res.Missing += f.Missing
		}
		for _, e := range fr.errs {
			if !unknownOutcome(e.err) {
				allErrs = append(allErrs, e)
			}
		}
	}
	res.ErrorSamples = errorSamples(allErrs)
	return res
}

// summarizeFault computes one fault kind's rounds and their percentiles from its load's calls (ordered by
// acknowledgement) and errors (ordered by time).
func summarizeFault(fr faultRun, requested int) (mirrorresult.UnplannedFault, []mirrorresult.UnplannedRound) {
	f := mirrorresult.UnplannedFault{Fault: fr.fault, Requested: requested, Rounds: len(fr.outages), Commits: len(fr.calls),
		Missing: fr.missing}
	for _, e := range fr.errs {
		if unknownOutcome(e.err) {
			f.UnknownOutcomes++
		} else {
			f.Errors++
		}
	}
	var rounds []mirrorresult.UnplannedRound
	var downs, takeovers []time.Duration
	for i, o := range fr.outages {
		next := fr.end
		if i+1 < len(fr.outages) {
			next = fr.outages[i+1].fault
		}
		down, ok := unavailable(fr.calls, o.fault)
		if !ok {
			down = fr.end - o.fault
		}
		r := mirrorresult.UnplannedRound{Fault: fr.fault, Round: o.round, From: o.from, To: o.to, FromEpoch: o.fromEpoch,
			ToEpoch: o.toEpoch, UnavailableMs: ms(down), TakeoverMs: ms(o.takeover), HealMs: ms(o.heal), HealthyMs: ms(o.healthy)}
		lo := sort.Search(len(fr.errs), func(k int) bool { return fr.errs[k].at >= o.fault })
		hi := sort.Search(len(fr.errs), func(k int) bool { return fr.errs[k].at >= next })
		for _, e := range fr.errs[lo:hi] {
			if unknownOutcome(e.err) {
				r.UnknownOutcomes++
			} else {
				r.Errors++
			}
		}
		rounds = append(rounds, r)
		downs, takeovers = append(downs, down), append(takeovers, o.takeover)
	}
	if len(downs) > 0 {
		slices.Sort(downs)
		slices.Sort(takeovers)
		f.P50Ms, f.P99Ms = ms(latency.Percentile(downs, 50)), ms(latency.Percentile(downs, 99))
		f.MinMs, f.MaxMs = ms(downs[0]), ms(downs[len(downs)-1])
		f.TakeoverP50Ms, f.TakeoverMaxMs = ms(latency.Percentile(takeovers, 50)), ms(takeovers[len(takeovers)-1])
	}
	return f, rounds
}

// unplannedFailed says what makes the run a failure: rounds not completed, client errors other than unknown outcomes,
// lost writes; "" when there is none.
func unplannedFailed(res mirrorresult.Unplanned) string {
	var out []string
	if res.Failure != "" {
		out = append(out, res.Failure)
	}
	if res.Errors > 0 {
		out = append(out, fmt.Sprintf("%d client calls failed: %s", res.Errors, strings.Join(res.ErrorSamples, "; ")))
	}
	if res.Missing != 0 {
		out = append(out, fmt.Sprintf("acknowledged writes missing on the final primary: %d (-1: not checked)", res.Missing))
	}
	return strings.Join(out, "; ")
}

func printUnplanned(w io.Writer, res mirrorresult.Unplanned) error {
	var b strings.Builder
	for _, r := range res.Rounds {
		fmt.Fprintf(&b, "%s %d: %s (epoch %d) -> %s (epoch %d): unavailable %.0f ms, takeover seen after %.0f ms, healed at %.0f ms, healthy at %.0f ms, %d errors (%d unknown outcomes)\n",
			r.Fault, r.Round, r.From, r.FromEpoch, r.To, r.ToEpoch, r.UnavailableMs, r.TakeoverMs, r.HealMs, r.HealthyMs, r.Errors, r.UnknownOutcomes)
	}
	for _, f := range res.Faults {
		fmt.Fprintf(&b, "%s: %d of %d rounds, unavailable p50 %.0f ms, p99 %.0f ms, min %.0f ms, max %.0f ms; %d commits, %d errors, %d unknown outcomes, %d missing\n",
			f.Fault, f.Rounds, f.Requested, f.P50Ms, f.P99Ms, f.MinMs, f.MaxMs, f.Commits, f.Errors, f.UnknownOutcomes, f.Missing)
	}
	fmt.Fprintf(&b, "QoS %.0f ms, %d clients: %d commits, %d errors, %d unknown outcomes, %d acknowledged writes missing\n",
		res.QoSMs, res.Clients, res.Commits, res.Errors, res.UnknownOutcomes, res.Missing)
	return writeReport(w, &b, res.ErrorSamples, res.Failure)
}
