package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
	"github.com/mirrorkit/mirrorkit/internal/testpki"
)

// failoverQoS is the QoS timeout of the automatic failover tests: the value MIRRORING.md recommends on a LAN, short enough
// for each fault to play out in seconds, long enough that a loaded test machine does not fake a fault.
const failoverQoS = 2 * time.Second

// arbitrated is a pair of failover members A (primary) and B with an arbiter, each member's links to the other and to the
// arbiter going through fault proxies.
type arbitrated struct {
	c   *testcluster.Cluster
	arb *testcluster.Arbiter
}

func newArbitrated(t *testing.T, extra ...member) *arbitrated {
	t.Helper()
	return newArbitratedWith(t, nil, extra...)
}

// newArbitratedWith is newArbitrated with extra `member run` arguments for A.
func newArbitratedWith(t *testing.T, aArgs []string, extra ...member) *arbitrated {
	t.Helper()
	return newArbitratedOpts(t, aArgs, false, extra...)
}

// newArbitratedOpts is newArbitratedWith where A and B may each run under a host agent.
func newArbitratedOpts(t *testing.T, aArgs []string, agents bool, extra ...member) *arbitrated {
	t.Helper()
	c := testcluster.New(t)
	arb := c.StartArbiter()
	c.Add("A", aArgs...)
	c.Add("B")
	if agents {
		c.AddAgent("A")
		c.AddAgent("B")
	}
	c.Link("A", "B")
	c.Link("B", "A")
	c.LinkArbiter("A")
	c.LinkArbiter("B")
	for _, m := range extra {
		c.Add(m.name)
	}
	members := append([]member{{"A", ""}, {"B", "failover"}}, extra...)
	newMirror(t, c, members, "--qos", failoverQoS.String(), "--arbiter", arb.Addr)
	f := &arbitrated{c: c, arb: arb}
	f.waitMode(t, "A", mirror.ModeArbiter.String())
	f.waitMode(t, "B", mirror.ModeArbiter.String())
	return f
}

// waitLocal waits until cond holds for the member's own view of the mirror.
func (f *arbitrated) waitLocal(t *testing.T, name, desc string, cond func(mirror.Status) bool) mirror.Status {
	t.Helper()
	var got mirror.Status
	f.c.WaitFor(t, name+": "+desc, 60*time.Second, func() (bool, error) {
		st, err := local(f.c.Node(name))
		if err != nil {
			return false, err
		}
		got = st
		b, _ := json.Marshal(st)
		return cond(st), fmt.Errorf("status: %s", b)
	})
	return got
}

func (f *arbitrated) waitMode(t *testing.T, name, mode string) {
	t.Helper()
	f.waitLocal(t, name, "failover mode "+mode, func(st mirror.Status) bool {
		return st.FailoverMode == mode && (st.Role != "backup" || row(st, name).Status == mirror.StatusBackup)
	})
}

// waitPrimary waits until name is the primary of an epoch after `after` in its own view, serving.
func (f *arbitrated) waitPrimary(t *testing.T, name string, after uint64) mirror.Status {
	t.Helper()
	return f.waitLocal(t, name, fmt.Sprintf("primary in an epoch after %d", after), func(st mirror.Status) bool {
		return st.Role == "primary" && st.Epoch > after && row(st, name).Status == mirror.StatusPrimary
	})
}

// waitOwnStatus waits until the member shows itself with status want.
func (f *arbitrated) waitOwnStatus(t *testing.T, name, want string) mirror.Status {
	t.Helper()
	return f.waitLocal(t, name, "own status "+want, func(st mirror.Status) bool { return row(st, name).Status == want })
}

// startSetLoad writes distinct keys with Set only (idempotent, so the mirror-aware client re-sends across any failover)
// through a client that gives up on a hung member after twice the QoS timeout.
func startSetLoad(t *testing.T, addrs []string, writers int) *load {
	t.Helper()
	return startLoadWith(t, addrs, writers, loadOptions{setsOnly: true, prefix: "F",
		client: client.Options{Conns: 2, RetryTimeout: 60 * time.Second, DialTimeout: failoverQoS, AttemptTimeout: 2 * failoverQoS}})
}

