package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/server"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/memberproc"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
	"github.com/mirrorkit/mirrorkit/plans"
)

func TestMain(m *testing.M) {
	code := m.Run()
	memberproc.RemoveBuilds()
	os.Exit(code)
}

// The two releases the tests upgrade between: genuinely different builds of member (format level 1 cannot read the
// journal records level 2 writes once finalized).
const (
	oldSoftware = "0.9.0"
	oldLevel    = 1
	newSoftware = "1.0.0"
	newLevel    = 2
)

type member struct{ name, as string }

type fixture struct {
	c        *testcluster.Cluster
	old, new string // member binaries
	members  []member
	dir      string
}

// newFixture starts a mirror of members running the old build, each under a host agent; the first is the primary.
func newFixture(t *testing.T, members ...member) *fixture {
	t.Helper()
	f := &fixture{c: testcluster.New(t), members: members, dir: t.TempDir(),
		old: memberproc.BuildVersion(t, "member", oldSoftware, oldLevel),
		new: memberproc.BuildVersion(t, "member", newSoftware, newLevel)}
	for _, m := range members {
		f.c.Add(m.name)
		f.c.AddAgent(m.name).UseBinary(f.old)
	}
	f.c.Start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs at the failure:\n%s", f.c.Logs(60))
		}
	})
	first := f.node(members[0].name)
	mustNode(t, first, "mirror", "create", "MIR", "--qos", "2s")
	for _, m := range members[1:] {
		mustNode(t, f.node(m.name), "mirror", "join", "MIR", "--primary", first.Addr, "--as", m.as)
	}
	mustNode(t, first, "db", "create", "APP", "--mirror", "MIR")
	for _, m := range members[1:] {
		n := f.node(m.name)
		f.c.WaitFor(t, "create APP on "+m.name, 30*time.Second, func() (bool, error) {
			r := n.CLI(t, "db", "create", "APP", "--mirror", "MIR")
			return r.ExitCode == 0, fmt.Errorf("%s", r.Stderr)
		})
	}
	f.waitAllCurrent(t, members[0].name)
	return f
}

func (f *fixture) node(name string) *testcluster.Node { return f.c.Node(name) }

func (f *fixture) addrs() []string {
	var out []string
	for _, m := range f.members {
		out = append(out, f.node(m.name).Addr)
	}
	return out
}

func (f *fixture) load(t *testing.T) *testcluster.Load {
	t.Helper()
	return testcluster.StartLoad(t, f.addrs(), testcluster.LoadOptions{Writers: 4, SetsOnly: true, Prefix: "U",
		Client: client.Options{Conns: 2, RetryTimeout: 60 * time.Second, DialTimeout: 2 * time.Second, AttemptTimeout: 4 * time.Second}})
}

func mustNode(t *testing.T, n *testcluster.Node, args ...string) string {
	t.Helper()
	r := n.CLI(t, args...)
	if r.ExitCode != 0 {
		t.Fatalf("member %s on %s: exit %d: %s", strings.Join(args, " "), n.Name, r.ExitCode, r.Stderr)
	}
	return r.Stdout
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func runUpgrade(t *testing.T, args ...string) result {
	t.Helper()
	r := memberproc.Run(t, "upgrade", []string{"MIRRORKIT_AGENT_TOKEN=" + testcluster.AgentToken}, args...)
	return result{stdout: r.Stdout, stderr: r.Stderr, code: r.ExitCode}
}

func mustUpgrade(t *testing.T, args ...string) result {
	t.Helper()
	r := runUpgrade(t, args...)
	if r.code != 0 {
		t.Fatalf("upgrade %s: %s", strings.Join(args, " "), r)
	}
	return r
}

func failUpgrade(t *testing.T, want string, args ...string) result {
	t.Helper()
	r := runUpgrade(t, args...)
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("upgrade %s: want a failure saying %q, got %s", strings.Join(args, " "), want, r)
	}
	return r
}

func (f *fixture) plan(t *testing.T, extra ...string) (string, result) {
	t.Helper()
	path := filepath.Join(f.dir, "plan.json")
	r := mustUpgrade(t, append([]string{"plan", "--mirror", f.node(f.members[0].name).Addr, "--to-binary", f.new, "-o", path, "--wait", "90s"}, extra...)...)
	return path, r
}

