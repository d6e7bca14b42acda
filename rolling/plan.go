// Package rolling upgrades the members of a mirror to a new member binary, as a plan of the plans package (MIRRORING.md
// §11): asyncs one at a time, then — under no-failover — the backup, a planned failover to it, optionally application
// database changes on the new primary, the old primary, and an optional fail-back; or, with planned downtime, every member
// stopped, upgraded and started again. Each member's host agent installs the binary (checksum verified, the previous one
// kept), so every step can be undone in reverse until the plan's point of no return, and the new format level is switched
// on only by a separate finalize.
package rolling

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/version"
	"github.com/mirrorkit/mirrorkit/internal/mirrorctl"
	"github.com/mirrorkit/mirrorkit/plans"
)

// Tool is the plans' tool name.
const Tool = "upgrade"

// Procedures (MIRRORING.md §11).
const (
	Maintenance     = "maintenance"      // same format level: no-failover, backup, planned failover, old primary
	Major           = "major"            // a newer format level, no mirrored-database changes: the same order
	MajorDBChange   = "major-db-change"  // as major, with database changes applied on the new primary
	PlannedDowntime = "planned-downtime" // stop all, upgrade all, start all, changes on the primary
)

// installEstimate is what installing a binary on a member, restarting it and its catching up take on loopback
// (bench/upgrade.md measures about 1 s); a member with a long journal to recover takes longer.
const installEstimate = 5 * time.Second

// Procedures lists the procedure names.
var Procedures = []string{Maintenance, Major, MajorDBChange, PlannedDowntime}

// Step kinds.
const (
	KindPreflight  = "preflight"
	KindInstall    = "install"
	KindNoFailover = "no-failover"
	KindFailover   = "failover"
	KindDBChange   = "db-change"
	KindStop       = "stop-member"
	KindStart      = "start-member"
)

// Options are the operator's choices.
type Options struct {
	Mirror     []string // data addresses of members of the mirror (any will do)
	MirrorName string   // "" when the members belong to one mirror
	Target     Target
	Procedure  string // "" chooses from the versions
	// DBChangeCmd runs (through sh -c) against the new primary, whose addresses are in its environment.
	DBChangeCmd string
	Failback    bool // hand the primary role back to the original primary at the end
	// Agents overrides the host agent address of members (by name); the rest come from the mirror's configuration.
	Agents     map[string]string
	AgentToken string
	AgentTLS   *tls.Config
	Ctl        mirrorctl.Options
	// Wait bounds each wait for a member to come back, catch up or take over (default 10 minutes).
	Wait time.Duration
}

// member is one member as the plan sees it when built.
type member struct {
	name     string
	typ      string // mirror.MemberType
	software string
	level    int
	agent    string
	addr     string
}

