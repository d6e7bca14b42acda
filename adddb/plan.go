package adddb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/mirrorctl"
	"github.com/mirrorkit/mirrorkit/plans"
	"github.com/mirrorkit/mirrorkit/restore"
)

// Methods of bringing copies to the other members.
const (
	MethodBackup   = "backup"
	MethodCopy     = "copy"
	MethodDownload = "download"
)

// Step kinds of an add-db plan.
const (
	KindAdd      = "add-to-mirror"
	KindBackup   = "backup"
	KindRestore  = "restore"
	KindCopy     = "copy"
	KindDownload = "download"
)

// Env is what the steps act on.
type Env struct {
	Fleet   *mirrorctl.Fleet
	Target  backup.Target // the stage (backup method only)
	Stage   string        // the stage as the operator named it
	Backup  backup.Options
	Restore restore.Options
	// Wait bounds how long a step waits for a copy to catch up (default 30 minutes).
	Wait time.Duration
}

// Assumed rates for the estimates (a 2-core machine on loopback measures more; networks and disks differ).
const (
	backupRate  = 150 << 20
	restoreRate = 200 << 20
	copyRate    = 200 << 20
)

func estimate(bytes int64, rate int64) plans.Duration {
	d := time.Second + time.Duration(float64(bytes)/float64(rate)*float64(time.Second))
	return plans.Duration(d.Round(time.Second))
}