func status(t *testing.T, n *testcluster.Node) (server.Status, error) {
	t.Helper()
	var st server.Status
	code, err := n.TryAdminGet("/api/v1/status", &st)
	if err == nil && code != 200 {
		err = fmt.Errorf("status of %s: HTTP %d", n.Name, code)
	}
	return st, err
}

func local(n *testcluster.Node) (mirror.Status, error) {
	var sts []mirror.Status
	code, err := n.TryAdminGet("/api/v1/mirror/local", &sts)
	if err == nil && (code != 200 || len(sts) != 1) {
		err = fmt.Errorf("mirror status of %s: HTTP %d, %d mirrors", n.Name, code, len(sts))
	}
	if err != nil {
		return mirror.Status{}, err
	}
	return sts[0], nil
}

// waitVersions waits until every member runs software.
func (f *fixture) waitVersions(t *testing.T, software string, level int) {
	t.Helper()
	for _, m := range f.members {
		n := f.node(m.name)
		f.c.WaitFor(t, fmt.Sprintf("%s runs %s", m.name, software), 60*time.Second, func() (bool, error) {
			st, err := status(t, n)
			if err != nil {
				return false, err
			}
			return st.Version.Software == software && st.Version.Level == level, fmt.Errorf("%s runs %s level %d", m.name, st.Version.Software, st.Version.Level)
		})
	}
}

// waitAllCurrent waits until primary serves and every other member has caught up (the backup Active).
func (f *fixture) waitAllCurrent(t *testing.T, primary string) {
	t.Helper()
	f.c.WaitFor(t, "every member current with primary "+primary, 60*time.Second, func() (bool, error) {
		st, err := local(f.node(primary))
		if err != nil {
			return false, err
		}
		if st.Role != mirror.RolePrimary.String() {
			return false, fmt.Errorf("%s is %s", primary, st.Role)
		}
		for _, r := range st.Members {
			if r.Name != primary && r.JournalTransfer != mirror.TransferActive && r.JournalTransfer != mirror.CaughtUp {
				return false, fmt.Errorf("%s: %s %s %s", r.Name, r.Status, r.JournalTransfer, r.Error)
			}
		}
		return true, nil
	})
}

// checkData waits until every copy of APP has the same logical hash and holds every acknowledged write.
func (f *fixture) checkData(t *testing.T, acked map[string]map[string]string) {
	t.Helper()
	f.c.WaitFor(t, "all copies of APP converge", 60*time.Second, func() (bool, error) {
		var first store.LogicalHash
		for i, m := range f.members {
			var h store.LogicalHash
			code, err := f.node(m.name).TryAdminGet("/api/v1/databases/APP/hash", &h)
			if err != nil || code != 200 {
				return false, fmt.Errorf("hash on %s: %d %v", m.name, code, err)
			}
			if i == 0 {
				first = h
			} else if h != first {
				return false, fmt.Errorf("%s and %s differ", f.members[0].name, m.name)
			}
		}
		return true, nil
	})
	for _, m := range f.members {
		c := f.node(m.name).Client(t, 2)
		for ref, val := range acked["APP"] {
			v, ok, err := c.Get(context.Background(), "APP", ref)
			if err != nil || !ok || string(v) != val {
				t.Fatalf("acknowledged %s=%s on %s: got %q %v %v", ref, val, m.name, v, ok, err)
			}
		}
	}
}

// binaries records what every member runs and which binary its agent holds.
func (f *fixture) binaries(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range f.members {
		info, err := f.node(m.name).Agent().Client().Binary(context.Background(), m.name)
		if err != nil {
			t.Fatal(err)
		}
		st, err := status(t, f.node(m.name))
		if err != nil {
			t.Fatal(err)
		}
		out[m.name] = fmt.Sprintf("%s %s", info.SHA256, st.Version.Software)
	}
	return out
}