// unplannedFailover runs a fault on the primary A under load and checks that B takes over in a later epoch through the
// arbiter, that A rejoins as B's backup once healed, and that no acknowledged write is lost.
func unplannedFailover(t *testing.T, fault, heal func(f *arbitrated)) {
	unplannedFailoverOn(t, newArbitrated(t), fault, heal)
}

func unplannedFailoverOn(t *testing.T, f *arbitrated, fault, heal func(f *arbitrated)) {
	defer dumpLogs(t, f.c)
	l := startSetLoad(t, []string{f.c.Node("A").Addr, f.c.Node("B").Addr}, 4)
	l.waitAcks(t, f.c, 200)
	fault(f)
	st := f.waitPrimary(t, "B", 1)
	if st.Failovers["arbiter"] != 1 {
		t.Fatalf("B's failover counters %v, want one by the arbiter", st.Failovers)
	}
	if m := metricsOf(t, f.c.Node("B")); !strings.Contains(m, `mirrorkit_mirror_failovers_total{how="arbiter",mirror="MIR"} 1`) ||
		!strings.Contains(m, `mirrorkit_mirror_primary{mirror="MIR"} 1`) {
		t.Fatalf("B's metrics after the takeover lack the failover:\n%s", grepLines(m, "mirrorkit_mirror_"))
	}
	l.waitAcks(t, f.c, 200) // writes go on at B
	heal(f)
	f.waitOwnStatus(t, "A", mirror.StatusBackup)
	waitTransfer(t, f.c, "B", "A", mirror.TransferActive)
	acked := l.finish(t)
	waitConverged(t, f.c)
	checkAcked(t, f.c.Node("A"), acked)
	checkAcked(t, f.c.Node("B"), acked)
}

func TestPrimaryKilledBackupTakesOver(t *testing.T) {
	unplannedFailover(t, func(f *arbitrated) { f.c.Node("A").Kill() }, func(f *arbitrated) { f.c.Node("A").Restart() })
}

// TestPrimaryHostLostBackupTakesOver: the primary's host is lost (member and agent): the arbiter lets the backup take over.
func TestPrimaryHostLostBackupTakesOver(t *testing.T) {
	unplannedFailoverOn(t, newArbitratedOpts(t, nil, true), func(f *arbitrated) { f.c.Node("A").KillHost() },
		func(f *arbitrated) { f.c.Node("A").RestartHost() })
}

// TestPrimaryLosesOnlyTheArbiter: the primary switches to Agent Controlled mode and goes on; so does the backup.
func TestPrimaryLosesOnlyTheArbiter(t *testing.T) {
	f := newArbitrated(t)
	defer dumpLogs(t, f.c)
	l := startSetLoad(t, []string{f.c.Node("A").Addr, f.c.Node("B").Addr}, 4)
	l.waitAcks(t, f.c, 100)
	f.c.Node("A").ArbiterLink().Cut()
	f.waitMode(t, "A", mirror.ModeAgent.String())
	f.waitMode(t, "B", mirror.ModeAgent.String())
	l.waitAcks(t, f.c, 200)
	st, _ := local(f.c.Node("A"))
	if row(st, "A").Status != mirror.StatusPrimary || st.Epoch != 1 || st.TroubleEpisodes != 0 {
		t.Fatalf("A without the arbiter: %s, epoch %d, %d trouble episodes", row(st, "A").Status, st.Epoch, st.TroubleEpisodes)
	}
	f.c.Node("A").ArbiterLink().Heal()
	f.waitMode(t, "A", mirror.ModeArbiter.String())
	f.waitMode(t, "B", mirror.ModeArbiter.String())
	acked := l.finish(t)
	waitConverged(t, f.c)
	checkAcked(t, f.c.Node("B"), acked)
}

