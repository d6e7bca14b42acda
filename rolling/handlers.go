package rolling

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/agent"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/server"
	"github.com/mirrorkit/mirrorkit/engine/version"
	"github.com/mirrorkit/mirrorkit/internal/mirrorctl"
	"github.com/mirrorkit/mirrorkit/plans"
)

// Pre-check names.
const (
	checkPrimary       = "expected-primary"
	checkPrimaryEither = "expected-primary-or-new"
	checkMembers       = "members"
	checkMember        = "member"
	checkAgents        = "agents"
	checkAgent         = "agent"
	checkBackup        = "backup-active"
	checkAsyncs        = "asyncs-current"
	checkDatabases     = "databases"
	checkArbiter       = "arbiter"
	checkRetention     = "journal-retention"
	checkDisk          = "disk-space"
	checkBinary        = "binary-checksum"
	checkNoFailover    = "no-failover-clear"
)

// transientWait is how long a failing pre-check is retried when a step runs (not in a dry run).
const transientWait = 30 * time.Second

// Env is what the steps of one plan act on.
type Env struct {
	Plan *plans.Plan
	Opts Options
	// Output receives the database change command's output (default os.Stderr).
	Output io.Writer
	// DryRun defers the pre-checks that depend on who is primary for the steps that follow a failover of the plan: they
	// are checked when the step runs.
	DryRun bool

	mu     sync.Mutex
	cached *mirrorctl.Fleet // every member's admin API, resolved once; dropped when a call to a member fails
}

// NewEnv is the environment of plan p; o supplies how to reach members and agents (its Target and Procedure are taken
// from the plan).
func NewEnv(p *plans.Plan, o Options) (*Env, error) {
	if p.Tool != Tool {
		return nil, fmt.Errorf("plan %s is a %q plan, not an upgrade plan", p.ID, p.Tool)
	}
	for _, k := range []string{"mirror", "sha256", "source", "software", "level", "primary"} {
		if p.Params[k] == "" {
			return nil, fmt.Errorf("upgrade plan %s lacks its %q parameter", p.ID, k)
		}
	}
	return &Env{Plan: p, Opts: o, Output: os.Stderr}, nil
}

func (e *Env) param(k string) string { return e.Plan.Params[k] }

func (e *Env) targetLevel() int { n, _ := strconv.Atoi(e.param("level")); return n }