// TestRollingUpgradeUnderLoad upgrades a mirror of primary, backup, DR and reporting async from the old build to the new
// one while a client writes through the mirror-aware client: no acknowledged write lost, no client error. Then finalize
// switches the journal format, rollback is refused, and a member of the old build is refused.
func TestRollingUpgradeUnderLoad(t *testing.T) {
	f := newFixture(t, member{"A", ""}, member{"B", "failover"}, member{"C", "dr"}, member{"D", "reporting-ro"})
	l := f.load(t)
	l.WaitAcks(t, f.c, 200)

	// The plan is a dry run: nothing changes.
	before := f.binaries(t)
	planPath, r := f.plan(t)
	for _, want := range []string{"upgrade mirror MIR to 1.0.0 (format level 2) (major procedure)", "upgrade C (Disaster Recovery) from 0.9.0 (format level 1)",
		"upgrade D (Read-Only Reporting)", "planned failover: A hands the primary role to B", "expected application-visible pause up to 200ms (step", "every pre-check passes"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("plan output lacks %q:\n%s", want, r.stdout)
		}
	}
	if after := f.binaries(t); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("upgrade plan changed members: before %v, after %v", before, after)
	}
	if st, err := local(f.node("A")); err != nil || st.Role != mirror.RolePrimary.String() || st.NoFailover {
		t.Fatalf("after the plan A is %+v (%v)", st, err)
	}

	r = mustUpgrade(t, "apply", planPath, "--yes", "--wait", "90s")
	if !strings.Contains(r.stdout, "upgrade done") || !strings.Contains(r.stdout, "ACTUAL") {
		t.Fatalf("apply output:\n%s", r)
	}
	f.waitVersions(t, newSoftware, newLevel)
	f.waitAllCurrent(t, "B")
	l.WaitAcks(t, f.c, 200)
	total, longest := l.Unavailability()
	t.Logf("client-visible unavailability across the upgrade: %s in total, longest %s", total, longest)

	// Finalize: the new record format from now on; rollback refused.
	r = mustUpgrade(t, "finalize", "--mirror", f.node("B").Addr, "--yes")
	if !strings.Contains(r.stdout, "finalized at format level 2") {
		t.Fatalf("finalize output:\n%s", r)
	}
	for _, m := range f.members {
		n := f.node(m.name)
		f.c.WaitFor(t, m.name+" knows the mirror is finalized", 30*time.Second, func() (bool, error) {
			st, err := local(n)
			return err == nil && st.FinalizedLevel == newLevel && st.RecordFormat == 2, fmt.Errorf("%+v %v", st.FinalizedLevel, err)
		})
	}
	l.WaitAcks(t, f.c, 200)
	acked := l.Finish(t)
	f.checkData(t, acked)
	failUpgrade(t, "rollback refused", "rollback", planPath, "--yes")

	// A member of the old build is refused by the finalized mirror, with both versions named.
	E := f.c.Add("E")
	f.c.AddAgent("E").UseBinary(f.old)
	f.c.Start("E")
	E.CLI(t, "mirror", "join", "MIR", "--primary", f.node("B").Addr, "--as", "dr")
	f.c.WaitFor(t, "E refused for its old format level", 30*time.Second, func() (bool, error) {
		st, err := local(E)
		if err != nil {
			return false, err
		}
		msg := ""
		for _, row := range st.Members {
			if row.Name == "E" {
				msg = row.Error
			}
		}
		return strings.Contains(msg, "finalized at format level 2") && strings.Contains(msg, "0.9.0 (format level 1)"), fmt.Errorf("E's error %q", msg)
	})
}

// upgradeEvent is one JSON line of upgrade apply --json.
type upgradeEvent struct {
	Step  int    `json:"step"`
	Kind  string `json:"kind"`
	Phase string `json:"phase"`
	Event string `json:"event"`
}