// Build makes the plan that adds db to the mirror with the method: the add on the primary, then a copy on every other
// member, each verified to be dejournaling.
func Build(ctx context.Context, env *Env, db, method string) (*plans.Plan, error) {
	canon, err := store.CanonicalDatabaseName(db)
	if err != nil {
		return nil, err
	}
	switch method {
	case MethodBackup:
		if env.Target == nil {
			return nil, errors.New("the backup method needs a stage: --stage DIR or --stage s3://bucket/prefix")
		}
	case MethodCopy, MethodDownload:
	default:
		return nil, fmt.Errorf("method %q: want backup, copy or download", method)
	}
	f := env.Fleet
	primary, err := f.PrimaryMember()
	if err != nil {
		return nil, err
	}
	var size int64
	if info, err := primary.Database(ctx, canon); err == nil {
		size = int64(info.Bytes)
	}
	p := plans.New("migrate add-db", fmt.Sprintf("add database %s to mirror %s by %s", canon, f.Mirror, method),
		map[string]string{"mirror": f.Mirror, "db": canon, "method": method, "stage": env.Stage, "primary": primary.Name})
	args := func(kv ...string) map[string]string {
		m := map[string]string{"db": canon}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	guard := plans.Check{Name: "expected-primary", Title: fmt.Sprintf("%s is still the primary of mirror %s", primary.Name, f.Mirror)}
	p.Add(plans.Step{Kind: KindAdd, Member: primary.Name, Args: args(),
		Title:    fmt.Sprintf("add %s, with its data, to mirror %s on the primary", canon, f.Mirror),
		Checks:   []plans.Check{guard, {Name: "database", Title: fmt.Sprintf("%s exists on %s, mounted, local or already in this mirror", canon, primary.Name)}},
		Verify:   fmt.Sprintf("%s is Normal in mirror %s on %s", canon, f.Mirror, primary.Name),
		Undo:     fmt.Sprintf("take %s out of the mirror again on %s (it stays there as a local database)", canon, primary.Name),
		Estimate: plans.Duration(time.Second)})
	id := NewBackupID(time.Now())
	if method == MethodBackup {
		p.Add(plans.Step{Kind: KindBackup, Member: primary.Name, Args: args("backup", id),
			Title:    fmt.Sprintf("back up %s from %s to %s (backup %s)", canon, primary.Name, env.Stage, id),
			Checks:   []plans.Check{guard, {Name: "stage", Title: "the stage can be listed"}, {Name: "source", Title: fmt.Sprintf("%s is mounted on %s", canon, primary.Name)}},
			Verify:   "the manifest is stored and every chunk it lists is present with its size",
			Estimate: estimate(size, backupRate)})
	}
	from := primary.Name
	for _, m := range f.Others() {
		step := plans.Step{Member: m.Name, Args: args(), Verify: fmt.Sprintf("%s on %s is Dejournaling", canon, m.Name),
			Undo: fmt.Sprintf("delete the copy of %s on %s", canon, m.Name),
			Checks: []plans.Check{guard, {Name: "member", Title: fmt.Sprintf("%s is reachable and in mirror %s", m.Name, f.Mirror)},
				{Name: "free", Title: fmt.Sprintf("%s has no mounted copy of %s, or a current one", m.Name, canon)}}}
		switch method {
		case MethodBackup:
			step.Kind, step.Args["backup"] = KindRestore, id
			step.Title = fmt.Sprintf("restore backup %s onto %s, activate, catch up", id, m.Name)
			step.Checks = append(step.Checks, plans.Check{Name: "journal", Title: "the primary still holds the mirror journal from the backup's position"})
			step.Estimate = estimate(size, restoreRate)
		case MethodCopy:
			step.Kind, step.Args["from"] = KindCopy, from
			step.Title = fmt.Sprintf("copy %s from %s to %s, activate, catch up", canon, from, m.Name)
			step.Checks = append(step.Checks, plans.Check{Name: "source", Title: fmt.Sprintf("%s is reachable", from)})
			step.Estimate = estimate(size, copyRate)
			from = m.Name // the next member copies from this one, sparing the primary
		case MethodDownload:
			step.Kind = KindDownload
			step.Title = fmt.Sprintf("create %s in the mirror on %s: it downloads a copy from a member with a current one, then catches up", canon, m.Name)
			step.Estimate = estimate(size, copyRate)
		}
		p.Add(step)
	}
	return p, nil
}

// Handlers carry out the steps against env.
func Handlers(env *Env) plans.Handlers {
	wait := env.Wait
	if wait <= 0 {
		wait = 30 * time.Minute
	}
	waitCurrent := func(ctx context.Context, s *plans.Step, ev plans.Events) error {
		m, err := env.Fleet.Member(s.Member)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		return WaitDejournaling(ctx, m, s.Args["db"], progressTo(ev, s))
	}
	verifyCurrent := func(ctx context.Context, s *plans.Step) error { return waitCurrent(ctx, s, nil) }
	undoCopy := func(ctx context.Context, s *plans.Step) error {
		m, err := env.Fleet.Member(s.Member)
		if err != nil {
			return err
		}
		_ = m.Incoming(s.Args["db"], false).Discard(ctx)
		if err := m.DeleteDatabase(ctx, s.Args["db"]); err != nil && !strings.Contains(err.Error(), "no database") {
			return err
		}
		return nil
	}
	return plans.Handlers{
		KindAdd: {
			Checks: func(ctx context.Context, s *plans.Step) []plans.CheckResult {
				return []plans.CheckResult{env.checkPrimary(ctx, s), env.checkAddable(ctx, s)}
			},
			Run: func(ctx context.Context, s *plans.Step, ev plans.Events) error {
				m, err := env.Fleet.Member(s.Member)
				if err != nil {
					return err
				}
				_, err = m.AddToMirror(ctx, s.Args["db"])
				return err
			},
			Verify: func(ctx context.Context, s *plans.Step) error {
				st, err := env.memberDB(ctx, s)
				if err == nil && st.Status != mirror.DBNormal {
					err = fmt.Errorf("%s on %s is %q, not Normal", s.Args["db"], s.Member, st.Status)
				}
				return err
			},
			Undo: func(ctx context.Context, s *plans.Step) error {
				m, err := env.Fleet.Member(s.Member)
				if err != nil {
					return err
				}
				return m.RemoveFromMirror(ctx, s.Args["db"])
			},
		},
		KindBackup: {
			Checks: func(ctx context.Context, s *plans.Step) []plans.CheckResult {
				return []plans.CheckResult{env.checkPrimary(ctx, s), env.checkStage(ctx), env.checkMounted(ctx, s, "source")}
			},
			Run: func(ctx context.Context, s *plans.Step, ev plans.Events) error {
				m, err := env.Fleet.Member(s.Member)
				if err != nil {
					return err
				}
				opts := env.Backup
				opts.ID = s.Args["backup"]
				opts.Progress = progressTo(ev, s)
				_, err = Backup(ctx, m, s.Args["db"], env.Target, opts)
				return err
			},
			Verify: func(ctx context.Context, s *plans.Step) error {
				man, err := backup.LoadManifest(ctx, env.Target, s.Args["db"], s.Args["backup"])
				if err != nil {
					return err
				}
				return backup.VerifyObjects(ctx, env.Target, man)
			},
		},
		KindRestore: {
			Checks: func(ctx context.Context, s *plans.Step) []plans.CheckResult {
				return []plans.CheckResult{env.checkPrimary(ctx, s), env.checkMember(ctx, s), env.checkFree(ctx, s), env.checkJournal(ctx, s)}
			},
			Run: func(ctx context.Context, s *plans.Step, ev plans.Events) error {
				to, err := env.destination(ctx, s)
				if to == nil || err != nil {
					return err
				}
				man, err := backup.LoadManifest(ctx, env.Target, s.Args["db"], s.Args["backup"])
				if err != nil {
					return err
				}
				opts := env.Restore
				opts.Progress = progressTo(ev, s)
				_, err = Restore(ctx, env.Fleet, to, env.Target, man, false, opts)
				return err
			},
			Verify: verifyCurrent,
			Undo:   undoCopy,
		},
		KindCopy: {
			Checks: func(ctx context.Context, s *plans.Step) []plans.CheckResult {
				return []plans.CheckResult{env.checkPrimary(ctx, s), env.checkMember(ctx, s), env.checkFree(ctx, s), env.checkSource(ctx, s)}
			},
			Run: func(ctx context.Context, s *plans.Step, ev plans.Events) error {
				to, err := env.destination(ctx, s)
				if to == nil || err != nil {
					return err
				}
				if st, err := to.DatabaseStatus(ctx, s.Args["db"]); err == nil && (st.Status == mirror.DBNeedsDownload || st.Status == mirror.DBDownloading) {
					return waitCurrent(ctx, s, ev) // a copy started by an interrupted run is still coming
				}
				if _, err := to.Download(ctx, s.Args["db"], s.Args["from"]); err != nil {
					return err
				}
				return waitCurrent(ctx, s, ev)
			},
			Verify: verifyCurrent,
			Undo:   undoCopy,
		},
		KindDownload: {
			Checks: func(ctx context.Context, s *plans.Step) []plans.CheckResult {
				return []plans.CheckResult{env.checkPrimary(ctx, s), env.checkMember(ctx, s), env.checkFree(ctx, s)}
			},
			Run: func(ctx context.Context, s *plans.Step, ev plans.Events) error {
				to, err := env.destination(ctx, s)
				if to == nil || err != nil {
					return err
				}
				st, err := to.DatabaseStatus(ctx, s.Args["db"])
				if err != nil {
					return err
				}
				if st.Status == "" {
					if err := to.CreateInMirror(ctx, s.Args["db"]); err != nil {
						return err
					}
				}
				return waitCurrent(ctx, s, ev)
			},
			Verify: verifyCurrent,
			Undo:   undoCopy,
		},
	}
}

func progressTo(ev plans.Events, s *plans.Step) Progress {
	if ev == nil {
		return nil
	}
	return func(done, total int64) {
		ev.Event(plans.Event{Time: time.Now(), Step: s.N, Kind: s.Kind, Phase: plans.PhaseProgress, Bytes: done, Total: total})
	}
}

func ok(name, detail string) plans.CheckResult {
	return plans.CheckResult{Name: name, OK: true, Detail: detail}
}
func fail(name string, err error) plans.CheckResult {
	return plans.CheckResult{Name: name, Detail: err.Error()}
}

// checkPrimary is the expected-primary guard: the member the plan was made with must still be the primary, so that two
// operators or a failover meanwhile cannot make the plan act on the wrong member.
func (env *Env) checkPrimary(ctx context.Context, s *plans.Step) plans.CheckResult {
	want := env.Fleet.Primary
	for _, m := range env.Fleet.Members {
		st, err := m.Local(ctx)
		if err != nil {
			continue
		}
		if st.Primary != want {
			return fail("expected-primary", fmt.Errorf("member %s says the primary is %s, the plan was made with %s: make a new plan", m.Name, st.Primary, want))
		}
		return ok("expected-primary", want+" is the primary")
	}
	return fail("expected-primary", errors.New("no member of the mirror answers"))
}

func (env *Env) memberDB(ctx context.Context, s *plans.Step) (mirror.DatabaseStatus, error) {
	m, err := env.Fleet.Member(s.Member)
	if err != nil {
		return mirror.DatabaseStatus{}, err
	}
	return m.DatabaseStatus(ctx, s.Args["db"])
}

func (env *Env) checkAddable(ctx context.Context, s *plans.Step) plans.CheckResult {
	m, err := env.Fleet.Member(s.Member)
	if err != nil {
		return fail("database", err)
	}
	info, err := m.Database(ctx, s.Args["db"])
	switch {
	case err != nil:
		return fail("database", err)
	case !info.Mounted:
		return fail("database", fmt.Errorf("%s is dismounted on %s: mount it first", info.Name, m.Name))
	case info.Mirror == "":
		return ok("database", fmt.Sprintf("%s is a local database of %s (%d bytes on disk)", info.Name, m.Name, info.Bytes))
	case strings.EqualFold(info.Mirror, env.Fleet.Mirror):
		return ok("database", fmt.Sprintf("%s is already in mirror %s: nothing to add", info.Name, info.Mirror))
	}
	return fail("database", fmt.Errorf("%s belongs to mirror %s", info.Name, info.Mirror))
}

func (env *Env) checkMounted(ctx context.Context, s *plans.Step, name string) plans.CheckResult {
	m, err := env.Fleet.Member(s.Member)
	if err != nil {
		return fail(name, err)
	}
	info, err := m.Database(ctx, s.Args["db"])
	if err != nil {
		return fail(name, err)
	}
	if !info.Mounted {
		return fail(name, fmt.Errorf("%s is dismounted on %s", info.Name, m.Name))
	}
	return ok(name, fmt.Sprintf("%s on %s: %d bytes on disk", info.Name, m.Name, info.Bytes))
}

func (env *Env) checkStage(ctx context.Context) plans.CheckResult {
	if _, err := env.Target.List(ctx, ".probe/"); err != nil {
		return fail("stage", fmt.Errorf("stage %s: %w", env.Stage, err))
	}
	return ok("stage", env.Stage+" answers")
}

func (env *Env) checkMember(ctx context.Context, s *plans.Step) plans.CheckResult {
	m, err := env.Fleet.Member(s.Member)
	if err != nil {
		return fail("member", err)
	}
	st, err := m.Local(ctx)
	if err != nil {
		return fail("member", err)
	}
	if st.Primary == m.Name {
		return fail("member", fmt.Errorf("%s is now the primary", m.Name))
	}
	return ok("member", fmt.Sprintf("%s is %s in mirror %s", m.Name, st.Role, st.Mirror))
}

// destination is the step's member, or nil when it already has a current copy and the step has nothing left to do.
func (env *Env) destination(ctx context.Context, s *plans.Step) (*mirrorctl.Member, error) {
	if env.current(ctx, s) {
		return nil, nil
	}
	return env.Fleet.Member(s.Member)
}

// current reports whether the step's member already has a current copy (the step then has nothing left to do).
func (env *Env) current(ctx context.Context, s *plans.Step) bool {
	st, err := env.memberDB(ctx, s)
	return err == nil && (st.Status == mirror.DBDejournaling || st.Status == mirror.DBCatchupRun)
}

func (env *Env) checkFree(ctx context.Context, s *plans.Step) plans.CheckResult {
	m, err := env.Fleet.Member(s.Member)
	if err != nil {
		return fail("free", err)
	}
	if env.current(ctx, s) {
		return ok("free", fmt.Sprintf("%s already has a current copy: nothing to do", m.Name))
	}
	info, err := m.Database(ctx, s.Args["db"])
	switch {
	case errors.Is(err, mirrorctl.ErrNoDatabase):
		return ok("free", fmt.Sprintf("%s has no copy of %s", m.Name, s.Args["db"]))
	case err != nil:
		return fail("free", err)
	case info.Mounted:
		return fail("free", fmt.Errorf("%s has a mounted database %s (mirror %q) that is not a current copy: delete or dismount it first", m.Name, info.Name, info.Mirror))
	}
	return ok("free", fmt.Sprintf("%s has a dismounted copy of %s, which the new copy replaces", m.Name, info.Name))
}

func (env *Env) checkJournal(ctx context.Context, s *plans.Step) plans.CheckResult {
	man, err := backup.LoadManifest(ctx, env.Target, s.Args["db"], s.Args["backup"])
	if err != nil {
		if errors.Is(err, backup.ErrNotFound) || errors.Is(err, backup.ErrNoBackup) {
			return ok("journal", "the backup is taken by an earlier step; checked again when this step runs")
		}
		return fail("journal", err)
	}
	if err := Restorable(ctx, env.Fleet, man.Position); err != nil {
		return fail("journal", err)
	}
	return ok("journal", fmt.Sprintf("backup at %s is restorable into the mirror", man.Position))
}

func (env *Env) checkSource(ctx context.Context, s *plans.Step) plans.CheckResult {
	m, err := env.Fleet.Member(s.Args["from"])
	if err != nil {
		return fail("source", err)
	}
	if _, err := m.Local(ctx); err != nil {
		return fail("source", err)
	}
	return ok("source", m.Name+" answers")
}