// Build looks at the live mirror and returns the plan that upgrades every member to o.Target.
func Build(ctx context.Context, o Options) (*plans.Plan, error) {
	if o.Procedure != "" && !slices.Contains(Procedures, o.Procedure) {
		return nil, fmt.Errorf("procedure %q: want one of %s", o.Procedure, strings.Join(Procedures, ", "))
	}
	if o.Target.SHA256 == "" {
		return nil, fmt.Errorf("no binary to upgrade to")
	}
	f, err := mirrorctl.Connect(ctx, o.Mirror, o.MirrorName, o.Ctl)
	if err != nil {
		return nil, err
	}
	pm, err := f.PrimaryMember()
	if err != nil {
		return nil, err
	}
	pst, err := pm.Local(ctx)
	if err != nil {
		return nil, fmt.Errorf("the primary %s: %w", f.Primary, err)
	}
	if pst.Role != mirror.RolePrimary.String() {
		return nil, fmt.Errorf("%s is not serving as primary of mirror %s (it is %s); upgrade a mirror whose primary runs", pm.Name, f.Mirror, pst.Role)
	}
	var members []member
	for _, row := range pst.Members {
		m, err := f.Member(row.Name)
		if err != nil {
			return nil, err
		}
		mem := member{name: row.Name, typ: memberType(row.Type), software: row.Software, level: row.Level, agent: row.AgentAddr, addr: row.Addr}
		if st, err := m.Status(ctx); err == nil {
			mem.software, mem.level = st.Version.Software, st.Version.Level
		} else if row.Software == "" {
			return nil, fmt.Errorf("member %s does not answer and the primary has not seen its version: start it to plan an upgrade: %w", row.Name, err)
		}
		// A member that does not answer is planned at the version the primary last saw; the plan's pre-checks show it
		// unreachable until it is back.
		if a, ok := o.Agents[row.Name]; ok {
			mem.agent = a
		}
		if mem.agent == "" {
			return nil, fmt.Errorf("member %s has no host agent: an upgrade installs binaries through each member's agent (run `member agent` for it, or name it with --agent %s=ADDR)", row.Name, row.Name)
		}
		if mem.level > o.Target.Version.Level {
			return nil, fmt.Errorf("member %s runs %s, newer than %s: to go back before finalize, use `upgrade rollback` with the plan that upgraded it",
				row.Name, version.Describe(mem.software, mem.level), o.Target.Describe())
		}
		members = append(members, mem)
	}
	if !slices.ContainsFunc(members, func(m member) bool {
		return m.software != o.Target.Version.Software || m.level != o.Target.Version.Level
	}) {
		return nil, fmt.Errorf("nothing to upgrade: every member of mirror %s already runs %s", f.Mirror, o.Target.Describe())
	}
	if pst.FinalizedLevel > o.Target.Version.Level {
		return nil, fmt.Errorf("mirror %s is finalized at format level %d; %s cannot run it", f.Mirror, pst.FinalizedLevel, o.Target.Describe())
	}
	proc := o.Procedure
	if proc == "" {
		proc = Maintenance
		for _, m := range members {
			if m.level < o.Target.Version.Level {
				proc = Major
			}
		}
		if o.DBChangeCmd != "" {
			proc = MajorDBChange
		}
	}
	if proc == MajorDBChange && o.DBChangeCmd == "" {
		return nil, fmt.Errorf("procedure %s needs --db-change-cmd", proc)
	}
	b := &builder{o: o, proc: proc, primary: f.Primary, mirror: f.Mirror}
	for _, m := range members {
		switch {
		case m.name == f.Primary:
			b.p = m
		case m.typ == string(mirror.Failover):
			b.backup = append(b.backup, m)
		default:
			b.asyncs = append(b.asyncs, m)
		}
	}
	// DR asyncs before reporting asyncs, each group in name order.
	slices.SortStableFunc(b.asyncs, func(x, y member) int {
		return asyncRank(x.typ) - asyncRank(y.typ)
	})
	if proc != PlannedDowntime && len(b.backup) == 0 {
		return nil, fmt.Errorf("mirror %s has no backup to fail over to: a rolling upgrade needs one (or use --procedure %s)", f.Mirror, PlannedDowntime)
	}
	return b.build(members), nil
}

func memberType(label string) string {
	for _, t := range []mirror.MemberType{mirror.Failover, mirror.DR, mirror.ReportingRO, mirror.ReportingRW} {
		if t.Label() == label || string(t) == label {
			return string(t)
		}
	}
	return label
}

func asyncRank(t string) int {
	if t == string(mirror.DR) {
		return 0
	}
	return 1
}

type builder struct {
	o       Options
	proc    string
	mirror  string
	primary string
	p       member
	backup  []member
	asyncs  []member
	plan    *plans.Plan
}

