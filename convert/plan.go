// Package convert turns a shadowing setup — a source member whose local journal is applied by shadow destinations — into a
// mirror, as a plan of the plans package: the source becomes the primary, each destination joins as backup or async, each
// mapped database is added to the mirror on the source, and each destination's copy joins the mirror in place where the
// source's local journal says the database moved (no data copied, the copy checked against the primary's logical hash at
// that position), or — when the copy is stale, modified or not there — gets a copy from the primary by the methods of
// adddb. The shadows are removed at the end. Applications keep writing to the source throughout.
package convert

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/adddb"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/shadow"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/mirrorctl"
	"github.com/mirrorkit/mirrorkit/plans"
)

// Step kinds of a conversion plan (the fallback copies use adddb's kinds).
const (
	KindCreateMirror = "create-mirror"
	KindJoinMirror   = "join-mirror"
	KindAdd          = adddb.KindAdd
	KindJoinInPlace  = "join-in-place"
	KindDiscardCopy  = "discard-copy"
	KindRemoveShadow = "remove-shadow"
)

// Options are the operator's choices.
type Options struct {
	Source  string   // the source member's data address
	Shadows []string // the destinations' data addresses
	// As is the role of each destination, in the order of Shadows: failover (or backup), dr, reporting-ro, reporting-rw.
	As     []string
	Mirror string
	// Names maps source databases to their names in the mirror; empty converts every database the shadows map. A
	// mirrored database keeps its name on the primary, so a different name is refused.
	Names map[string]string
	QoS   string // the new mirror's QoS timeout ("" the default)
	// MaxLatency is how far behind its source a shadow may be for its copies to join in place (default 30s).
	MaxLatency time.Duration
	// ForceCopy sends every copy through the fallback path, even a current, untouched one.
	ForceCopy bool
	// Stage, when set, makes the fallback a staged backup and restores (adddb's backup method) instead of a copy streamed
	// from the primary.
	Stage string
}

// Env is what the steps act on.
type Env struct {
	Opts  Options
	Fleet *mirrorctl.Fleet // the source first, then the destinations
	// AddDB carries out the fallback copies (it shares Fleet).
	AddDB *adddb.Env
	// Wait bounds how long a step waits for a copy or a member (default 30 minutes).
	Wait time.Duration

	planDBs string // the plan's databases, comma-separated (set by Handlers)
}

// Assumed rates for the estimates.
const (
	copyRate    = 200 << 20
	backupRate  = 150 << 20
	restoreRate = 200 << 20
)

// memberRole is a destination's role in the mirror, as the join API names it.
func memberRole(as string) (string, error) {
	switch strings.ToLower(as) {
	case "backup", "failover":
		return string(mirror.Failover), nil
	}
	t, err := mirror.ParseMemberType(as)
	return string(t), err
}

// dest is one destination as the plan sees it.
type dest struct {
	m      *mirrorctl.Member
	role   string
	shadow shadow.Status
}

