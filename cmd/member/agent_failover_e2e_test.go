package main_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
)

// newAgentMirror builds a mirror without an arbiter whose members each run under a host agent: failover is Agent
// Controlled.
func newAgentMirror(t *testing.T, members []member) *arbitrated {
	t.Helper()
	c := testcluster.New(t)
	for _, m := range members {
		c.Add(m.name)
		c.AddAgent(m.name)
	}
	newMirror(t, c, members, "--qos", failoverQoS.String())
	waitTransfer(t, c, members[0].name, members[1].name, mirror.TransferActive)
	return &arbitrated{c: c}
}

// TestAgentControlledTakeoverOfHungPrimary: without an arbiter, a backup that loses a hung primary asks its agent, which
// forces it down; the backup takes over with the rest of its journal, and the old primary, started again, rejoins.
func TestAgentControlledTakeoverOfHungPrimary(t *testing.T) {
	f := newAgentMirror(t, []member{{"A", ""}, {"B", "failover"}})
	defer dumpLogs(t, f.c)
	l := startSetLoad(t, []string{f.c.Node("A").Addr, f.c.Node("B").Addr}, 4)
	l.waitAcks(t, f.c, 200)
	f.c.Node("A").Pause()
	st := f.waitPrimary(t, "B", 1)
	if st.Failovers["agent"] != 1 {
		t.Fatalf("B's failover counters %v, want one by agent", st.Failovers)
	}
	l.waitAcks(t, f.c, 200)
	ms, err := f.c.Node("A").Agent().Client().Member(context.Background(), "A")
	if err != nil || ms.Running || !ms.StoppedByAgent {
		t.Fatalf("A after the takeover: %+v %v, want forced down by its agent", ms, err)
	}
	f.c.Node("A").Restart()
	f.waitOwnStatus(t, "A", mirror.StatusBackup)
	acked := l.finish(t)
	waitConverged(t, f.c)
	checkAcked(t, f.c.Node("A"), acked)
	checkAcked(t, f.c.Node("B"), acked)
}

// TestNonActiveBackupFetchesJournalFromAgent: commits the primary acknowledged while its backup was down exist only in the
// primary's journal; when the primary is down too and the backup returns, it takes them from the primary's agent before it
// takes over, so none is lost.
func TestNonActiveBackupFetchesJournalFromAgent(t *testing.T) {
	f := newAgentMirror(t, []member{{"A", ""}, {"B", "failover"}})
	defer dumpLogs(t, f.c)
	f.c.Node("B").StopByAgent()
	// A continues without B (B's agent confirms it down), acknowledging commits B never receives.
	l := startSetLoad(t, []string{f.c.Node("A").Addr}, 4)
	l.waitAcks(t, f.c, 300)
	acked := l.finish(t)
	f.c.Node("A").StopByAgent()
	f.c.Node("B").Restart()
	st := f.waitPrimary(t, "B", 1)
	if st.Failovers["agent"] != 1 {
		t.Fatalf("B's failover counters %v", st.Failovers)
	}
	checkAcked(t, f.c.Node("B"), acked)
	f.c.Node("A").Restart()
	f.waitOwnStatus(t, "A", mirror.StatusBackup)
	waitConverged(t, f.c)
}