func TestPrimaryHungBackupTakesOver(t *testing.T) {
	unplannedFailover(t, func(f *arbitrated) { f.c.Node("A").Pause() }, func(f *arbitrated) { f.c.Node("A").Resume() })
}

func TestPrimaryIsolatedBackupTakesOver(t *testing.T) {
	var trouble mirror.Status
	unplannedFailover(t, func(f *arbitrated) {
		f.c.Node("B").Link("A").Cut()
		f.c.Node("A").ArbiterLink().Cut()
		// Cut off from both, A cannot know whether B took over: it stays In Trouble and acknowledges nothing.
		trouble = f.waitOwnStatus(t, "A", mirror.StatusInTrouble)
		if e := rawSet(t, f.c.Node("A").Addr, "APP", `^Isolated(1)`); e == nil || e.Code != wire.CodeInTrouble {
			t.Fatalf("a write on the isolated primary: %v, want In Trouble", e)
		}
		// Reads too: outside its lease the old primary could serve a value the new primary has since changed.
		if e := rawGet(t, f.c.Node("A").Addr, "APP", `^F(0,0)`); e == nil || e.Code != wire.CodeInTrouble {
			t.Fatalf("a read on the isolated primary: %v, want In Trouble", e)
		}
	}, func(f *arbitrated) {
		st, err := local(f.c.Node("A"))
		if err != nil || row(st, "A").Status != mirror.StatusInTrouble {
			t.Fatalf("isolated A before the links heal: %s (%v)", row(st, "A").Status, err)
		}
		f.c.Node("B").Link("A").Heal()
		f.c.Node("A").ArbiterLink().Heal()
	})
	if !strings.Contains(trouble.Trouble, "lost") {
		t.Fatalf("trouble reason %q", trouble.Trouble)
	}
}

// TestFailoverMembersCutFromEachOther: both still see the arbiter, so the primary is In Trouble only until the arbiter
// confirms the backup is no longer active, then continues; nobody takes over and the backup reconnects when healed.
func TestFailoverMembersCutFromEachOther(t *testing.T) {
	f := newArbitrated(t)
	defer dumpLogs(t, f.c)
	l := startSetLoad(t, []string{f.c.Node("A").Addr}, 4)
	l.waitAcks(t, f.c, 100)
	f.c.Node("B").Link("A").Cut()
	f.waitLocal(t, "B", "backup no longer Active and not taking over", func(st mirror.Status) bool {
		return st.Role == "backup" && strings.Contains(st.Takeover, "still reports to the arbiter")
	})
	l.waitAcks(t, f.c, 200) // A continues without its backup
	st := f.waitLocal(t, "A", "continuing without the backup", func(st mirror.Status) bool {
		return row(st, "A").Status == mirror.StatusPrimary && st.TroubleEpisodes == 1
	})
	if st.Epoch != 1 {
		t.Fatalf("epoch %d after the members lost each other, want 1 (no takeover)", st.Epoch)
	}
	f.c.Node("B").Link("A").Heal()
	waitTransfer(t, f.c, "A", "B", mirror.TransferActive)
	f.waitMode(t, "A", mirror.ModeArbiter.String())
	acked := l.finish(t)
	waitConverged(t, f.c)
	checkAcked(t, f.c.Node("B"), acked)
}