// applyUntil runs upgrade apply --json and kills it with SIGKILL when step reaches phase; it reports whether it did, and
// what the run printed on stderr.
func applyUntil(t *testing.T, planPath string, step int, phase string) (bool, string) {
	t.Helper()
	// Held there until killed (plans.HoldEnv): a fast step would otherwise be over before the kill lands.
	env := []string{"MIRRORKIT_AGENT_TOKEN=" + testcluster.AgentToken, fmt.Sprintf("%s=%d:%s", plans.HoldEnv, step, phase)}
	ok, r := memberproc.RunUntil(t, "upgrade", env, 3*time.Minute,
		func(line json.RawMessage) bool {
			var ev upgradeEvent
			return json.Unmarshal(line, &ev) == nil && ev.Step == step && ev.Phase == phase
		}, "apply", planPath, "--yes", "--json", "--wait", "90s")
	return ok, r.Stderr
}

// TestUpgradeKilledAtEachStepThenRolledBack kills `upgrade apply` with SIGKILL as the action is about to start and as the
// verification starts, in every step in turn, re-running it each time, while a client writes; then rolls the finished
// upgrade back. An old member is refused the journal once the new build is primary.
func TestUpgradeKilledAtEachStepThenRolledBack(t *testing.T) {
	f := newFixture(t, member{"A", ""}, member{"B", "failover"}, member{"C", "dr"})
	l := f.load(t)
	l.WaitAcks(t, f.c, 100)
	planPath, _ := f.plan(t)
	// preflight, C, no-failover on, B, no-failover off, failover, A.
	const steps, failoverStep = 7, 6
	for step := 1; step <= steps; step++ {
		for _, phase := range []string{"run", "verify"} {
			if step == 1 && phase == "verify" {
				continue // the preflight has no verification
			}
			if ok, stderr := applyUntil(t, planPath, step, phase); !ok {
				t.Fatalf("the apply to be killed in the %s of step %d ended before it:\n%s", phase, step, stderr)
			}
			if step == failoverStep && phase == "verify" {
				// B (new build) is primary now; A still runs the old build and is refused the journal, naming both.
				f.c.WaitFor(t, "A refused by the new primary", 60*time.Second, func() (bool, error) {
					st, err := local(f.node("A"))
					if err != nil {
						return false, err
					}
					for _, row := range st.Members {
						if row.Name == "A" && strings.Contains(row.Error, "may neither receive the journal nor become primary") &&
							strings.Contains(row.Error, "0.9.0 (format level 1)") && strings.Contains(row.Error, "1.0.0 (format level 2)") {
							return true, nil
						}
					}
					return false, fmt.Errorf("A's view: %+v", st.Members)
				})
			}
			if step == failoverStep && phase == "verify" {
				// Finalize is refused while A runs the old build, and says so.
				failUpgrade(t, "A runs 0.9.0 (format level 1)", "finalize", "--mirror", f.node("B").Addr, "--yes")
			}
			l.WaitAcks(t, f.c, 20)
		}
	}
	r := mustUpgrade(t, "apply", planPath, "--yes", "--wait", "90s")
	if !strings.Contains(r.stdout, "upgrade done") {
		t.Fatalf("the last apply:\n%s", r)
	}
	f.waitVersions(t, newSoftware, newLevel)
	f.waitAllCurrent(t, "B")
	r = mustUpgrade(t, "status", planPath)
	if !strings.Contains(r.stdout, "done") || !strings.Contains(r.stdout, "ESTIMATE") {
		t.Fatalf("status:\n%s", r)
	}
	l.WaitAcks(t, f.c, 100)

	// Before finalize the upgrade rolls back: previous binaries in reverse order, the primary role back to A.
	mustUpgrade(t, "rollback", planPath, "--yes", "--wait", "90s")
	f.waitVersions(t, oldSoftware, oldLevel)
	f.waitAllCurrent(t, "A")
	l.WaitAcks(t, f.c, 100)
	acked := l.Finish(t)
	f.checkData(t, acked)
}