// Build inspects the source and its shadows and makes the conversion plan. Every copy gets its path here — in place, or a
// copy with the reason — so the operator reads it before anything runs.
func Build(ctx context.Context, env *Env) (*plans.Plan, error) {
	o := env.Opts
	if _, err := mirror.CanonicalMirrorName(o.Mirror); err != nil {
		return nil, err
	}
	if len(o.Shadows) == 0 {
		return nil, errors.New("name the shadow destinations with --shadow ADDR[,ADDR…]")
	}
	if len(o.As) != len(o.Shadows) {
		return nil, fmt.Errorf("give one role per shadow destination with --as (%d destinations, %d roles)", len(o.Shadows), len(o.As))
	}
	f := env.Fleet
	src := f.Members[0]
	srcStatus, err := src.Status(ctx)
	if err != nil {
		return nil, err
	}
	var dests []dest
	backups := 0
	for i, m := range f.Members[1:] {
		role, err := memberRole(o.As[i])
		if err != nil {
			return nil, fmt.Errorf("--as for %s: %w", m.Name, err)
		}
		if role == string(mirror.Failover) {
			if backups++; backups > 1 {
				return nil, fmt.Errorf("at most one destination can become the backup (%s and another were given --as %s)", m.Name, o.As[i])
			}
		}
		sh, err := shadowOf(ctx, m, src)
		if err != nil {
			return nil, err
		}
		dests = append(dests, dest{m: m, role: role, shadow: sh})
	}
	// The backup joins first, so the primary has an active backup before the databases move.
	slices.SortStableFunc(dests, func(a, b dest) int { return roleRank(a.role) - roleRank(b.role) })

	dbs, err := databases(o, dests)
	if err != nil {
		return nil, err
	}
	sizes := map[string]int64{}
	for _, db := range dbs {
		i := slices.IndexFunc(srcStatus.Databases, func(info store.Info) bool { return info.Name == db })
		if i < 0 {
			return nil, fmt.Errorf("database %s does not exist on the source %s", db, src.Name)
		}
		sizes[db] = int64(srcStatus.Databases[i].Bytes)
	}

	method := "copy"
	if o.Stage != "" {
		method = "backup"
	}
	p := plans.New("migrate convert-shadow", fmt.Sprintf("convert the shadows of %s into mirror %s", src.Name, o.Mirror), map[string]string{
		"mirror": o.Mirror, "source": src.Name, "databases": strings.Join(dbs, ","), "fallback": method, "stage": o.Stage,
		"force_copy": fmt.Sprint(o.ForceCopy)})
	guard := plans.Check{Name: "expected-primary", Title: fmt.Sprintf("%s is the primary of mirror %s (or the mirror does not exist yet)", src.Name, o.Mirror)}
	args := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	p.Add(plans.Step{Kind: KindCreateMirror, Member: src.Name, Args: args("qos", o.QoS),
		Title: fmt.Sprintf("create mirror %s on %s, which becomes its primary (applications keep writing to it)", o.Mirror, src.Name),
		Checks: []plans.Check{{Name: "source", Title: fmt.Sprintf("%s answers and every database to convert is mounted there", src.Name)},
			{Name: "versions", Title: "the source and every destination run compatible versions"},
			{Name: "mirror", Title: fmt.Sprintf("%s is in no mirror named %s, or is its primary already", src.Name, o.Mirror)}},
		Verify: fmt.Sprintf("%s is the primary of mirror %s", src.Name, o.Mirror), Undo: fmt.Sprintf("remove mirror %s", o.Mirror),
		Estimate: plans.Duration(time.Second)})
	for _, d := range dests {
		p.Add(plans.Step{Kind: KindJoinMirror, Member: d.m.Name, Args: args("as", d.role),
			Title:  fmt.Sprintf("%s joins mirror %s as %s (its shadow %s keeps running)", d.m.Name, o.Mirror, mirror.MemberType(d.role).Label(), d.shadow.Name),
			Checks: []plans.Check{guard, {Name: "member", Title: fmt.Sprintf("%s answers and is in no other role in mirror %s", d.m.Name, o.Mirror)}},
			Verify: verifyJoinText(d), Undo: fmt.Sprintf("%s leaves mirror %s", d.m.Name, o.Mirror), Estimate: plans.Duration(3 * time.Second)})
	}
	for _, db := range dbs {
		p.Add(plans.Step{Kind: KindAdd, Member: src.Name, Args: args("db", db),
			Title:  fmt.Sprintf("add %s, with its data, to mirror %s on %s: a marker in its local journal tells the shadows where it continues", db, o.Mirror, src.Name),
			Checks: []plans.Check{guard, {Name: "database", Title: fmt.Sprintf("%s is a mounted local database of %s, or already in this mirror", db, src.Name)}},
			Verify: fmt.Sprintf("%s is Normal in mirror %s on %s", db, o.Mirror, src.Name),
			// Hashing the database at the add position (for the in-place check) reads it once.
			Estimate: estimate(sizes[db], 400<<20)})
	}
	type fallback struct {
		d      dest
		db     string
		reason string
		exists bool
	}
	var fallbacks []fallback
	for _, d := range dests {
		for _, db := range dbs {
			reason, exists := classify(o, d, db)
			if reason != "" {
				fallbacks = append(fallbacks, fallback{d, db, reason, exists})
				continue
			}
			p.Add(plans.Step{Kind: KindJoinInPlace, Member: d.m.Name, Args: args("db", db, "shadow", d.shadow.Name),
				Title: fmt.Sprintf("%s's copy of %s joins the mirror in place once shadow %s has applied the source's marker: no data copied", d.m.Name, db, d.shadow.Name),
				Checks: []plans.Check{guard, {Name: "shadow", Title: fmt.Sprintf("shadow %s is Processing, at most %s behind", d.shadow.Name, maxLatency(o))},
					{Name: "untouched", Title: fmt.Sprintf("the copy of %s on %s is shadowed under the same name and was not written there", db, d.m.Name)}},
				Verify:   fmt.Sprintf("its logical hash matched the primary's at the add position; %s on %s is Dejournaling", db, d.m.Name),
				Undo:     fmt.Sprintf("take %s out of the mirror on %s (it stays a local database there)", db, d.m.Name),
				Estimate: estimate(sizes[db], 400<<20) + plans.Duration(time.Second)})
		}
	}
	backedUp := map[string]string{}
	for _, fb := range fallbacks {
		d, db := fb.d, fb.db
		if fb.exists {
			p.Add(plans.Step{Kind: KindDiscardCopy, Member: d.m.Name, Args: args("db", db, "shadow", d.shadow.Name),
				Title:    fmt.Sprintf("delete %s's copy of %s (%s): the primary's copy replaces it", d.m.Name, db, fb.reason),
				Checks:   []plans.Check{guard, {Name: "member", Title: fmt.Sprintf("%s answers", d.m.Name)}},
				Verify:   fmt.Sprintf("%s has no database %s", d.m.Name, db),
				Estimate: plans.Duration(time.Second)})
		}
		memberChecks := []plans.Check{guard, {Name: "member", Title: fmt.Sprintf("%s answers", d.m.Name)}}
		if o.Stage == "" {
			p.Add(plans.Step{Kind: adddb.KindCopy, Member: d.m.Name, Args: args("db", db, "from", src.Name),
				Title:    fmt.Sprintf("copy %s from %s to %s, activate, catch up (%s)", db, src.Name, d.m.Name, fb.reason),
				Checks:   memberChecks,
				Verify:   fmt.Sprintf("%s on %s is Dejournaling", db, d.m.Name),
				Undo:     fmt.Sprintf("delete the copy of %s on %s", db, d.m.Name),
				Estimate: estimate(sizes[db], copyRate)})
			continue
		}
		id, ok := backedUp[db]
		if !ok {
			id = adddb.NewBackupID(time.Now()) // random suffix: one per database
			backedUp[db] = id
			p.Add(plans.Step{Kind: adddb.KindBackup, Member: src.Name, Args: args("db", db, "backup", id),
				Title:    fmt.Sprintf("back up %s from %s to %s (backup %s)", db, src.Name, o.Stage, id),
				Checks:   []plans.Check{guard, {Name: "stage", Title: "the stage can be listed"}},
				Verify:   "the manifest is stored and every chunk it lists is present with its size",
				Estimate: estimate(sizes[db], backupRate)})
		}
		p.Add(plans.Step{Kind: adddb.KindRestore, Member: d.m.Name, Args: args("db", db, "backup", id),
			Title:    fmt.Sprintf("restore backup %s onto %s, activate, catch up (%s)", id, d.m.Name, fb.reason),
			Checks:   memberChecks,
			Verify:   fmt.Sprintf("%s on %s is Dejournaling", db, d.m.Name),
			Undo:     fmt.Sprintf("delete the copy of %s on %s", db, d.m.Name),
			Estimate: estimate(sizes[db], restoreRate)})
	}
	for _, d := range dests {
		p.Add(plans.Step{Kind: KindRemoveShadow, Member: d.m.Name, Args: args("shadow", d.shadow.Name),
			Title:    fmt.Sprintf("stop and remove shadow %s on %s (copies it still applies become local databases)", d.shadow.Name, d.m.Name),
			Checks:   []plans.Check{{Name: "converted", Title: fmt.Sprintf("every database of the plan on %s is in mirror %s", d.m.Name, o.Mirror)}},
			Verify:   fmt.Sprintf("%s has no shadow %s", d.m.Name, d.shadow.Name),
			Estimate: plans.Duration(time.Second)})
	}
	// Once a database is in the mirror, applications write it through the mirror journal: its shadow copies stop at the
	// marker and could not follow it back to the source's local journal, so adding it cannot be undone (nor, later,
	// deleting a copy or removing a shadow). Creating the mirror and the joins can.
	for _, s := range p.Steps {
		if s.Kind == KindAdd || s.Kind == KindDiscardCopy || s.Kind == KindRemoveShadow {
			p.PointOfNoReturn = s.N
			break
		}
	}
	for i := range p.Steps {
		if p.PointOfNoReturn > 0 && p.Steps[i].N >= p.PointOfNoReturn {
			p.Steps[i].Undo = "" // never run: undo stops before the point of no return
		}
	}
	return p, nil
}