// TestBackupDownPrimaryContinues: with the arbiter, a primary that loses its backup continues once the arbiter confirms,
// in Agent Controlled mode; the backup returns Active.
func TestBackupDownPrimaryContinues(t *testing.T) {
	f := newArbitrated(t)
	defer dumpLogs(t, f.c)
	l := startSetLoad(t, []string{f.c.Node("A").Addr}, 4)
	l.waitAcks(t, f.c, 100)
	f.c.Node("B").Kill()
	l.waitAcks(t, f.c, 200)
	f.waitLocal(t, "A", "Agent Controlled without the backup", func(st mirror.Status) bool {
		return st.FailoverMode == mirror.ModeAgent.String() && st.Epoch == 1 && row(st, "A").Status == mirror.StatusPrimary
	})
	f.c.Node("B").Restart()
	waitTransfer(t, f.c, "A", "B", mirror.TransferActive)
	f.waitMode(t, "A", mirror.ModeArbiter.String())
	acked := l.finish(t)
	waitConverged(t, f.c)
	checkAcked(t, f.c.Node("B"), acked)
}

// TestArbiterLostAndRestarted: losing the arbiter switches both members to Agent Controlled mode and changes nothing else;
// a restarted arbiter brings Arbiter Controlled mode back and remembers its record.
func TestArbiterLostAndRestarted(t *testing.T) {
	f := newArbitrated(t)
	defer dumpLogs(t, f.c)
	l := startSetLoad(t, []string{f.c.Node("A").Addr, f.c.Node("B").Addr}, 4)
	l.waitAcks(t, f.c, 100)
	f.arb.Kill()
	f.waitLocal(t, "A", "Agent Controlled, arbiter not connected", func(st mirror.Status) bool {
		return st.FailoverMode == mirror.ModeAgent.String() && st.ArbiterConnection == mirror.ArbiterNone
	})
	f.waitMode(t, "B", mirror.ModeAgent.String())
	l.waitAcks(t, f.c, 200)
	f.arb.Restart()
	f.waitMode(t, "A", mirror.ModeArbiter.String())
	f.waitMode(t, "B", mirror.ModeArbiter.String())
	st, _ := local(f.c.Node("A"))
	if st.ArbiterConnection != mirror.ArbiterBoth || st.Epoch != 1 {
		t.Fatalf("after the arbiter restarted: connection %q, epoch %d", st.ArbiterConnection, st.Epoch)
	}
	// The restarted arbiter still decides: the primary killed now is replaced.
	f.c.Node("A").Kill()
	f.waitPrimary(t, "B", 1)
	l.waitAcks(t, f.c, 100)
	acked := l.finish(t)
	f.c.Node("A").Restart()
	f.waitOwnStatus(t, "A", mirror.StatusBackup)
	waitConverged(t, f.c)
	checkAcked(t, f.c.Node("A"), acked)
}

// TestBackupAndArbiterLostTogether: the primary cannot tell whether the backup took over, so it is In Trouble for as long
// as both are gone, and recovers when the backup returns.
func TestBackupAndArbiterLostTogether(t *testing.T) {
	f := newArbitrated(t)
	defer dumpLogs(t, f.c)
	f.arb.Kill()
	f.c.Node("B").Kill()
	f.waitOwnStatus(t, "A", mirror.StatusInTrouble)
	// Still In Trouble well past 2 × QoS: no release without the arbiter in Arbiter Controlled mode.
	deadline := time.Now().Add(4 * failoverQoS)
	for time.Now().Before(deadline) {
		st, err := local(f.c.Node("A"))
		if err != nil {
			t.Fatal(err)
		}
		if got := row(st, "A").Status; got != mirror.StatusInTrouble {
			t.Fatalf("A is %q with its backup and the arbiter gone, want %q", got, mirror.StatusInTrouble)
		}
		if e := rawSet(t, f.c.Node("A").Addr, "APP", `^T(1)`); e == nil || e.Code != wire.CodeInTrouble {
			t.Fatalf("write while In Trouble: %v", e)
		}
		time.Sleep(failoverQoS / 4)
	}
	resp, err := httpGetStatus(f.c.Node("A").AdminAddr + "/mirror/health")
	if err != nil || resp != 503 {
		t.Fatalf("health of a primary In Trouble: %d %v, want 503", resp, err)
	}
	f.c.Node("B").Restart()
	f.waitOwnStatus(t, "A", mirror.StatusPrimary)
	if e := rawSet(t, f.c.Node("A").Addr, "APP", `^T(2)`); e != nil {
		t.Fatalf("write after the backup returned: %v", e)
	}
	f.arb.Restart()
	f.waitMode(t, "A", mirror.ModeArbiter.String())
}

