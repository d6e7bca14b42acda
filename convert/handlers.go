package convert

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/adddb"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/shadow"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/adminapi"
	"github.com/mirrorkit/mirrorkit/internal/mirrorctl"
	"github.com/mirrorkit/mirrorkit/plans"
)

// Handlers carry out the steps of plan p against env.
func Handlers(env *Env, p *plans.Plan) plans.Handlers {
	env.planDBs = p.Params["databases"]
	add := adddb.Handlers(env.AddDB)
	fallback := func(kind string) plans.Handler {
		h := add[kind]
		h.Checks = func(ctx context.Context, s *plans.Step) []plans.CheckResult {
			out := []plans.CheckResult{env.checkPrimary(ctx), env.checkMember(ctx, s)}
			if kind == adddb.KindBackup {
				out = append(out, env.checkStage(ctx))
			}
			return out
		}
		return h
	}
	return plans.Handlers{
		KindCreateMirror: {
			Checks: func(ctx context.Context, s *plans.Step) []plans.CheckResult {
				return []plans.CheckResult{env.checkSource(ctx), env.checkVersions(ctx), env.checkMirror(ctx)}
			},
			Run: func(ctx context.Context, s *plans.Step, ev plans.Events) error {
				src := env.Fleet.Members[0]
				if _, in, err := src.InMirror(ctx); err != nil || in {
					return err
				}
				return src.CreateMirror(ctx, s.Args["qos"])
			},
			Verify: func(ctx context.Context, s *plans.Step) error {
				st, in, err := env.Fleet.Members[0].InMirror(ctx)
				if err == nil && (!in || st.Primary != env.Fleet.Primary) {
					err = fmt.Errorf("%s is not the primary of mirror %s", env.Fleet.Primary, env.Fleet.Mirror)
				}
				return err
			},
			Undo: func(ctx context.Context, s *plans.Step) error {
				return actIfInMirror(ctx, env.Fleet.Members[0], "remove")
			},
		},
		KindJoinMirror: {
			Checks: func(ctx context.Context, s *plans.Step) []plans.CheckResult {
				return []plans.CheckResult{env.checkPrimary(ctx), env.checkMember(ctx, s)}
			},
			Run: func(ctx context.Context, s *plans.Step, ev plans.Events) error {
				m, err := env.Fleet.Member(s.Member)
				if err != nil {
					return err
				}
				if _, in, err := m.InMirror(ctx); err != nil || in {
					return err
				}
				return m.JoinMirror(ctx, env.Fleet.Members[0].DataAddr, s.Args["as"])
			},
			Verify: func(ctx context.Context, s *plans.Step) error {
				return env.waitFor(ctx, func() error {
					st, in, err := env.Fleet.Members[0].InMirror(ctx)
					if err != nil {
						return err
					}
					if !in {
						return fmt.Errorf("%s is not in mirror %s", env.Fleet.Primary, env.Fleet.Mirror)
					}
					i := slices.IndexFunc(st.Members, func(r mirror.MemberStatus) bool { return r.Name == s.Member })
					switch {
					case i < 0:
						return fmt.Errorf("the primary does not list %s in mirror %s", s.Member, env.Fleet.Mirror)
					case s.Args["as"] == string(mirror.Failover) && st.Members[i].JournalTransfer != mirror.TransferActive:
						return fmt.Errorf("%s is not the Active backup yet (%s)", s.Member, st.Members[i].JournalTransfer)
					}
					return nil
				})
			},
			Undo: func(ctx context.Context, s *plans.Step) error {
				m, err := env.Fleet.Member(s.Member)
				if err != nil {
					return err
				}
				return actIfInMirror(ctx, m, "leave")
			},
		},
		KindAdd: {
			Checks: func(ctx context.Context, s *plans.Step) []plans.CheckResult {
				return []plans.CheckResult{env.checkPrimary(ctx), env.checkAddable(ctx, s)}
			},
			Run:    add[adddb.KindAdd].Run,
			Verify: add[adddb.KindAdd].Verify,
			Undo:   add[adddb.KindAdd].Undo,
		},
		KindJoinInPlace: {
			Checks: func(ctx context.Context, s *plans.Step) []plans.CheckResult {
				return []plans.CheckResult{env.checkPrimary(ctx), env.checkShadow(ctx, s), env.checkUntouched(ctx, s)}
			},
			Run: env.joinInPlace,
			Verify: func(ctx context.Context, s *plans.Step) error {
				m, err := env.Fleet.Member(s.Member)
				if err != nil {
					return err
				}
				return env.waitFor(ctx, func() error { return adddb.WaitDejournaling(ctx, m, s.Args["db"], nil) })
			},
			Undo: func(ctx context.Context, s *plans.Step) error {
				m, err := env.Fleet.Member(s.Member)
				if err != nil {
					return err
				}
				info, err := m.Database(ctx, s.Args["db"])
				if errors.Is(err, mirrorctl.ErrNoDatabase) || (err == nil && info.Mirror == "") {
					return nil
				}
				if err != nil {
					return err
				}
				return m.RemoveFromMirror(ctx, s.Args["db"])
			},
		},
		KindDiscardCopy: {
			Checks: func(ctx context.Context, s *plans.Step) []plans.CheckResult {
				return []plans.CheckResult{env.checkPrimary(ctx), env.checkMember(ctx, s)}
			},
			Run: func(ctx context.Context, s *plans.Step, ev plans.Events) error {
				m, err := env.Fleet.Member(s.Member)
				if err != nil {
					return err
				}
				info, err := m.Database(ctx, s.Args["db"])
				switch {
				case errors.Is(err, mirrorctl.ErrNoDatabase):
					return nil
				case err != nil:
					return err
				case strings.EqualFold(info.Mirror, env.Fleet.Mirror):
					return nil // the copy that replaced it (a re-run after the next step began)
				}
				return m.DeleteDatabase(ctx, s.Args["db"])
			},
			Verify: func(ctx context.Context, s *plans.Step) error {
				m, err := env.Fleet.Member(s.Member)
				if err != nil {
					return err
				}
				info, err := m.Database(ctx, s.Args["db"])
				if errors.Is(err, mirrorctl.ErrNoDatabase) || (err == nil && strings.EqualFold(info.Mirror, env.Fleet.Mirror)) {
					return nil
				}
				if err == nil {
					err = fmt.Errorf("%s still has its copy of %s", m.Name, s.Args["db"])
				}
				return err
			},
		},
		adddb.KindCopy:    fallback(adddb.KindCopy),
		adddb.KindBackup:  fallback(adddb.KindBackup),
		adddb.KindRestore: fallback(adddb.KindRestore),
		KindRemoveShadow: {
			Checks: func(ctx context.Context, s *plans.Step) []plans.CheckResult {
				return []plans.CheckResult{env.checkConverted(ctx, s)}
			},
			Run: func(ctx context.Context, s *plans.Step, ev plans.Events) error {
				m, err := env.Fleet.Member(s.Member)
				if err != nil {
					return err
				}
				if _, err := m.Shadow(ctx, s.Args["shadow"]); isNoShadow(err) {
					return nil
				}
				if _, err := m.ShadowAction(ctx, s.Args["shadow"], "stop"); err != nil {
					return err
				}
				return m.RemoveShadow(ctx, s.Args["shadow"])
			},
			Verify: func(ctx context.Context, s *plans.Step) error {
				m, err := env.Fleet.Member(s.Member)
				if err != nil {
					return err
				}
				_, err = m.Shadow(ctx, s.Args["shadow"])
				if isNoShadow(err) {
					return nil
				}
				if err == nil {
					err = fmt.Errorf("shadow %s is still on %s", s.Args["shadow"], m.Name)
				}
				return err
			},
		},
	}
}