// Bad input is refused with a clear error, and nothing changes.
func TestUpgradeBadInput(t *testing.T) {
	f := newFixture(t, member{"A", ""}, member{"B", "failover"})
	A := f.node("A").Addr
	before := f.binaries(t)
	notMember := filepath.Join(f.dir, "not-a-member")
	if err := os.WriteFile(notMember, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	failUpgrade(t, "no such file", "plan", "--mirror", A, "--to-binary", filepath.Join(f.dir, "missing"))
	failUpgrade(t, "not a member binary", "plan", "--mirror", A, "--to-binary", notMember)
	failUpgrade(t, "needs --db-change-cmd", "plan", "--mirror", A, "--to-binary", f.new, "--procedure", "major-db-change")
	failUpgrade(t, "--procedure", "plan", "--mirror", A, "--to-binary", f.new, "--procedure", "sideways")
	failUpgrade(t, "nothing to upgrade: every member of mirror MIR already runs 0.9.0 (format level 1)", "plan", "--mirror", A, "--to-binary", f.old)
	// Plan files: malformed, of another tool, missing.
	bad := filepath.Join(f.dir, "bad.json")
	os.WriteFile(bad, []byte(`{"version": 1, "steps": [`), 0o644)
	failUpgrade(t, "plan file", "apply", bad, "--yes")
	other := filepath.Join(f.dir, "other.json")
	os.WriteFile(other, []byte(`{"version":1,"id":"x1","tool":"migrate add-db","title":"t","created":"2026-01-01T00:00:00Z","steps":[{"n":1,"kind":"add-to-mirror","title":"t","estimate":"1s","downtime":false}],"point_of_no_return":0}`), 0o644)
	failUpgrade(t, "not an upgrade plan", "apply", other, "--yes")
	failUpgrade(t, "nothing to roll back", "rollback", mustPlanFile(t, f), "--yes")
	if after := f.binaries(t); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("refused commands changed members: before %v, after %v", before, after)
	}

	// A plan made before someone else moved the primary refuses to run: its expected-primary guard.
	planPath := mustPlanFile(t, f)
	mustNode(t, f.node("A"), "mirror", "failover", "MIR")
	f.waitAllCurrent(t, "B")
	failUpgrade(t, "another operator or a failover moved it", "apply", planPath, "--yes", "--wait", "5s")
	if after := f.binaries(t); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a plan refused by its guard changed members: before %v, after %v", before, after)
	}

	// A member that is down is planned at the version the primary last saw, and the plan shows the pre-checks that need
	// it failing, with the reason, instead of refusing to make a plan.
	f.node("A").StopByAgent()
	r := failUpgrade(t, "failing pre-checks (nothing was changed)", "plan", "--mirror", f.node("B").Addr, "--to-binary", f.new, "--wait", "1s")
	for _, want := range []string{"upgrade A (Failover) from 0.9.0", "✗ member: member A", "is not reachable", "✗ backup-active: the backup A is not Active"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("the plan with member A down does not show %q: %s", want, r)
		}
	}

	// Members without host agents cannot be upgraded: the plan says how to fix it.
	c := testcluster.New(t)
	c.Add("P")
	c.Start()
	mustNode(t, c.Node("P"), "mirror", "create", "SOLO", "--qos", "2s")
	failUpgrade(t, "member P has no host agent", "plan", "--mirror", c.Node("P").Addr, "--to-binary", f.new)
}

// mustPlanFile writes a plan (a dry run) and returns its path.
func mustPlanFile(t *testing.T, f *fixture) string {
	t.Helper()
	path, _ := f.plan(t)
	return path
}