// TestDivergentTailRolledBack: a write the isolated primary journaled but could not acknowledge is rolled back when it
// rejoins after the takeover, and the rollback file lists exactly it.
func TestDivergentTailRolledBack(t *testing.T) {
	f := newArbitrated(t)
	defer dumpLogs(t, f.c)
	a := f.c.Node("A")
	divergeA(t, f)
	f.waitOwnStatus(t, "A", mirror.StatusBackup)
	waitConverged(t, f.c)
	files, _ := filepath.Glob(filepath.Join(a.DataDir, "mirrors", "MIR", "rollback", "*.jsonl"))
	if len(files) != 1 {
		t.Fatalf("rollback files %v, want one", files)
	}
	recs := readRollback(t, files[0])
	if len(recs) != 1 || recs[0].Key != `^Lost(1)` || recs[0].Database != "APP" || recs[0].RolledBack == nil || *recs[0].RolledBack != "unacknowledged" || recs[0].Restored != nil {
		t.Fatalf("rollback file %s: %+v, want exactly the unacknowledged set of ^Lost(1)", files[0], recs)
	}
	cl := f.c.Node("B").Client(t, 1)
	if _, ok, err := cl.Get(context.Background(), "APP", `^Lost(1)`); err != nil || ok {
		t.Fatalf("^Lost(1) on the new primary: %v %v", ok, err)
	}
	for _, ref := range []string{`^Kept(1)`, `^After(1)`} {
		if _, ok, err := cl.Get(context.Background(), "APP", ref); err != nil || !ok {
			t.Fatalf("%s on the new primary: %v %v", ref, ok, err)
		}
	}
}

// TestDivergentTailOverLimitRefused: past the rollback limit the former primary rolls nothing back and says it must be
// rebuilt.
func TestDivergentTailOverLimitRefused(t *testing.T) {
	f := newArbitratedWith(t, []string{"--rollback-limit", "1"})
	defer dumpLogs(t, f.c)
	divergeA(t, f)
	st := f.waitOwnStatus(t, "A", mirror.StatusError)
	if e := row(st, "A").Error; !strings.Contains(e, "rollback limit of 1 bytes") || !strings.Contains(e, "rebuild this member") {
		t.Fatalf("A's error %q", e)
	}
	files, _ := filepath.Glob(filepath.Join(f.c.Node("A").DataDir, "mirrors", "MIR", "rollback", "*.jsonl"))
	if len(files) != 0 {
		t.Fatalf("rollback files %v written although the rollback was refused", files)
	}
}

// divergeA makes A, the primary, journal a write (^Lost(1)) it cannot acknowledge because it has just been cut off from B
// and the arbiter, lets B take over and write, then heals the links; A then holds a divergent tail.
func divergeA(t *testing.T, f *arbitrated) {
	t.Helper()
	a := f.c.Node("A")
	if e := rawSet(t, a.Addr, "APP", `^Kept(1)`); e != nil {
		t.Fatal(e)
	}
	// Silently dropped traffic: A notices only after the QoS timeout, so the write reaches its journal first; it is never
	// acknowledged.
	f.c.Node("B").Link("A").BlackHole()
	a.ArbiterLink().BlackHole()
	done := make(chan *wire.Error, 1)
	go func() { done <- rawOpTimeout(a.Addr, "APP", `^Lost(1)`, "unacknowledged", 60*time.Second) }()
	f.waitPrimary(t, "B", 1)
	if e := rawSet(t, f.c.Node("B").Addr, "APP", `^After(1)`); e != nil {
		t.Fatal(e)
	}
	f.c.Node("B").Link("A").Heal()
	a.ArbiterLink().Heal()
	if e := <-done; e == nil || e.Code != wire.CodeOutcomeUnknown {
		t.Fatalf("the write on the deposed primary: %v, want an unknown outcome", e)
	}
}