func estimate(bytes, rate int64) plans.Duration {
	d := time.Second + time.Duration(float64(bytes)/float64(rate)*float64(time.Second))
	return plans.Duration(d.Round(time.Second))
}

func roleRank(role string) int {
	switch mirror.MemberType(role) {
	case mirror.Failover:
		return 0
	case mirror.DR:
		return 1
	}
	return 2
}

func maxLatency(o Options) time.Duration {
	if o.MaxLatency <= 0 {
		return 30 * time.Second
	}
	return o.MaxLatency
}

func verifyJoinText(d dest) string {
	if d.role == string(mirror.Failover) {
		return fmt.Sprintf("%s is the mirror's Active backup", d.m.Name)
	}
	return fmt.Sprintf("%s is a member of the mirror and receives its journal", d.m.Name)
}

// shadowOf finds the one shadow on member m whose source is src.
func shadowOf(ctx context.Context, m *mirrorctl.Member, src *mirrorctl.Member) (shadow.Status, error) {
	all, err := m.Shadows(ctx)
	if err != nil {
		return shadow.Status{}, err
	}
	var found []shadow.Status
	for _, sh := range all.Shadows {
		if sh.SourceMember == src.Name || sh.Source == src.DataAddr {
			found = append(found, sh)
		}
	}
	switch len(found) {
	case 0:
		return shadow.Status{}, fmt.Errorf("member %s has no shadow of %s (%s): nothing to convert there", m.Name, src.Name, src.DataAddr)
	case 1:
		return found[0], nil
	}
	return shadow.Status{}, fmt.Errorf("member %s has %d shadows of %s; convert a setup with one shadow per destination", m.Name, len(found), src.Name)
}