// TestUpgradeProcedures: a maintenance release (same format level) with fail-back, then a planned-downtime upgrade to the
// next level with a database change applied on the primary.
func TestUpgradeProcedures(t *testing.T) {
	f := newFixture(t, member{"A", ""}, member{"B", "failover"})
	mustNode(t, f.node("A"), "kv", "set", "--db", "APP", "^Before", "1")

	// 0.9.0 to 0.9.1, both format level 1: a maintenance release, handed back to A at the end.
	f.new = memberproc.BuildVersion(t, "member", "0.9.1", oldLevel)
	planPath, r := f.plan(t, "--failback")
	for _, want := range []string{"(maintenance procedure)", "planned failover: A hands the primary role to B", "planned failover: B hands the primary role to A"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("maintenance plan lacks %q:\n%s", want, r.stdout)
		}
	}
	mustUpgrade(t, "apply", planPath, "--yes", "--wait", "90s")
	f.waitVersions(t, "0.9.1", oldLevel)
	f.waitAllCurrent(t, "A")

	// Planned downtime to 1.0.0 with a database change on the primary: the change is the point of no return.
	f.new = memberproc.BuildVersion(t, "member", newSoftware, newLevel)
	change := fmt.Sprintf(`%s kv set --member "$MIRRORKIT_PRIMARY_ADDR" --db APP '^Changed' "by $MIRRORKIT_PRIMARY"`, memberproc.Build(t, "member"))
	planPath, r = f.plan(t, "--procedure", "planned-downtime", "--db-change-cmd", change)
	for _, want := range []string{"(planned-downtime procedure)", "stop A", "start A with 1.0.0", "point of no return", "apply the database changes on the primary A"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("planned-downtime plan lacks %q:\n%s", want, r.stdout)
		}
	}
	mustUpgrade(t, "apply", planPath, "--yes", "--wait", "90s")
	f.waitVersions(t, newSoftware, newLevel)
	f.waitAllCurrent(t, "A")
	for _, m := range f.members {
		n := f.node(m.name)
		f.c.WaitFor(t, "the database change reaches "+m.name, 30*time.Second, func() (bool, error) {
			r := n.CLI(t, "kv", "get", "--db", "APP", "^Changed")
			return strings.TrimSpace(r.Stdout) == "by A", fmt.Errorf("^Changed on %s: %q %s", m.name, r.Stdout, r.Stderr)
		})
		if got := strings.TrimSpace(mustNode(t, n, "kv", "get", "--db", "APP", "^Before")); got != "1" {
			t.Fatalf("^Before on %s after the upgrades: %q", m.name, got)
		}
	}
	// The database change cannot be undone: rollback stops before it.
	r = runUpgrade(t, "rollback", planPath, "--yes")
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "point of no return") {
		t.Fatalf("rollback past the point of no return: %s", r)
	}
}

// TestOldMemberRefusedAsPrimary: once the new build is primary, the old primary — refused the journal — may not become
// primary either, not even by an operator's force-primary after the new primary is lost; the refusal names both versions.
// Upgraded, it rejoins and the plan completes.
func TestOldMemberRefusedAsPrimary(t *testing.T) {
	f := newFixture(t, member{"A", ""}, member{"B", "failover"})
	// With a database change, run on the new primary right after the failover.
	change := fmt.Sprintf(`%s kv set --member "$MIRRORKIT_PRIMARY_ADDR" --db APP '^Changed' "by $MIRRORKIT_PRIMARY"`, memberproc.Build(t, "member"))
	planPath, r := f.plan(t, "--db-change-cmd", change)
	if !strings.Contains(r.stdout, "(major-db-change procedure)") || !strings.Contains(r.stdout, "apply the database changes on the new primary B") {
		t.Fatalf("plan:\n%s", r.stdout)
	}
	// preflight, no-failover on, B, no-failover off, the failover to B (5), the database change, A.
	if ok, stderr := applyUntil(t, planPath, 5, "verify"); !ok {
		t.Fatalf("the apply ended before the failover's verification:\n%s", stderr)
	}
	A, B := f.node("A"), f.node("B")
	// A new plan is not written over one applied in part.
	failUpgrade(t, "applied in part", "plan", "--mirror", B.Addr, "--to-binary", f.new, "-o", planPath)
	f.c.WaitFor(t, "A refused by the new primary", 60*time.Second, func() (bool, error) {
		st, err := local(A)
		if err != nil {
			return false, err
		}
		for _, row := range st.Members {
			if row.Name == "A" && strings.Contains(row.Error, "may neither receive the journal nor become primary") {
				return true, nil
			}
		}
		return false, fmt.Errorf("A's view: %+v", st.Members)
	})
	// Refused, A does not take the new primary for lost: it neither forces B down through B's agent nor takes over,
	// however long it waits (here, well past the QoS timeout).
	for deadline := time.Now().Add(3 * 2 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ms, err := B.Agent().Client().Member(context.Background(), "B")
		if err != nil || !ms.Running {
			t.Fatalf("B while A is refused: %+v %v", ms, err)
		}
		if st, err := local(A); err == nil && st.Role == mirror.RolePrimary.String() {
			t.Fatal("A became primary while refused for its version")
		}
	}
	B.StopByAgent()
	forced := A.CLI(t, "mirror", "force-primary", "MIR")
	if forced.ExitCode == 0 || !strings.Contains(forced.Stderr, "may not become primary") || !strings.Contains(forced.Stderr, "0.9.0 (format level 1)") ||
		!strings.Contains(forced.Stderr, "1.0.0 (format level 2)") {
		t.Fatalf("force-primary of the old member: exit %d\n%s%s", forced.ExitCode, forced.Stdout, forced.Stderr)
	}
	if st, err := local(A); err != nil || st.Role == mirror.RolePrimary.String() {
		t.Fatalf("A after the refused force-primary: %s %v", st.Role, err)
	}
	B.Restart()
	mustUpgrade(t, "apply", planPath, "--yes", "--wait", "90s")
	f.waitVersions(t, newSoftware, newLevel)
	f.waitAllCurrent(t, "B")
	for _, n := range []*testcluster.Node{A, B} {
		f.c.WaitFor(t, "the database change reaches "+n.Name, 30*time.Second, func() (bool, error) {
			r := n.CLI(t, "kv", "get", "--db", "APP", "^Changed")
			return strings.TrimSpace(r.Stdout) == "by B", fmt.Errorf("^Changed on %s: %q %s", n.Name, r.Stdout, r.Stderr)
		})
	}
}