func readRollback(t *testing.T, path string) []mirror.RollbackRecord {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []mirror.RollbackRecord
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var r mirror.RollbackRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, r)
	}
	return out
}

// rawOpTimeout sends one Set over the bare protocol (no redirect is followed) and returns the refusal (nil when
// acknowledged).
func rawOpTimeout(addr, db, ref, value string, timeout time.Duration) *wire.Error {
	fail := func(err error) *wire.Error { return &wire.Error{Code: wire.CodeInternal, Message: err.Error()} }
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	nc, err := wire.Dial(ctx, addr, nil)
	if err != nil {
		return fail(err)
	}
	conn := wire.NewConn(nc, wire.DefaultMaxFrame)
	defer conn.Close()
	if _, err := wire.ClientHandshake(ctx, conn, wire.Hello{Purpose: wire.PurposeClient, Name: "raw"}); err != nil {
		return fail(err)
	}
	key, err := globals.Encode(globals.MustParse(ref))
	if err != nil {
		return fail(err)
	}
	req := wire.Request{DB: db, Ops: []wire.Op{{Kind: wire.OpSet, Key: key, Value: []byte(value)}}}
	if err := conn.WriteFrame(wire.Frame{Kind: wire.KindRequest, ReqID: 1, Payload: wire.EncodeRequest(nil, &req)}); err != nil {
		return fail(err)
	}
	conn.SetDeadline(time.Now().Add(timeout))
	f, err := conn.ReadFrame()
	if err != nil {
		return fail(err)
	}
	resp, err := wire.DecodeResponse(f.Payload)
	if err != nil {
		return fail(err)
	}
	return resp.Err
}

// httpGetStatus GETs http://addrPath and returns the HTTP status.
func httpGetStatus(addrPath string) (int, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + addrPath)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestForcePrimary: without an arbiter or agents nothing takes over by itself; an operator forces the backup, which says it
// was the Active backup and where its journal ended; the old primary, restarted, finds the backup primary and rejoins.
func TestForcePrimary(t *testing.T) {
	c := testcluster.New(t)
	c.Add("A")
	c.Add("B")
	defer dumpLogs(t, c)
	newMirror(t, c, []member{{"A", ""}, {"B", "failover"}}, "--qos", failoverQoS.String())
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	f := &arbitrated{c: c}
	if r := c.Node("B").CLI(t, "mirror", "force-primary", "MIR"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "receives the journal from the primary A") {
		t.Fatalf("force-primary while A runs: exit %d, %s", r.ExitCode, r.Stderr)
	}
	if e := rawSet(t, c.Node("A").Addr, "APP", `^Before(1)`); e != nil {
		t.Fatal(e)
	}
	c.Node("A").Kill()
	st := f.waitLocal(t, "B", "no takeover without an arbiter or agent", func(st mirror.Status) bool {
		return st.Role == "backup" && strings.Contains(st.Takeover, "no agent")
	})
	if st.Epoch != 1 {
		t.Fatalf("epoch %d", st.Epoch)
	}
	out := mustNode(t, c.Node("B"), "mirror", "force-primary", "MIR")
	if !strings.Contains(out, "is primary in epoch 2") || !strings.Contains(out, "was the Active backup") || !strings.Contains(out, "journal ended at 1:") {
		t.Fatalf("force-primary said:\n%s", out)
	}
	f.waitPrimary(t, "B", 1)
	if e := rawSet(t, c.Node("B").Addr, "APP", `^After(1)`); e != nil {
		t.Fatal(e)
	}
	c.Node("A").Restart()
	f.waitOwnStatus(t, "A", mirror.StatusBackup)
	st, _ = local(c.Node("B"))
	if st.Failovers["forced"] != 1 {
		t.Fatalf("B's failover counters %v", st.Failovers)
	}
	waitConverged(t, c)
}