func args(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func (b *builder) build(members []member) *plans.Plan {
	t := b.o.Target
	params := map[string]string{
		"mirror": b.mirror, "addrs": strings.Join(b.o.Mirror, ","), "procedure": b.proc,
		"source": t.Source, "sha256": t.SHA256, "software": t.Version.Software, "level": strconv.Itoa(t.Version.Level),
		"primary": b.primary, "db_change_cmd": b.o.DBChangeCmd, "failback": strconv.FormatBool(b.o.Failback),
		"size": strconv.FormatInt(t.Size, 10),
	}
	var addrs []string
	for _, m := range members {
		params["from."+m.name] = m.software
		params["from_level."+m.name] = strconv.Itoa(m.level)
		params["agent."+m.name] = m.agent
		params["type."+m.name] = m.typ
		addrs = append(addrs, m.addr)
	}
	params["member_addrs"] = strings.Join(addrs, ",")
	b.plan = plans.New(Tool, fmt.Sprintf("upgrade mirror %s to %s (%s procedure)", b.mirror, t.Describe(), b.proc), params)
	b.plan.Add(plans.Step{Kind: KindPreflight, Member: b.primary, Args: args("primary", b.primary),
		Title: fmt.Sprintf("check mirror %s before anything changes", b.mirror),
		Checks: []plans.Check{
			{Name: checkPrimary, Title: fmt.Sprintf("%s is the primary (no other operator or failover moved it)", b.primary)},
			{Name: checkMembers, Title: "every member answers and runs its version from the plan, or the target"},
			{Name: checkAgents, Title: "every member's host agent answers"},
			{Name: checkBackup, Title: "the backup is Active"},
			{Name: checkAsyncs, Title: "asyncs have caught up and dejournaling is current on every member"},
			{Name: checkDatabases, Title: "no database needs attention"},
			{Name: checkArbiter, Title: "the arbiter (if the mirror has one) is connected"},
			{Name: checkRetention, Title: "the primary keeps the journal of members that restart (purge holdback covers the upgrade)"},
			{Name: checkDisk, Title: "every member's data directory has room for the new binary and its previous one"},
			{Name: checkBinary, Title: fmt.Sprintf("the binary at %s still has SHA-256 %s…", t.Source, t.SHA256[:12])},
			{Name: checkNoFailover, Title: "no-failover is not set (nobody else is servicing the mirror)"},
		},
		Verify: "nothing changes", Estimate: plans.Duration(time.Second)})
	if b.proc == PlannedDowntime {
		b.downtime(members)
		return b.plan
	}
	// A member that already runs the target (one added on a new host before the upgrade) has nothing to install.
	for _, a := range b.asyncs {
		if !b.atTarget(a) {
			b.install(a, b.primary, installEstimate)
		}
	}
	bk := b.backup[0]
	if !b.atTarget(bk) {
		b.plan.Add(plans.Step{Kind: KindNoFailover, Member: b.primary, Args: args("on", "true", "primary", b.primary),
			Title:  fmt.Sprintf("set no-failover on %s so that the backup's restart is not mistaken for a failure", b.primary),
			Checks: []plans.Check{{Name: checkPrimary, Title: fmt.Sprintf("%s is the primary", b.primary)}, {Name: checkBackup, Title: "the backup is Active"}},
			Verify: "the primary and the backup report no-failover", Undo: "clear no-failover", Estimate: plans.Duration(time.Second)})
		b.install(bk, b.primary, installEstimate)
		b.plan.Add(plans.Step{Kind: KindNoFailover, Member: b.primary, Args: args("on", "false", "primary", b.primary),
			Title:  fmt.Sprintf("clear no-failover on %s", b.primary),
			Checks: []plans.Check{{Name: checkPrimary, Title: fmt.Sprintf("%s is the primary", b.primary)}},
			Verify: "no-failover is cleared", Undo: "set no-failover again", Estimate: plans.Duration(time.Second)})
	}
	if b.atTarget(b.p) {
		// The primary runs the target already: no failover; the database changes, if any, go to it now.
		b.dbChange(b.primary, "the primary")
		return b.plan
	}
	b.failover(b.primary, bk.name)
	newPrimary := bk.name
	b.dbChange(newPrimary, "the new primary")
	b.install(b.p, newPrimary, installEstimate)
	if b.o.Failback {
		b.failover(newPrimary, b.p.name)
	}
	return b.plan
}

// dbChange adds the step that runs the database change command (if any) on primary; it is the point of no return.
func (b *builder) dbChange(primary, which string) {
	if b.o.DBChangeCmd == "" {
		return
	}
	n := b.plan.Add(plans.Step{Kind: KindDBChange, Member: primary, Args: args("primary", primary, "cmd", b.o.DBChangeCmd),
		Title:    fmt.Sprintf("apply the database changes on %s %s: %s (they reach every member through the journal)", which, primary, b.o.DBChangeCmd),
		Checks:   []plans.Check{{Name: checkPrimary, Title: fmt.Sprintf("%s is the primary", primary)}},
		Verify:   "the command exited with status 0",
		Estimate: plans.Duration(30 * time.Second)})
	// Changes made by the new version's application cannot be taken back by swapping binaries.
	b.plan.PointOfNoReturn = n
}

// atTarget reports whether m already runs the target version.
func (b *builder) atTarget(m member) bool {
	return m.software == b.o.Target.Version.Software && m.level == b.o.Target.Version.Level
}

// install adds the step that installs the target on m while primary serves.
func (b *builder) install(m member, primary string, est time.Duration) {
	t := b.o.Target
	role := mirror.MemberType(m.typ).Label()
	if m.name == b.p.name {
		role = "old primary, now backup"
	}
	b.plan.Add(plans.Step{Kind: KindInstall, Member: m.name, Args: args("primary", primary, "restart", "true"),
		Title: fmt.Sprintf("upgrade %s (%s) from %s to %s: its agent installs the binary and restarts it",
			m.name, role, version.Describe(m.software, m.level), t.Describe()),
		Checks: []plans.Check{
			{Name: checkPrimary, Title: fmt.Sprintf("%s is the primary", primary)},
			{Name: checkMember, Title: fmt.Sprintf("%s answers and runs %s or the target", m.name, m.software)},
			{Name: checkAgent, Title: fmt.Sprintf("%s's agent answers", m.name)},
			{Name: checkBinary, Title: "the binary's checksum is the plan's"},
		},
		Verify:   fmt.Sprintf("%s runs %s and is back in the mirror, caught up", m.name, t.Describe()),
		Undo:     fmt.Sprintf("%s's agent puts back %s and restarts it", m.name, m.software),
		Estimate: plans.Duration(est)})
}

func (b *builder) failover(from, to string) {
	b.plan.Add(plans.Step{Kind: KindFailover, Member: from, Args: args("from", from, "to", to),
		Title: fmt.Sprintf("planned failover: %s hands the primary role to %s (applications pause for the handoff and reconnect to %s)", from, to, to),
		Checks: []plans.Check{
			{Name: checkPrimaryEither, Title: fmt.Sprintf("%s is the primary (or %s already is)", from, to)},
			{Name: checkBackup, Title: fmt.Sprintf("%s is the Active backup", to)},
		},
		Verify: fmt.Sprintf("%s is the primary and serves", to),
		Undo:   fmt.Sprintf("planned failover back to %s", from),
		// The handoff pauses applications for a moment of the step: under 200 ms on a LAN (MIRRORING.md §7; the planned
		// failover benchmark measures tens of milliseconds).
		Estimate: plans.Duration(2 * time.Second), Downtime: true, Pause: plans.Duration(200 * time.Millisecond)})
}

func (b *builder) downtime(members []member) {
	order := append(append(slices.Clone(b.asyncs), b.backup...), b.p)
	for _, m := range order {
		b.plan.Add(plans.Step{Kind: KindStop, Member: m.name, Args: args(),
			Title:    fmt.Sprintf("stop %s (%s) through its agent", m.name, mirror.MemberType(m.typ).Label()),
			Checks:   []plans.Check{{Name: checkAgent, Title: fmt.Sprintf("%s's agent answers", m.name)}},
			Verify:   fmt.Sprintf("%s is stopped", m.name),
			Undo:     fmt.Sprintf("start %s again", m.name),
			Estimate: plans.Duration(2 * time.Second), Downtime: true})
	}
	for _, m := range order {
		b.plan.Add(plans.Step{Kind: KindInstall, Member: m.name, Args: args("restart", "false"),
			Title:    fmt.Sprintf("install %s on %s (stopped)", b.o.Target.Describe(), m.name),
			Checks:   []plans.Check{{Name: checkAgent, Title: fmt.Sprintf("%s's agent answers", m.name)}, {Name: checkBinary, Title: "the binary's checksum is the plan's"}},
			Verify:   fmt.Sprintf("%s's agent holds the new binary", m.name),
			Undo:     fmt.Sprintf("%s's agent puts back %s", m.name, m.software),
			Estimate: plans.Duration(2 * time.Second), Downtime: true})
	}
	// The primary first, so the others find it when they start.
	start := append([]member{b.p}, b.backup...)
	start = append(start, b.asyncs...)
	for _, m := range start {
		b.plan.Add(plans.Step{Kind: KindStart, Member: m.name, Args: args("primary", b.primary),
			Title:    fmt.Sprintf("start %s with %s", m.name, b.o.Target.Describe()),
			Checks:   []plans.Check{{Name: checkAgent, Title: fmt.Sprintf("%s's agent answers", m.name)}},
			Verify:   fmt.Sprintf("%s runs %s and is back in the mirror", m.name, b.o.Target.Describe()),
			Undo:     fmt.Sprintf("stop %s", m.name),
			Estimate: plans.Duration(10 * time.Second), Downtime: m.name == b.p.name})
	}
	b.dbChange(b.primary, "the primary")
}