// databases are the source databases to convert, by name: those of --names, or every database a shadow maps.
func databases(o Options, dests []dest) ([]string, error) {
	var out []string
	if len(o.Names) > 0 {
		for src, name := range o.Names {
			canon, err := store.CanonicalDatabaseName(src)
			if err != nil {
				return nil, fmt.Errorf("--names %s=%s: %w", src, name, err)
			}
			mname, err := store.CanonicalDatabaseName(name)
			if err != nil {
				return nil, fmt.Errorf("--names %s=%s: %w", src, name, err)
			}
			if mname != canon {
				return nil, fmt.Errorf("--names %s=%s: a mirrored database keeps the name it has on the primary; rename %s on the source first (with downtime) or convert it as %s", src, name, canon, canon)
			}
			out = append(out, canon)
		}
	} else {
		for _, d := range dests {
			for _, ds := range d.shadow.Databases {
				if !slices.Contains(out, ds.Source) {
					out = append(out, ds.Source)
				}
			}
		}
	}
	slices.Sort(out)
	if len(out) == 0 {
		return nil, errors.New("the shadows map no database: nothing to convert")
	}
	return out, nil
}

// classify says why a destination's copy of db cannot join in place ("" when it can), and whether a copy exists there.
func classify(o Options, d dest, db string) (reason string, exists bool) {
	sh := d.shadow
	i := slices.IndexFunc(sh.Databases, func(ds shadow.DBStatus) bool { return ds.Source == db })
	if i < 0 {
		return fmt.Sprintf("shadow %s does not map %s", sh.Name, db), false
	}
	ds := sh.Databases[i]
	exists = !ds.Missing
	switch {
	case ds.Joined == o.Mirror:
		return "", true // joined before: the step finds it done
	case ds.Missing:
		return fmt.Sprintf("the copy %s is not mounted on %s", ds.Dest, d.m.Name), false
	case ds.Dest != db:
		return fmt.Sprintf("shadowed into %s, but mirrored databases keep their names", ds.Dest), true
	case ds.Modified:
		return fmt.Sprintf("the copy was written on %s since shadowing began", d.m.Name), true
	case sh.State != shadow.Processing:
		return fmt.Sprintf("shadow %s is %s", sh.Name, sh.State), true
	case time.Duration(sh.LatencySeconds*float64(time.Second)) > maxLatency(o):
		return fmt.Sprintf("shadow %s is %.0fs behind its source (more than %s)", sh.Name, sh.LatencySeconds, maxLatency(o)), true
	case o.ForceCopy:
		return "copy forced with --force-copy", true
	}
	return "", true
}