// TestNoFailoverBlocksTakeover: with no-failover set on the primary, the backup does not take over when it dies, and says
// why; an arbiter added later with `mirror set` brings Arbiter Controlled mode.
func TestNoFailoverBlocksTakeover(t *testing.T) {
	c := testcluster.New(t)
	arb := c.StartArbiter()
	c.Add("A")
	c.Add("B")
	defer dumpLogs(t, c)
	newMirror(t, c, []member{{"A", ""}, {"B", "failover"}}, "--qos", failoverQoS.String())
	f := &arbitrated{c: c, arb: arb}
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	if r := c.Node("A").CLI(t, "mirror", "set", "MIR"); r.ExitCode != 2 {
		t.Fatalf("mirror set without a setting: exit %d", r.ExitCode)
	}
	if r := c.Node("A").CLI(t, "mirror", "set", "MIR", "--qos", "100ms"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "below the minimum") {
		t.Fatalf("QoS below the minimum: exit %d %s", r.ExitCode, r.Stderr)
	}
	mustNode(t, c.Node("A"), "mirror", "set", "MIR", "--arbiter", arb.Addr)
	f.waitMode(t, "A", mirror.ModeArbiter.String())
	f.waitMode(t, "B", mirror.ModeArbiter.String())
	mustNode(t, c.Node("A"), "mirror", "no-failover", "MIR")
	c.Node("A").Kill()
	f.waitLocal(t, "B", "takeover blocked by no-failover", func(st mirror.Status) bool {
		return st.Role == "backup" && strings.Contains(st.Takeover, "no-failover is set on the primary A")
	})
	c.Node("A").Restart()
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	mustNode(t, c.Node("A"), "mirror", "no-failover", "MIR", "--clear")
	mustNode(t, c.Node("A"), "mirror", "set", "MIR", "--arbiter", "")
	f.waitMode(t, "A", mirror.ModeAgent.String())
	if st, _ := local(c.Node("A")); st.ArbiterAddr != "" || st.Arbiter != "no arbiter" {
		t.Fatalf("after removing the arbiter: %q %q", st.ArbiterAddr, st.Arbiter)
	}
}