// TestHostLostWithoutArbiterNothingTakesOver: with the primary's host gone (member and agent), nothing can confirm it is
// down: the backup does not take over and says why. The primary's host returns and the mirror carries on.
func TestHostLostWithoutArbiterNothingTakesOver(t *testing.T) {
	f := newAgentMirror(t, []member{{"A", ""}, {"B", "failover"}})
	defer dumpLogs(t, f.c)
	f.c.Node("A").KillHost()
	st := f.waitLocal(t, "B", "not taking over without the primary's agent", func(st mirror.Status) bool {
		return st.Role == "backup" && strings.Contains(st.Takeover, "cannot reach the agent of the primary A")
	})
	// However long the host stays away.
	deadline := time.Now().Add(3 * failoverQoS)
	for ; time.Now().Before(deadline); time.Sleep(failoverQoS / 4) {
		st, err := local(f.c.Node("B"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Role != "backup" || st.Epoch != 1 {
			t.Fatalf("B took over (role %s, epoch %d) with the primary's host unreachable", st.Role, st.Epoch)
		}
	}
	if st.Epoch != 1 {
		t.Fatalf("epoch %d", st.Epoch)
	}
}

// TestAgentControlledTroubleReleasedAfterTwiceQoS: a primary whose Active backup's host is lost is In Trouble, then
// continues alone after 2 × QoS (the backup could only take over by forcing it down through its agent).
func TestAgentControlledTroubleReleasedAfterTwiceQoS(t *testing.T) {
	f := newAgentMirror(t, []member{{"A", ""}, {"B", "failover"}})
	defer dumpLogs(t, f.c)
	l := startSetLoad(t, []string{f.c.Node("A").Addr}, 2)
	l.waitAcks(t, f.c, 100)
	f.c.Node("B").KillHost()
	f.waitOwnStatus(t, "A", mirror.StatusInTrouble)
	l.waitAcks(t, f.c, 100)
	st, err := local(f.c.Node("A"))
	if err != nil || row(st, "A").Status != mirror.StatusPrimary || st.TroubleEpisodes != 1 || st.Epoch != 1 {
		t.Fatalf("A after the release: %s, %d trouble episodes, epoch %d (%v)", row(st, "A").Status, st.TroubleEpisodes, st.Epoch, err)
	}
	acked := l.finish(t)
	f.c.Node("B").RestartHost()
	waitTransfer(t, f.c, "A", "B", mirror.TransferActive)
	waitConverged(t, f.c)
	checkAcked(t, f.c.Node("B"), acked)
}

// TestNoFailoverBackupLostWithoutTrouble: under no-failover, which the backup confirmed, the backup cannot take over, so a
// primary that loses it (here with its host, so no agent can say it is down) goes on committing without being In Trouble.
func TestNoFailoverBackupLostWithoutTrouble(t *testing.T) {
	f := newAgentMirror(t, []member{{"A", ""}, {"B", "failover"}})
	defer dumpLogs(t, f.c)
	l := startSetLoad(t, []string{f.c.Node("A").Addr}, 2)
	l.waitAcks(t, f.c, 100)
	mustNode(t, f.c.Node("A"), "mirror", "no-failover", "MIR")
	f.c.Node("B").KillHost()
	f.c.WaitFor(t, "A drops B", 30*time.Second, func() (bool, error) {
		st, err := local(f.c.Node("A"))
		if err != nil {
			return false, err
		}
		return row(st, "B").JournalTransfer != mirror.TransferActive, fmt.Errorf("B is %s, transfer %s", row(st, "B").Status, row(st, "B").JournalTransfer)
	})
	l.waitAcks(t, f.c, 100)
	st, err := local(f.c.Node("A"))
	if err != nil || row(st, "A").Status != mirror.StatusPrimary || st.TroubleEpisodes != 0 || !st.NoFailover {
		t.Fatalf("A after losing B under no-failover: %s, %d trouble episodes, no-failover %v (%v)", row(st, "A").Status, st.TroubleEpisodes, st.NoFailover, err)
	}
	acked := l.finish(t)
	f.c.Node("B").RestartHost()
	waitTransfer(t, f.c, "A", "B", mirror.TransferActive)
	mustNode(t, f.c.Node("A"), "mirror", "no-failover", "MIR", "--clear")
	waitConverged(t, f.c)
	checkAcked(t, f.c.Node("B"), acked)
}

// TestPromoteDRWithoutPrimary: both failover members are down. With their agents answering, the DR async takes the last
// primary's journal and becomes primary; without any partner it uses what the asyncs have, warns, and marks the former
// failover members not-validated.
func TestPromoteDRWithoutPrimary(t *testing.T) {
	t.Run("agents answer", func(t *testing.T) {
		f := newAgentMirror(t, []member{{"A", ""}, {"B", "failover"}, {"C", "dr"}})
		defer dumpLogs(t, f.c)
		l := startSetLoad(t, []string{f.c.Node("A").Addr}, 2)
		l.waitAcks(t, f.c, 200)
		acked := l.finish(t)
		f.c.Node("B").StopByAgent()
		f.c.Node("A").StopByAgent()
		out := mustNode(t, f.c.Node("C"), "mirror", "promote", "MIR", "--no-primary")
		if !strings.Contains(out, "is primary in epoch 2") || !strings.Contains(out, "journal fetched from: A") || strings.Contains(out, "not validated") {
			t.Fatalf("promote said:\n%s", out)
		}
		f.waitPrimary(t, "C", 1)
		checkAcked(t, f.c.Node("C"), acked)
	})
	t.Run("no partner", func(t *testing.T) {
		f := newAgentMirror(t, []member{{"A", ""}, {"B", "failover"}, {"C", "dr"}})
		defer dumpLogs(t, f.c)
		if r := f.c.Node("C").CLI(t, "mirror", "promote", "MIR", "--no-primary"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "receives the journal from the primary A") {
			t.Fatalf("promote --no-primary while A runs: exit %d: %s", r.ExitCode, r.Stderr)
		}
		f.c.Node("A").KillHost()
		f.c.Node("B").KillHost()
		out := mustNode(t, f.c.Node("C"), "mirror", "promote", "MIR", "--no-primary")
		if !strings.Contains(out, "is primary in epoch 2") || !strings.Contains(out, "not validated (must not start as primary; rejoin as DR or rebuild): A, B") ||
			!strings.Contains(out, "may be lost") {
			t.Fatalf("promote said:\n%s", out)
		}
		st := f.waitPrimary(t, "C", 1)
		if len(st.NotValidated) != 2 || row(st, "A").Type != mirror.DR.Label() {
			t.Fatalf("after the promotion: not validated %v, A is %q", st.NotValidated, row(st, "A").Type)
		}
	})
}

// TestPrimaryStopsWhileItsBackupIsGone: a primary told to stop just after its backup was stopped — In Trouble, with commits
// waiting for an acknowledgement or for the trouble to be resolved — still shuts down: the waiting commits end with an
// unknown outcome instead of holding the shutdown forever.
func TestPrimaryStopsWhileItsBackupIsGone(t *testing.T) {
	f := newAgentMirror(t, []member{{"A", ""}, {"B", "failover"}})
	defer dumpLogs(t, f.c)
	A := f.c.Node("A")
	cl := A.Client(t, 4)
	stop := make(chan struct{})
	acked := make(chan struct{}, 1)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if cl.Set(ctx, "APP", fmt.Sprintf("^S(%d,%d)", w, i), []byte("x")) == nil {
					select {
					case acked <- struct{}{}:
					default:
					}
				}
				cancel()
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	<-acked
	f.c.Node("B").StopByAgent()
	// The agent's stop waits for the member to exit, within the agent call timeout: it fails the test if A hangs.
	A.StopByAgent()
	ms, err := A.Agent().Client().Member(context.Background(), "A")
	if err != nil || ms.Running {
		t.Fatalf("A after its stop: %+v %v", ms, err)
	}
}