// members are the plan's member names.
func (e *Env) members() []string {
	var out []string
	for k := range e.Plan.Params {
		if name, ok := strings.CutPrefix(k, "from."); ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func (e *Env) wait() time.Duration {
	if e.Opts.Wait > 0 {
		return e.Opts.Wait
	}
	return 10 * time.Minute
}

// fleet is the mirror's members with their admin APIs. They are resolved (a handshake with every member) once and kept
// while every member was reachable, so that the steps' many status polls cost one admin call each; a failed call drops
// them (forget), and the next use resolves them again.
func (e *Env) fleet(ctx context.Context) (*mirrorctl.Fleet, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cached != nil {
		return e.cached, nil
	}
	addrs := strings.Split(e.param("addrs"), ",")
	addrs = append(addrs, strings.Split(e.param("member_addrs"), ",")...)
	addrs = slices.DeleteFunc(addrs, func(s string) bool { return s == "" })
	f, err := mirrorctl.Connect(ctx, addrs, e.param("mirror"), e.Opts.Ctl)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(f.Members, func(m *mirrorctl.Member) bool { return m.AdminURL == "" }) {
		e.cached = f
	}
	return f, nil
}

// forget drops the resolved members after a failed call, and passes err on.
func (e *Env) forget(err error) error {
	if err != nil {
		e.mu.Lock()
		e.cached = nil
		e.mu.Unlock()
	}
	return err
}

// live is the mirror as its serving primary sees it.
type live struct {
	f       *mirrorctl.Fleet
	primary *mirrorctl.Member
	st      mirror.Status
}

// livePrimary finds the member that serves as primary now: the first member that answers names it, and it is asked.
func (e *Env) livePrimary(ctx context.Context) (live, error) {
	f, err := e.fleet(ctx)
	if err != nil {
		return live{}, err
	}
	var st mirror.Status
	var errs []error
	for _, m := range f.Members {
		if st, err = m.Local(ctx); err == nil {
			break
		}
		errs = append(errs, err)
	}
	if err != nil {
		return live{}, e.forget(fmt.Errorf("no member of mirror %s answers: %w", f.Mirror, errors.Join(errs...)))
	}
	pm, err := f.Member(st.Primary)
	if err != nil {
		return live{}, e.forget(err)
	}
	if st.Member != pm.Name {
		if st, err = pm.Local(ctx); err != nil {
			return live{}, e.forget(err)
		}
	}
	if st.Role != mirror.RolePrimary.String() {
		return live{}, fmt.Errorf("no member serves as primary of mirror %s yet (%s is %s)", f.Mirror, pm.Name, st.Role)
	}
	return live{f: f, primary: pm, st: st}, nil
}

func (l live) row(name string) (mirror.MemberStatus, bool) {
	i := slices.IndexFunc(l.st.Members, func(r mirror.MemberStatus) bool { return r.Name == name })
	if i < 0 {
		return mirror.MemberStatus{}, false
	}
	return l.st.Members[i], true
}

func (e *Env) agent(name string) (*agent.Client, error) {
	addr := e.param("agent." + name)
	if a, ok := e.Opts.Agents[name]; ok {
		addr = a
	}
	if addr == "" {
		return nil, fmt.Errorf("member %s has no host agent address in the plan", name)
	}
	return agent.NewClient(addr, e.Opts.AgentTLS, e.Opts.AgentToken), nil
}

// waitFor retries f until it succeeds, fails permanently, or the wait ends.
func (e *Env) waitFor(ctx context.Context, f func() error) error {
	return plans.WaitFor(ctx, e.wait(), 50*time.Millisecond, f)
}

func result(name string, err error, detail string) plans.CheckResult {
	if err != nil {
		return plans.CheckResult{Name: name, Detail: err.Error()}
	}
	return plans.CheckResult{Name: name, OK: true, Detail: detail}
}

// Handlers carry out the steps of env's plan.
func Handlers(env *Env) plans.Handlers {
	checks := func(ctx context.Context, s *plans.Step) []plans.CheckResult {
		out := make([]plans.CheckResult, 0, len(s.Checks))
		expect := s.Args["primary"]
		if s.Kind == KindFailover {
			expect = s.Args["from"]
		}
		for _, c := range s.Checks {
			if env.DryRun && expect != "" && expect != env.param("primary") && slices.Contains([]string{checkPrimary, checkPrimaryEither, checkBackup}, c.Name) {
				out = append(out, plans.CheckResult{Name: c.Name, OK: true, Detail: "checked when the step runs, after the failover to " + expect})
				continue
			}
			detail, err := env.check(ctx, c.Name, s)
			if err != nil && !env.DryRun && c.Name != checkBinary {
				// A step resumed after a crash may find its member restarting or a failover settling: what is only
				// in transition gets a little time before the check counts as failed.
				deadline := time.Now().Add(min(env.wait()/2, transientWait))
				for err != nil && time.Now().Before(deadline) && ctx.Err() == nil {
					time.Sleep(200 * time.Millisecond)
					detail, err = env.check(ctx, c.Name, s)
				}
			}
			out = append(out, result(c.Name, err, detail))
		}
		return out
	}
	return plans.Handlers{
		KindPreflight: {Checks: checks, Run: func(context.Context, *plans.Step, plans.Events) error { return nil }},
		KindInstall:   {Checks: checks, Run: env.install, Verify: env.verifyInstall, Undo: env.undoInstall},
		KindNoFailover: {Checks: checks, Run: func(ctx context.Context, s *plans.Step, _ plans.Events) error {
			return env.setNoFailover(ctx, s, s.Args["on"] == "true")
		}, Verify: func(ctx context.Context, s *plans.Step) error {
			return env.verifyNoFailover(ctx, s.Args["on"] == "true")
		}, Undo: func(ctx context.Context, s *plans.Step) error {
			return env.setNoFailover(ctx, s, s.Args["on"] != "true")
		}},
		KindFailover: {Checks: checks, Run: func(ctx context.Context, s *plans.Step, _ plans.Events) error {
			return env.failover(ctx, s.Args["from"], s.Args["to"])
		}, Verify: func(ctx context.Context, s *plans.Step) error {
			return env.verifyPrimary(ctx, s.Args["to"])
		}, Undo: func(ctx context.Context, s *plans.Step) error {
			if err := env.allowLevelFor(ctx, s.Args["from"]); err != nil {
				return err
			}
			if err := env.waitActiveBackup(ctx, s.Args["from"]); err != nil {
				return err
			}
			if err := env.failover(ctx, s.Args["to"], s.Args["from"]); err != nil {
				return err
			}
			return env.verifyPrimary(ctx, s.Args["from"])
		}},
		KindDBChange: {Checks: checks, Run: env.dbChange},
		KindStop: {Checks: checks, Run: func(ctx context.Context, s *plans.Step, _ plans.Events) error {
			return env.stop(ctx, s.Member)
		}, Verify: func(ctx context.Context, s *plans.Step) error {
			return env.waitRunning(ctx, s.Member, false)
		}, Undo: func(ctx context.Context, s *plans.Step) error {
			return env.start(ctx, s.Member)
		}},
		KindStart: {Checks: checks, Run: func(ctx context.Context, s *plans.Step, _ plans.Events) error {
			return env.start(ctx, s.Member)
		}, Verify: func(ctx context.Context, s *plans.Step) error {
			return env.waitVersion(ctx, s.Member, env.param("software"), env.targetLevel(), true)
		}, Undo: func(ctx context.Context, s *plans.Step) error {
			return env.stop(ctx, s.Member)
		}},
	}
}

// check evaluates one pre-check of step s.
func (e *Env) check(ctx context.Context, name string, s *plans.Step) (string, error) {
	switch name {
	case checkPrimary, checkPrimaryEither:
		l, err := e.livePrimary(ctx)
		if err != nil {
			return "", err
		}
		want := []string{s.Args["primary"]}
		if name == checkPrimaryEither {
			want = []string{s.Args["from"], s.Args["to"]}
		}
		if !slices.Contains(want, l.st.Primary) {
			return "", fmt.Errorf("the primary is %s, not %s as the plan expects: another operator or a failover moved it; make a new plan",
				l.st.Primary, strings.Join(want, " or "))
		}
		return "primary " + l.st.Primary, nil
	case checkMembers:
		var got []string
		for _, m := range e.members() {
			d, err := e.memberVersion(ctx, m)
			if err != nil {
				return "", err
			}
			got = append(got, d)
		}
		return strings.Join(got, "; "), nil
	case checkMember:
		return e.memberVersion(ctx, s.Member)
	case checkAgents, checkAgent:
		names := []string{s.Member}
		if name == checkAgents {
			names = e.members()
		}
		for _, m := range names {
			a, err := e.agent(m)
			if err != nil {
				return "", err
			}
			if _, err := a.Member(ctx, m); err != nil {
				return "", fmt.Errorf("agent of %s: %w", m, err)
			}
		}
		return fmt.Sprintf("%d agent(s) answer", len(names)), nil
	case checkBackup:
		l, err := e.livePrimary(ctx)
		if err != nil {
			return "", err
		}
		backup := s.Args["to"]
		for _, r := range l.st.Members {
			if backup == "" && r.Name != l.st.Primary && memberType(r.Type) == string(mirror.Failover) {
				backup = r.Name
			}
		}
		r, ok := l.row(backup)
		if !ok || backup == l.st.Primary {
			if s.Kind == KindFailover && backup == l.st.Primary {
				return backup + " is already the primary", nil
			}
			return "", fmt.Errorf("mirror %s has no backup %s", l.f.Mirror, backup)
		}
		if r.JournalTransfer != mirror.TransferActive {
			return "", fmt.Errorf("the backup %s is not Active (%s %s) %s", backup, r.Status, r.JournalTransfer, r.Error)
		}
		return backup + " is Active", nil
	case checkAsyncs:
		l, err := e.livePrimary(ctx)
		if err != nil {
			return "", err
		}
		var bad []string
		for _, r := range l.st.Members {
			if r.Name == l.st.Primary {
				continue
			}
			if r.JournalTransfer != mirror.TransferActive && r.JournalTransfer != mirror.CaughtUp {
				bad = append(bad, fmt.Sprintf("%s: journal transfer %s", r.Name, r.JournalTransfer))
			}
			if strings.HasPrefix(r.Dejournaling, "Warning") {
				bad = append(bad, fmt.Sprintf("%s: %s", r.Name, r.Dejournaling))
			}
		}
		if len(bad) > 0 {
			return "", errors.New(strings.Join(bad, "; "))
		}
		return "every member caught up", nil
	case checkDatabases:
		f, err := e.fleet(ctx)
		if err != nil {
			return "", err
		}
		var bad []string
		for _, m := range f.Members {
			st, err := m.Local(ctx)
			if err != nil {
				return "", e.forget(err)
			}
			for _, d := range st.Databases {
				if !slices.Contains([]string{mirror.DBNormal, mirror.DBDejournaling, mirror.DBCatchupRun}, d.Status) {
					bad = append(bad, fmt.Sprintf("%s on %s is %s %s", d.Name, m.Name, d.Status, d.Error))
				}
			}
		}
		if len(bad) > 0 {
			return "", errors.New(strings.Join(bad, "; "))
		}
		return "every database is current", nil
	case checkArbiter:
		l, err := e.livePrimary(ctx)
		if err != nil {
			return "", err
		}
		if l.st.ArbiterAddr == "" {
			return "the mirror has no arbiter", nil
		}
		if l.st.ArbiterConnection != mirror.ArbiterBoth {
			return "", fmt.Errorf("arbiter %s: %s", l.st.ArbiterAddr, l.st.ArbiterConnection)
		}
		return l.st.ArbiterConnection, nil
	case checkRetention:
		return e.checkRetention(ctx)
	case checkDisk:
		return e.checkDisk(ctx)
	case checkBinary:
		t, err := Inspect(ctx, e.param("source"))
		if err != nil {
			return "", err
		}
		if t.SHA256 != e.param("sha256") {
			return "", fmt.Errorf("the binary at %s has SHA-256 %s now, the plan was made for %s: make a new plan", t.Source, t.SHA256, e.param("sha256"))
		}
		return t.Describe(), nil
	case checkNoFailover:
		l, err := e.livePrimary(ctx)
		if err != nil {
			return "", err
		}
		if l.st.NoFailover {
			return "", fmt.Errorf("no-failover is set on %s: someone is servicing the mirror; clear it when they are done", l.st.Primary)
		}
		return "clear", nil
	}
	return "", fmt.Errorf("unknown pre-check %q", name)
}

// memberVersion checks that a member answers and runs its version from the plan or the target.
func (e *Env) memberVersion(ctx context.Context, name string) (string, error) {
	st, err := e.status(ctx, name)
	if err != nil {
		return "", err
	}
	v := st.Version
	from, target := e.param("from."+name), e.param("software")
	if v.Software != from && v.Software != target {
		return "", fmt.Errorf("%s runs %s, neither %s (when the plan was made) nor the target %s: make a new plan", name, v.Software, from, target)
	}
	return fmt.Sprintf("%s runs %s", name, v.Software), nil
}

func (e *Env) status(ctx context.Context, name string) (server.Status, error) {
	f, err := e.fleet(ctx)
	if err != nil {
		return server.Status{}, err
	}
	m, err := f.Member(name)
	if err != nil {
		return server.Status{}, err
	}
	st, err := m.Status(ctx)
	return st, e.forget(err)
}

// checkRetention: a member that restarts must find the journal it needs on the primary, and the primary must keep the
// journal of an async that is away for the whole upgrade.
func (e *Env) checkRetention(ctx context.Context) (string, error) {
	l, err := e.livePrimary(ctx)
	if err != nil {
		return "", err
	}
	first, err := journal.ParsePosition(l.st.JournalFirst)
	if err != nil {
		return "", fmt.Errorf("the primary's journal start %q: %w", l.st.JournalFirst, err)
	}
	for _, r := range l.st.Members {
		if r.Received == "" {
			continue
		}
		if got, err := journal.ParsePosition(r.Received); err == nil && got.Less(first) {
			return "", fmt.Errorf("%s has the journal up to %s, but the primary keeps it only from %s", r.Name, got, first)
		}
	}
	var total time.Duration
	for _, s := range e.Plan.Steps {
		total += time.Duration(s.Estimate)
	}
	hold, err := time.ParseDuration(l.st.AsyncHoldback)
	if err != nil {
		return "", fmt.Errorf("the primary's async holdback %q: %w", l.st.AsyncHoldback, err)
	}
	if hold < 10*total {
		return "", fmt.Errorf("the primary keeps the journal of a disconnected async for %s only, the upgrade is estimated at %s: raise async_holdback", hold, total)
	}
	return fmt.Sprintf("journal from %s kept; async holdback %s for an upgrade of about %s", first, hold, total), nil
}

// checkDisk: each member's data directory must hold two more binaries (the new one and the previous one kept).
func (e *Env) checkDisk(ctx context.Context) (string, error) {
	size, err := strconv.ParseInt(e.param("size"), 10, 64)
	if err != nil || size <= 0 {
		size = 256 << 20
	}
	need := 2*size + 64<<20
	var lines []string
	for _, m := range e.members() {
		a, err := e.agent(m)
		if err != nil {
			return "", err
		}
		info, err := a.Binary(ctx, m)
		if err != nil {
			return "", fmt.Errorf("agent of %s: %w", m, err)
		}
		if info.FreeBytes < uint64(need) {
			return "", fmt.Errorf("%s's data directory has %d MiB free, the upgrade needs %d MiB", m, info.FreeBytes>>20, need>>20)
		}
		lines = append(lines, fmt.Sprintf("%s %d MiB free", m, info.FreeBytes>>20))
	}
	return strings.Join(lines, ", "), nil
}

// install has the member's agent install the target binary (unless it already holds it) and restart the member.
func (e *Env) install(ctx context.Context, s *plans.Step, _ plans.Events) error {
	a, err := e.agent(s.Member)
	if err != nil {
		return err
	}
	restart := s.Args["restart"] != "false"
	info, err := a.Binary(ctx, s.Member)
	if err != nil {
		return fmt.Errorf("agent of %s: %w", s.Member, err)
	}
	if info.SHA256 == e.param("sha256") {
		// Installed by an earlier run of this step: make sure the member runs it (a restart interrupted by a crash may
		// have left it stopped, or still running the previous binary).
		if !restart {
			return nil
		}
		st, err := a.Member(ctx, s.Member)
		if err != nil {
			return err
		}
		if st.Running {
			if ms, err := e.status(ctx, s.Member); err == nil && ms.Version.Software == e.param("software") && ms.Version.Level == e.targetLevel() {
				return nil
			}
			if err := a.Stop(ctx, s.Member); err != nil {
				return err
			}
		}
		return a.Start(ctx, s.Member)
	}
	_, err = a.Install(ctx, s.Member, e.param("source"), e.param("sha256"), restart)
	return err
}

func (e *Env) verifyInstall(ctx context.Context, s *plans.Step) error {
	if s.Args["restart"] == "false" {
		a, err := e.agent(s.Member)
		if err != nil {
			return err
		}
		info, err := a.Binary(ctx, s.Member)
		if err == nil && info.SHA256 != e.param("sha256") {
			err = fmt.Errorf("%s's agent holds %s, not the plan's binary", s.Member, info.SHA256)
		}
		return err
	}
	return e.waitVersion(ctx, s.Member, e.param("software"), e.targetLevel(), true)
}

// undoInstall puts the member's previous binary back: first the primary is told to accept the older format level again
// (refused once the upgrade is finalized), then the agent swaps the binaries and restarts the member.
func (e *Env) undoInstall(ctx context.Context, s *plans.Step) error {
	a, err := e.agent(s.Member)
	if err != nil {
		return err
	}
	info, err := a.Binary(ctx, s.Member)
	if err != nil {
		return fmt.Errorf("agent of %s: %w", s.Member, err)
	}
	if info.SHA256 == e.param("sha256") {
		if s.Args["restart"] != "false" {
			if err := e.allowLevelFor(ctx, s.Member); err != nil {
				return err
			}
		}
		if _, err := a.RollbackBinary(ctx, s.Member); err != nil {
			return err
		}
	}
	if s.Args["restart"] == "false" {
		return nil
	}
	level, _ := strconv.Atoi(e.param("from_level." + s.Member))
	return e.waitVersion(ctx, s.Member, e.param("from."+s.Member), level, true)
}

// allowLevelFor lowers the level the primary requires of failover and DR members to the level member ran before the
// upgrade, so that it can receive the journal (and be failed over to) with its previous binary.
func (e *Env) allowLevelFor(ctx context.Context, member string) error {
	level, err := strconv.Atoi(e.param("from_level." + member))
	if err != nil {
		return fmt.Errorf("plan has no format level for %s", member)
	}
	if t := e.param("type." + member); t != string(mirror.Failover) && t != string(mirror.DR) {
		return nil
	}
	l, err := e.livePrimary(ctx)
	if err != nil {
		return err
	}
	if l.st.PrimaryLevel <= level {
		return nil
	}
	return l.primary.MirrorPost(ctx, "allow-level", server.AllowLevelRequest{Level: level}, nil)
}

// waitVersion waits until the member runs software at level and, if inMirror, is back in the mirror: the Active backup,
// or an async that has caught up.
func (e *Env) waitVersion(ctx context.Context, name, software string, level int, inMirror bool) error {
	return e.waitFor(ctx, func() error {
		st, err := e.status(ctx, name)
		if err != nil {
			return err
		}
		if st.Version.Software != software || st.Version.Level != level {
			return fmt.Errorf("%s runs %s (format level %d), not %s (format level %d) yet", name, st.Version.Software, st.Version.Level, software, level)
		}
		if !inMirror {
			return nil
		}
		l, err := e.livePrimary(ctx)
		if err != nil {
			return err
		}
		if l.st.Primary == name {
			return nil
		}
		r, ok := l.row(name)
		switch {
		case !ok:
			return plans.Permanent(fmt.Errorf("%s is no longer a member of mirror %s", name, l.f.Mirror))
		case r.JournalTransfer != mirror.TransferActive && r.JournalTransfer != mirror.CaughtUp:
			return fmt.Errorf("%s runs %s but has not caught up with the primary %s yet (%s %s) %s", name, software, l.st.Primary, r.Status, r.JournalTransfer, r.Error)
		case memberType(r.Type) == string(mirror.Failover) && r.JournalTransfer != mirror.TransferActive:
			return fmt.Errorf("%s is not the Active backup yet (%s)", name, r.JournalTransfer)
		}
		return nil
	})
}

func (e *Env) setNoFailover(ctx context.Context, s *plans.Step, on bool) error {
	l, err := e.livePrimary(ctx)
	if err != nil {
		return err
	}
	if l.st.NoFailover == on {
		return nil
	}
	return l.primary.MirrorPost(ctx, "no-failover", server.MirrorActionRequest{On: on}, nil)
}

func (e *Env) verifyNoFailover(ctx context.Context, on bool) error {
	l, err := e.livePrimary(ctx)
	if err != nil {
		return err
	}
	if l.st.NoFailover != on {
		return fmt.Errorf("no-failover on %s is %v, want %v", l.st.Primary, l.st.NoFailover, on)
	}
	return nil
}

// failover hands the primary role from `from` to `to` (nothing to do when `to` already has it).
func (e *Env) failover(ctx context.Context, from, to string) error {
	var l live
	err := e.waitFor(ctx, func() error {
		var err error
		l, err = e.livePrimary(ctx)
		return err
	})
	if err != nil {
		return err
	}
	switch l.st.Primary {
	case to:
		return nil
	case from:
	default:
		return fmt.Errorf("the primary is %s, neither %s nor %s: make a new plan", l.st.Primary, from, to)
	}
	if err := e.waitActiveBackup(ctx, to); err != nil {
		return err
	}
	return l.primary.MirrorPost(ctx, "failover", nil, nil)
}

func (e *Env) waitActiveBackup(ctx context.Context, name string) error {
	return e.waitFor(ctx, func() error {
		l, err := e.livePrimary(ctx)
		if err != nil {
			return err
		}
		if l.st.Primary == name {
			return nil
		}
		r, ok := l.row(name)
		if !ok {
			return plans.Permanent(fmt.Errorf("%s is no longer a member of mirror %s", name, l.f.Mirror))
		}
		if r.JournalTransfer != mirror.TransferActive {
			return fmt.Errorf("%s is not the Active backup of %s (%s %s) %s", name, l.st.Primary, r.Status, r.JournalTransfer, r.Error)
		}
		return nil
	})
}

func (e *Env) verifyPrimary(ctx context.Context, name string) error {
	return e.waitFor(ctx, func() error {
		l, err := e.livePrimary(ctx)
		if err != nil {
			return err
		}
		if l.st.Primary != name {
			return fmt.Errorf("the primary is %s, not %s", l.st.Primary, name)
		}
		if r, ok := l.row(name); !ok || r.Status != mirror.StatusPrimary {
			return fmt.Errorf("%s is primary but not serving yet (%s)", name, r.Status)
		}
		return nil
	})
}

// dbChange runs the operator's command against the new primary. It must be idempotent: a run interrupted by a crash
// runs it again.
func (e *Env) dbChange(ctx context.Context, s *plans.Step, _ plans.Events) error {
	l, err := e.livePrimary(ctx)
	if err != nil {
		return err
	}
	st, err := l.primary.Status(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", s.Args["cmd"])
	cmd.Env = append(os.Environ(),
		"MIRRORKIT_MIRROR="+l.f.Mirror,
		"MIRRORKIT_PRIMARY="+l.primary.Name,
		"MIRRORKIT_PRIMARY_ADDR="+l.primary.DataAddr,
		"MIRRORKIT_PRIMARY_ADMIN="+st.AdminAddr,
	)
	cmd.Stdout, cmd.Stderr = e.Output, e.Output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("database change command %q on %s: %w", s.Args["cmd"], l.primary.Name, err)
	}
	return nil
}

func (e *Env) stop(ctx context.Context, name string) error {
	a, err := e.agent(name)
	if err != nil {
		return err
	}
	return a.Stop(ctx, name)
}

func (e *Env) start(ctx context.Context, name string) error {
	a, err := e.agent(name)
	if err != nil {
		return err
	}
	st, err := a.Member(ctx, name)
	if err != nil || st.Running {
		return err
	}
	return a.Start(ctx, name)
}

func (e *Env) waitRunning(ctx context.Context, name string, running bool) error {
	a, err := e.agent(name)
	if err != nil {
		return err
	}
	return e.waitFor(ctx, func() error {
		st, err := a.Member(ctx, name)
		if err == nil && st.Running != running {
			err = fmt.Errorf("%s: running %v, want %v", name, st.Running, running)
		}
		return err
	})
}

// CheckRollback refuses a rollback once the mirror has been finalized at a format level that members going back to their
// previous binaries could not read.
func (e *Env) CheckRollback(ctx context.Context) error {
	l, err := e.livePrimary(ctx)
	if err != nil {
		return err
	}
	var older []string
	for _, m := range e.members() {
		if lv, _ := strconv.Atoi(e.param("from_level." + m)); lv < l.st.FinalizedLevel {
			older = append(older, fmt.Sprintf("%s ran %s", m, version.Describe(e.param("from."+m), lv)))
		}
	}
	if len(older) > 0 {
		return fmt.Errorf("rollback refused: mirror %s was finalized at format level %d, and its journal is written in that format, which %s cannot read; an upgrade can be rolled back only before `upgrade finalize`",
			l.f.Mirror, l.st.FinalizedLevel, strings.Join(older, ", "))
	}
	return nil
}