// metricsOf returns the member's Prometheus metrics text.
func metricsOf(t *testing.T, n *testcluster.Node) string {
	t.Helper()
	resp, err := http.Get("http://" + n.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// grepLines keeps the lines of text that contain substr.
func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestTLSMirrorFailsOverThroughTLSArbiter: in a mirror that requires TLS, the members reach the arbiter with their
// certificates, and a killed primary is replaced as in a plain mirror.
func TestTLSMirrorFailsOverThroughTLSArbiter(t *testing.T) {
	pki := testpki.New(t)
	c := testcluster.New(t)
	arb := c.StartArbiterTLS(pki.Issue(t, "arbiter"))
	A := c.AddTLS("A", pki.Issue(t, "A"))
	B := c.AddTLS("B", pki.Issue(t, "B"))
	defer dumpLogs(t, c)
	c.Start()
	f := &arbitrated{c: c, arb: arb}
	mustNode(t, A, "mirror", "create", "MIR", "--qos", failoverQoS.String(), "--require-tls", "--arbiter", arb.Addr)
	dn, err := wire.CertDN(B.TLS.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if r := B.CLI(t, "mirror", "join", "MIR", "--primary", A.Addr, "--as", "failover"); r.ExitCode != 1 || !strings.Contains(r.Stderr, "pending") {
		t.Fatalf("join before authorization: exit %d %s", r.ExitCode, r.Stderr)
	}
	mustNode(t, A, "mirror", "authorize", "MIR", "--dn", dn)
	mustNode(t, B, "mirror", "join", "MIR", "--primary", A.Addr, "--as", "failover")
	f.waitMode(t, "A", mirror.ModeArbiter.String())
	f.waitMode(t, "B", mirror.ModeArbiter.String())
	A.Kill()
	f.waitPrimary(t, "B", 1)
	A.Restart()
	f.waitOwnStatus(t, "A", mirror.StatusBackup)
}

// TestResumedPrimaryServesNoStaleRead: a primary paused past the QoS timeout is replaced; reads sent to it after the new
// primary acknowledged a newer value — queued while it was paused, served the moment it resumes — must never return the
// old value: its lease counts from what it sent, not from the frames it finds waiting when it wakes up.
func TestResumedPrimaryServesNoStaleRead(t *testing.T) {
	f := newArbitrated(t)
	defer dumpLogs(t, f.c)
	a, b := f.c.Node("A"), f.c.Node("B")
	if e := rawOpTimeout(a.Addr, "APP", `^Stale(1)`, "old", 30*time.Second); e != nil {
		t.Fatal(e)
	}
	a.Pause()
	f.waitPrimary(t, "B", 1)
	if e := rawOpTimeout(b.Addr, "APP", `^Stale(1)`, "new", 30*time.Second); e != nil {
		t.Fatal(e)
	}
	// Every read below starts after "new" was acknowledged.
	const readers = 16
	results := make(chan string, readers)
	var dialled atomic.Int32
	for range readers {
		go func() { results <- rawGetValue(a.Addr, "APP", `^Stale(1)`, 60*time.Second, func() { dialled.Add(1) }) }()
	}
	// Connected (the kernel accepts for the paused process); their handshakes and reads wait for it to wake up.
	f.c.WaitFor(t, "reads connected to the paused primary", 10*time.Second, func() (bool, error) {
		return dialled.Load() == readers, nil
	})
	a.Resume()
	// And reads sent while it wakes up, until it has stepped down.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stale atomic.Int32
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if rawGetValue(a.Addr, "APP", `^Stale(1)`, 10*time.Second, func() {}) == "old" {
					stale.Add(1)
				}
			}
		}()
	}
	for range readers {
		if got := <-results; got == "old" {
			stale.Add(1)
		}
	}
	f.waitOwnStatus(t, "A", mirror.StatusBackup)
	close(stop)
	wg.Wait()
	if n := stale.Load(); n > 0 {
		t.Fatalf("the resumed, deposed primary served %d reads of the value the new primary had already replaced", n)
	}
}

// rawGetValue reads one node over the bare protocol (no redirect is followed) and returns its value, or a description of
// the refusal.
func rawGetValue(addr, db, ref string, timeout time.Duration, connected func()) string {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	nc, err := wire.Dial(ctx, addr, nil)
	if err != nil {
		return "error: " + err.Error()
	}
	connected()
	conn := wire.NewConn(nc, wire.DefaultMaxFrame)
	defer conn.Close()
	if _, err := wire.ClientHandshake(ctx, conn, wire.Hello{Purpose: wire.PurposeClient, Name: "raw"}); err != nil {
		return "error: " + err.Error()
	}
	key, err := globals.Encode(globals.MustParse(ref))
	if err != nil {
		return "error: " + err.Error()
	}
	req := wire.Request{DB: db, Ops: []wire.Op{{Kind: wire.OpGet, Key: key}}}
	if err := conn.WriteFrame(wire.Frame{Kind: wire.KindRequest, ReqID: 1, Payload: wire.EncodeRequest(nil, &req)}); err != nil {
		return "error: " + err.Error()
	}
	conn.SetDeadline(time.Now().Add(timeout))
	fr, err := conn.ReadFrame()
	if err != nil {
		return "error: " + err.Error()
	}
	resp, err := wire.DecodeResponse(fr.Payload)
	switch {
	case err != nil:
		return "error: " + err.Error()
	case resp.Err != nil:
		return "refused: " + resp.Err.Error()
	case len(resp.Results) != 1:
		return "error: no result"
	}
	return string(resp.Results[0].Value)
}