// TestNewBuildMemberJoinsBeforeTheUpgrade: a member running the new build (a new host) joins a mirror of the old build
// as a DR async and receives the journal; the upgrade plan leaves it alone (it already runs the target), upgrades the
// others, and the mirror finalizes with its data everywhere.
func TestNewBuildMemberJoinsBeforeTheUpgrade(t *testing.T) {
	f := newFixture(t, member{"A", ""}, member{"B", "failover"})
	f.c.Add("D")
	f.c.AddAgent("D").UseBinary(f.new)
	f.c.Start("D")
	A, D := f.node("A"), f.node("D")
	mustNode(t, D, "mirror", "join", "MIR", "--primary", A.Addr, "--as", "dr")
	f.c.WaitFor(t, "create APP on D", 30*time.Second, func() (bool, error) {
		r := D.CLI(t, "db", "create", "APP", "--mirror", "MIR")
		return r.ExitCode == 0, fmt.Errorf("%s", r.Stderr)
	})
	f.members = append(f.members, member{"D", "dr"})
	mustNode(t, A, "kv", "set", "--db", "APP", "^Before", "old primary")
	f.waitAllCurrent(t, "A")
	if st, err := status(t, D); err != nil || st.Version.Software != newSoftware {
		t.Fatalf("D runs %+v (%v), want %s", st.Version, err, newSoftware)
	}

	planPath, r := f.plan(t)
	if strings.Contains(r.stdout, "upgrade D") || !strings.Contains(r.stdout, "upgrade A") || !strings.Contains(r.stdout, "upgrade B") {
		t.Fatalf("the plan should upgrade A and B and leave D, which runs the target already:\n%s", r.stdout)
	}
	mustUpgrade(t, "apply", planPath, "--yes", "--wait", "90s")
	f.waitVersions(t, newSoftware, newLevel)
	mustUpgrade(t, "finalize", "--mirror", f.node("B").Addr, "--yes")
	mustNode(t, f.node("B"), "kv", "set", "--db", "APP", "^After", "new primary")
	for _, m := range f.members {
		n := f.node(m.name)
		f.c.WaitFor(t, "^Before and ^After on "+m.name, 60*time.Second, func() (bool, error) {
			before := n.CLI(t, "kv", "get", "--db", "APP", "^Before")
			after := n.CLI(t, "kv", "get", "--db", "APP", "^After")
			ok := strings.TrimSpace(before.Stdout) == "old primary" && strings.TrimSpace(after.Stdout) == "new primary"
			return ok, fmt.Errorf("%q %q %s%s", before.Stdout, after.Stdout, before.Stderr, after.Stderr)
		})
	}
}