// isNoShadow reports whether err is a member's answer that it has no such shadow.
func isNoShadow(err error) bool {
	var ae *adminapi.Error
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// actIfInMirror posts a mirror action (remove, leave) to m when it is in the fleet's mirror; undoing twice is harmless.
func actIfInMirror(ctx context.Context, m *mirrorctl.Member, action string) error {
	if _, in, err := m.InMirror(ctx); err != nil || !in {
		return err
	}
	return m.MirrorAction(ctx, action)
}

// joinInPlace waits until the shadow has applied the source's marker for the database, has the copy join the mirror there
// (checked against the primary's logical hash at that position), and waits until it is dejournaling.
func (env *Env) joinInPlace(ctx context.Context, s *plans.Step, ev plans.Events) error {
	m, err := env.Fleet.Member(s.Member)
	if err != nil {
		return err
	}
	db, name := s.Args["db"], s.Args["shadow"]
	err = env.waitFor(ctx, func() error {
		if info, err := m.Database(ctx, db); err == nil && strings.EqualFold(info.Mirror, env.Fleet.Mirror) {
			return nil // joined by an earlier run
		}
		st, err := m.Shadow(ctx, name)
		if err != nil {
			return err
		}
		ds, ok := shadowDB(st, db)
		switch {
		case !ok:
			return plans.Permanent(fmt.Errorf("shadow %s on %s does not map %s", name, m.Name, db))
		case ds.Modified:
			return plans.Permanent(fmt.Errorf("the copy of %s on %s was written there since shadowing began: make a new plan (it then copies it from the primary)", db, m.Name))
		case st.State == shadow.Error:
			return plans.Permanent(fmt.Errorf("shadow %s on %s is in error: %s", name, m.Name, st.Error))
		case ds.ToMirror == nil || !strings.EqualFold(ds.ToMirror.Mirror, env.Fleet.Mirror):
			return fmt.Errorf("shadow %s has not applied the source's marker for %s yet (checkpoint %s)", name, db, st.Checkpoint)
		}
		res, err := m.ShadowJoin(ctx, name, db)
		if err != nil {
			if strings.Contains(err.Error(), "has not reached") || strings.Contains(err.Error(), "try again shortly") {
				return err
			}
			return plans.Permanent(err)
		}
		if ev != nil && !res.Already {
			detail := "no hash from the primary to check it against"
			if res.Verified {
				detail = fmt.Sprintf("logical hash %s (%d nodes) matches the primary's at %s", res.Hash.SHA256, res.Hash.Nodes, res.Applied)
			}
			ev.Event(plans.Event{Time: time.Now(), Step: s.N, Kind: s.Kind, Phase: plans.PhaseNote, Message: "joined in place: " + detail})
		}
		return nil
	})
	if err != nil {
		return err
	}
	return adddb.WaitDejournaling(ctx, m, db, nil)
}

func shadowDB(st shadow.Status, db string) (shadow.DBStatus, bool) {
	i := slices.IndexFunc(st.Databases, func(ds shadow.DBStatus) bool { return ds.Source == db })
	if i < 0 {
		return shadow.DBStatus{}, false
	}
	return st.Databases[i], true
}

// waitFor retries f until it succeeds, fails permanently, or the wait ends.
func (env *Env) waitFor(ctx context.Context, f func() error) error {
	wait := env.Wait
	if wait <= 0 {
		wait = 30 * time.Minute
	}
	return plans.WaitFor(ctx, wait, 100*time.Millisecond, f)
}

func ok(name, detail string) plans.CheckResult {
	return plans.CheckResult{Name: name, OK: true, Detail: detail}
}

func fail(name string, err error) plans.CheckResult {
	return plans.CheckResult{Name: name, Detail: err.Error()}
}

// checkPrimary is the expected-primary guard: every member already in the mirror names the source as its primary, so two
// operators or a failover meanwhile cannot make the plan act on the wrong member. Before the mirror exists it passes.
func (env *Env) checkPrimary(ctx context.Context) plans.CheckResult {
	seen := 0
	for _, m := range env.Fleet.Members {
		st, in, err := m.InMirror(ctx)
		if err != nil || !in {
			continue
		}
		seen++
		if st.Primary != env.Fleet.Primary {
			return fail("expected-primary", fmt.Errorf("member %s says the primary of mirror %s is %s, the plan was made with %s: make a new plan", m.Name, env.Fleet.Mirror, st.Primary, env.Fleet.Primary))
		}
	}
	if seen == 0 {
		return ok("expected-primary", fmt.Sprintf("mirror %s does not exist yet: the plan creates it on %s", env.Fleet.Mirror, env.Fleet.Primary))
	}
	return ok("expected-primary", env.Fleet.Primary+" is the primary")
}

func (env *Env) checkSource(ctx context.Context) plans.CheckResult {
	src := env.Fleet.Members[0]
	st, err := src.Status(ctx)
	if err != nil {
		return fail("source", err)
	}
	var missing []string
	for _, db := range strings.Split(env.dbsParam(), ",") {
		i := slices.IndexFunc(st.Databases, func(info store.Info) bool { return info.Name == db })
		if db != "" && (i < 0 || !st.Databases[i].Mounted) {
			missing = append(missing, db)
		}
	}
	if len(missing) > 0 {
		return fail("source", fmt.Errorf("not mounted on %s: %s", src.Name, strings.Join(missing, ", ")))
	}
	return ok("source", fmt.Sprintf("%s answers, %d databases mounted", src.Name, len(st.Databases)))
}

// dbsParam is the plan's databases, comma-separated, as Build recorded them.
func (env *Env) dbsParam() string { return env.planDBs }

func (env *Env) checkVersions(ctx context.Context) plans.CheckResult {
	src, err := env.Fleet.Members[0].Status(ctx)
	if err != nil {
		return fail("versions", err)
	}
	sv := src.Version
	for _, m := range env.Fleet.Members[1:] {
		st, err := m.Status(ctx)
		if err != nil {
			return fail("versions", err)
		}
		v := st.Version
		switch {
		case v.DatabaseFormat != sv.DatabaseFormat:
			return fail("versions", fmt.Errorf("%s reads database format %d, the source %s writes %d: upgrade %s first", m.Name, v.DatabaseFormat, src.Member, sv.DatabaseFormat, m.Name))
		case v.JournalFormat != sv.JournalFormat:
			return fail("versions", fmt.Errorf("%s has journal format %d, the source %s %d: upgrade %s first", m.Name, v.JournalFormat, src.Member, sv.JournalFormat, m.Name))
		case v.WireProtocol < sv.WireMinProtocol || sv.WireProtocol < v.WireMinProtocol:
			return fail("versions", fmt.Errorf("%s speaks wire protocol %d..%d, the source %s %d..%d: no common protocol", m.Name, v.WireMinProtocol, v.WireProtocol, src.Member, sv.WireMinProtocol, sv.WireProtocol))
		}
	}
	return ok("versions", fmt.Sprintf("every member runs database format %d, journal format %d (source %s)", sv.DatabaseFormat, sv.JournalFormat, sv.Software))
}

func (env *Env) checkMirror(ctx context.Context) plans.CheckResult {
	src := env.Fleet.Members[0]
	st, in, err := src.InMirror(ctx)
	switch {
	case err != nil:
		return fail("mirror", err)
	case !in:
		return ok("mirror", fmt.Sprintf("%s is in no mirror %s: it creates it", src.Name, env.Fleet.Mirror))
	case st.Primary != src.Name:
		return fail("mirror", fmt.Errorf("%s is in mirror %s but %s is its primary", src.Name, env.Fleet.Mirror, st.Primary))
	}
	return ok("mirror", fmt.Sprintf("%s is the primary of mirror %s already", src.Name, env.Fleet.Mirror))
}

func (env *Env) checkMember(ctx context.Context, s *plans.Step) plans.CheckResult {
	m, err := env.Fleet.Member(s.Member)
	if err != nil {
		return fail("member", err)
	}
	st, in, err := m.InMirror(ctx)
	switch {
	case err != nil:
		return fail("member", err)
	case !in:
		return ok("member", fmt.Sprintf("%s answers (not in mirror %s yet)", m.Name, env.Fleet.Mirror))
	case st.Primary == m.Name:
		return fail("member", fmt.Errorf("%s is the primary of mirror %s", m.Name, env.Fleet.Mirror))
	}
	return ok("member", fmt.Sprintf("%s is %s in mirror %s", m.Name, st.Role, env.Fleet.Mirror))
}

func (env *Env) checkAddable(ctx context.Context, s *plans.Step) plans.CheckResult {
	info, err := env.Fleet.Members[0].Database(ctx, s.Args["db"])
	switch {
	case err != nil:
		return fail("database", err)
	case !info.Mounted:
		return fail("database", fmt.Errorf("%s is dismounted on %s: mount it first", info.Name, env.Fleet.Primary))
	case info.Mirror == "":
		return ok("database", fmt.Sprintf("%s is a local database of %s, journaled in its local journal (%d bytes on disk)", info.Name, env.Fleet.Primary, info.Bytes))
	case strings.EqualFold(info.Mirror, env.Fleet.Mirror):
		return ok("database", fmt.Sprintf("%s is already in mirror %s", info.Name, info.Mirror))
	}
	return fail("database", fmt.Errorf("%s belongs to %s", info.Name, info.Mirror))
}

func (env *Env) checkStage(ctx context.Context) plans.CheckResult {
	if env.AddDB.Target == nil {
		return fail("stage", errors.New("no stage given (--stage)"))
	}
	if _, err := env.AddDB.Target.List(ctx, ".probe/"); err != nil {
		return fail("stage", fmt.Errorf("stage %s: %w", env.AddDB.Stage, err))
	}
	return ok("stage", env.AddDB.Stage+" answers")
}

// joined reports whether member m's copy of db is in the mirror already.
func (env *Env) joined(ctx context.Context, m *mirrorctl.Member, db string) bool {
	info, err := m.Database(ctx, db)
	return err == nil && strings.EqualFold(info.Mirror, env.Fleet.Mirror)
}

func (env *Env) checkShadow(ctx context.Context, s *plans.Step) plans.CheckResult {
	m, err := env.Fleet.Member(s.Member)
	if err != nil {
		return fail("shadow", err)
	}
	if env.joined(ctx, m, s.Args["db"]) {
		return ok("shadow", fmt.Sprintf("%s's copy of %s is in the mirror already", m.Name, s.Args["db"]))
	}
	st, err := m.Shadow(ctx, s.Args["shadow"])
	if err != nil {
		return fail("shadow", err)
	}
	lat := time.Duration(st.LatencySeconds * float64(time.Second))
	switch {
	case st.State != shadow.Processing:
		return fail("shadow", fmt.Errorf("shadow %s on %s is %s %s", st.Name, m.Name, st.State, st.Error))
	case lat > maxLatency(env.Opts):
		return fail("shadow", fmt.Errorf("shadow %s on %s is %s behind (at most %s): let it catch up, or make a new plan", st.Name, m.Name, lat.Round(time.Millisecond), maxLatency(env.Opts)))
	}
	return ok("shadow", fmt.Sprintf("shadow %s is Processing, %s behind", st.Name, lat.Round(time.Millisecond)))
}

func (env *Env) checkUntouched(ctx context.Context, s *plans.Step) plans.CheckResult {
	m, err := env.Fleet.Member(s.Member)
	if err != nil {
		return fail("untouched", err)
	}
	db := s.Args["db"]
	if env.joined(ctx, m, db) {
		return ok("untouched", fmt.Sprintf("%s's copy of %s is in the mirror already", m.Name, db))
	}
	st, err := m.Shadow(ctx, s.Args["shadow"])
	if err != nil {
		return fail("untouched", err)
	}
	ds, found := shadowDB(st, db)
	switch {
	case !found:
		return fail("untouched", fmt.Errorf("shadow %s does not map %s", st.Name, db))
	case ds.Missing:
		return fail("untouched", fmt.Errorf("the copy %s is not mounted on %s", ds.Dest, m.Name))
	case ds.Dest != db:
		return fail("untouched", fmt.Errorf("shadow %s applies %s to %s: mirrored databases keep their names", st.Name, db, ds.Dest))
	case ds.Modified:
		return fail("untouched", fmt.Errorf("the copy of %s on %s was written there since shadowing began: make a new plan (it then copies it from the primary)", db, m.Name))
	}
	return ok("untouched", fmt.Sprintf("the copy of %s on %s is shadowed, untouched, at %s", db, m.Name, ds.Applied))
}

func (env *Env) checkConverted(ctx context.Context, s *plans.Step) plans.CheckResult {
	m, err := env.Fleet.Member(s.Member)
	if err != nil {
		return fail("converted", err)
	}
	var left []string
	for _, db := range strings.Split(env.dbsParam(), ",") {
		if db != "" && !env.joined(ctx, m, db) {
			left = append(left, db)
		}
	}
	if _, in, err := m.InMirror(ctx); err == nil && !in && len(left) > 0 {
		// A dry run before anything ran: the steps before this one bring them; checked again when it runs.
		return ok("converted", fmt.Sprintf("%s is not in mirror %s yet: the steps before this one bring %s; checked again when it runs", m.Name, env.Fleet.Mirror, strings.Join(left, ", ")))
	}
	if len(left) > 0 {
		return fail("converted", fmt.Errorf("not yet in mirror %s on %s: %s (the steps before this one bring them)", env.Fleet.Mirror, m.Name, strings.Join(left, ", ")))
	}
	return ok("converted", fmt.Sprintf("every database of the plan is in mirror %s on %s", env.Fleet.Mirror, m.Name))
}
