package arbiter

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// step is one event in a decision scenario: the clock advances, then a report or a request arrives; a request's
// decision is checked against granted and (when refused) reason.
type step struct {
	advance  time.Duration
	report   *Report
	takeover *TakeoverRequest
	cont     *ContinueRequest
	rejoined *RejoinedRequest
	granted  bool
	reason   string // substring of the refusal
}

func reportStep(r Report) step { return step{report: &r} }

func takeoverStep(member string, epoch uint64, granted bool, reason string) step {
	return step{takeover: &TakeoverRequest{Mirror: "APP", Member: member, Epoch: epoch, NewEpoch: epoch + 1}, granted: granted, reason: reason}
}

func continueStep(member string, epoch uint64, granted bool, reason string) step {
	return step{cont: &ContinueRequest{Mirror: "APP", Member: member, Epoch: epoch}, granted: granted, reason: reason}
}

func rejoinedStep(member string, epoch uint64, granted bool, reason string) step {
	return step{rejoined: &RejoinedRequest{Mirror: "APP", Member: member, Epoch: epoch}, granted: granted, reason: reason}
}

func advance(d time.Duration) step { return step{advance: d} }

// healthy is a pair in epoch 1: a primary, b its Active backup, both reporting.
var healthy = []step{reportStep(primaryReport("a", 1)), reportStep(backupReport("b", 1))}

func scenario(steps ...[]step) []step {
	var out []step
	for _, s := range steps {
		out = append(out, s...)
	}
	return out
}

func TestDecisions(t *testing.T) {
	tests := []struct {
		name    string
		steps   []step
		epoch   uint64 // record at the end
		primary string
		lost    uint64
	}{
		{
			name: "takeover granted once the primary is silent for QoS",
			steps: scenario(healthy, []step{
				advance(qos / 2), reportStep(backupReport("b", 1)),
				advance(qos / 2), takeoverStep("b", 1, true, ""),
			}),
			epoch: 2, primary: "b",
		},
		{
			name: "takeover refused while the primary reports",
			steps: scenario(healthy, []step{
				advance(qos - time.Millisecond), takeoverStep("b", 1, false, "primary a was heard from 1.999s ago"),
				reportStep(primaryReport("a", 1)), advance(qos / 2), takeoverStep("b", 1, false, "primary a was heard from 1s ago"),
			}),
			epoch: 1, primary: "a",
		},
		{
			name: "a primary that reports keeps the role even without its backup",
			steps: scenario(healthy, []step{
				advance(qos), reportStep(Report{Mirror: "APP", Member: "a", Epoch: 1, Primary: true, QoS: qos}),
				takeoverStep("b", 1, false, "primary a was heard from 0s ago"),
			}),
			epoch: 1, primary: "a",
		},
		{
			name: "takeover refused to a member that is not the active backup",
			steps: scenario(healthy, []step{
				reportStep(Report{Mirror: "APP", Member: "b", Epoch: 1, SeesPeer: true, QoS: qos}),
				advance(qos), takeoverStep("b", 1, false, "member b did not report being the active backup in epoch 1"),
			}),
			epoch: 1, primary: "a",
		},
		{
			name: "takeover refused to a member that never reported",
			steps: scenario([]step{reportStep(primaryReport("a", 1)), advance(qos)},
				[]step{takeoverStep("b", 1, false, "member b did not report being the active backup")}),
			epoch: 1, primary: "a",
		},
		{
			name:  "takeover refused to the primary itself",
			steps: scenario(healthy, []step{advance(qos), takeoverStep("a", 1, false, "member a is already the primary in epoch 1")}),
			epoch: 1, primary: "a",
		},
		{
			name: "takeover refused after the primary continued without its backup",
			steps: scenario(healthy, []step{
				advance(qos), reportStep(primaryReport("a", 1)), continueStep("a", 1, true, ""),
				reportStep(backupReport("b", 1)), advance(qos),
				takeoverStep("b", 1, false, "the primary a was allowed to continue without its backup in epoch 1"),
			}),
			epoch: 1, primary: "a", lost: 1,
		},
		{
			name: "continue granted once the backup reports it is no longer active, though it still reports",
			steps: scenario(healthy, []step{
				advance(qos / 2), reportStep(primaryReport("a", 1)),
				continueStep("a", 1, false, "member b was heard from 1s ago"),
				reportStep(Report{Mirror: "APP", Member: "b", Epoch: 1, QoS: qos}),
				continueStep("a", 1, true, ""),
				takeoverStep("b", 1, false, "did not report being the active backup"),
			}),
			epoch: 1, primary: "a", lost: 1,
		},
		{
			name: "takeover granted again once the backup rejoined",
			steps: scenario(healthy, []step{
				advance(qos), reportStep(primaryReport("a", 1)), continueStep("a", 1, true, ""),
				reportStep(backupReport("b", 1)), rejoinedStep("a", 1, true, ""),
				advance(qos), takeoverStep("b", 1, true, ""),
			}),
			epoch: 2, primary: "b",
		},
		{
			name: "takeover refused for a stale epoch",
			steps: scenario(healthy, []step{
				reportStep(primaryReport("a", 3)), reportStep(backupReport("b", 2)),
				advance(qos), takeoverStep("b", 2, false, "epoch 2 is older than the recorded 3"),
			}),
			epoch: 3, primary: "a",
		},
		{
			name: "takeover refused for an epoch never reported",
			steps: scenario(healthy, []step{
				advance(qos), takeoverStep("b", 4, false, "epoch 4 is newer than the recorded 1"),
			}),
			epoch: 1, primary: "a",
		},
		{
			name: "a stale old primary cannot take over after losing the role",
			steps: scenario(healthy, []step{
				advance(qos), reportStep(backupReport("b", 1)), takeoverStep("b", 1, true, ""),
				reportStep(backupReport("a", 1)), advance(qos), takeoverStep("a", 1, false, "epoch 1 is older than the recorded 2"),
			}),
			epoch: 2, primary: "b",
		},
		{
			name: "silence is judged against the longest QoS reported",
			steps: []step{
				reportStep(Report{Mirror: "APP", Member: "a", Epoch: 1, Primary: true, QoS: 3 * qos}),
				reportStep(backupReport("b", 1)),
				advance(2 * qos), takeoverStep("b", 1, false, "less than the QoS timeout 6s"),
				advance(qos), takeoverStep("b", 1, true, ""),
			},
			epoch: 2, primary: "b",
		},
		{
			name: "continue refused while the backup reports",
			steps: scenario(healthy, []step{
				advance(qos / 2), reportStep(primaryReport("a", 1)),
				continueStep("a", 1, false, "member b was heard from 1s ago, less than the QoS timeout 2s"),
			}),
			epoch: 1, primary: "a",
		},
		{
			name: "continue granted once the backup is silent for QoS",
			steps: scenario(healthy, []step{
				advance(qos), continueStep("a", 1, true, ""), continueStep("a", 1, true, ""),
			}),
			epoch: 1, primary: "a", lost: 1,
		},
		{
			name: "continue refused to a member that is not the primary",
			steps: scenario(healthy, []step{
				advance(qos), continueStep("b", 1, false, "member b is not the primary in epoch 1; a is"),
			}),
			epoch: 1, primary: "a",
		},
		{
			name: "continue refused for a stale epoch",
			steps: scenario(healthy, []step{
				reportStep(primaryReport("a", 2)), advance(qos), continueStep("a", 1, false, "epoch 1 is older than the recorded 2"),
			}),
			epoch: 2, primary: "a",
		},
		{
			name: "rejoined refused to a member that is not the primary",
			steps: scenario(healthy, []step{
				advance(qos), continueStep("a", 1, true, ""), rejoinedStep("b", 1, false, "member b is not the primary"),
			}),
			epoch: 1, primary: "a", lost: 1,
		},
		{
			name: "a newer epoch reported by the new primary is recorded",
			steps: scenario(healthy, []step{
				reportStep(backupReport("a", 2)), reportStep(primaryReport("b", 2)),
			}),
			epoch: 2, primary: "b",
		},
		{
			name: "a primary claim for another member's epoch changes nothing",
			steps: scenario(healthy, []step{
				reportStep(primaryReport("b", 1)), advance(qos), continueStep("b", 1, false, "member b is not the primary in epoch 1; a is"),
			}),
			epoch: 1, primary: "a",
		},
		{
			name: "takeover without any primary recorded needs every other member silent",
			steps: []step{
				reportStep(backupReport("a", 1)), reportStep(backupReport("b", 1)),
				takeoverStep("b", 1, false, "member a was heard from 0s ago"),
				advance(qos), takeoverStep("b", 1, true, ""),
			},
			epoch: 2, primary: "b",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			s := newServer(t, "", clk, nil)
			run(t, s, clk, tc.steps)
			st := s.State()["APP"]
			if st.Epoch != tc.epoch || st.Primary != tc.primary || st.BackupLost != tc.lost {
				t.Errorf("record = epoch %d primary %q backup lost %d, want %d %q %d",
					st.Epoch, st.Primary, st.BackupLost, tc.epoch, tc.primary, tc.lost)
			}
		})
	}
}

// run plays steps against s, checking every decision.
func run(tb testing.TB, s *Server, clk *clock, steps []step) {
	tb.Helper()
	for i, st := range steps {
		clk.Advance(st.advance)
		var (
			d    Decision
			err  error
			what string
		)
		switch {
		case st.report != nil:
			mustReport(tb, s, *st.report)
			continue
		case st.takeover != nil:
			what = fmt.Sprintf("takeover %+v", *st.takeover)
			d, err = s.takeover(*st.takeover)
		case st.cont != nil:
			what = fmt.Sprintf("continue %+v", *st.cont)
			d, err = s.continueWithout(*st.cont)
		case st.rejoined != nil:
			what = fmt.Sprintf("rejoined %+v", *st.rejoined)
			d, err = s.rejoined(*st.rejoined)
		default:
			continue
		}
		if err != nil {
			tb.Fatalf("step %d: %s: %v", i, what, err)
		}
		if d.Granted != st.granted || (!d.Granted && !strings.Contains(d.Reason, st.reason)) || (d.Granted && d.Reason != "") {
			tb.Fatalf("step %d: %s = %+v, want granted %v reason containing %q", i, what, d, st.granted, st.reason)
		}
		if rec := s.State()["APP"]; d.Epoch != rec.Epoch || d.Primary != rec.Primary {
			tb.Fatalf("step %d: %s = %+v, but the record is epoch %d primary %q", i, what, d, rec.Epoch, rec.Primary)
		}
	}
}

func TestViews(t *testing.T) {
	clk := newClock()
	s := newServer(t, "", clk, nil)
	tests := []struct {
		name    string
		advance time.Duration
		report  Report
		want    View
	}{
		{
			name:   "first member sees no peer",
			report: primaryReport("a", 1),
			want:   View{Epoch: 1, Primary: "a"},
		},
		{
			name:    "peer seen within QoS",
			advance: qos / 2,
			report:  backupReport("b", 1),
			want:    View{Epoch: 1, Primary: "a", PeerSeen: true, PeerReport: primaryReport("a", 1), PeerAge: qos / 2},
		},
		{
			name:    "peer lost after QoS",
			advance: qos,
			report:  backupReport("b", 1),
			want:    View{Epoch: 1, Primary: "a", PeerReport: primaryReport("a", 1), PeerAge: 3 * qos / 2},
		},
		{
			name:   "names are canonical",
			report: Report{Mirror: "app", Member: "a", Epoch: 1, Primary: true, QoS: qos},
			want:   View{Epoch: 1, Primary: "a", PeerSeen: true, PeerReport: backupReport("b", 1)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk.Advance(tc.advance)
			if got := mustReport(t, s, tc.report); got != tc.want {
				t.Errorf("view = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestBadMessages(t *testing.T) {
	s := newServer(t, "", newClock(), nil)
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"bad mirror name", func() error { _, err := s.report(Report{Mirror: "A-B", Member: "a", QoS: qos}); return err }, wire.ErrInvalidName},
		{"long mirror name", func() error {
			_, err := s.report(Report{Mirror: strings.Repeat("A", 16), Member: "a", QoS: qos})
			return err
		}, wire.ErrInvalidName},
		{"bad member name", func() error { _, err := s.report(Report{Mirror: "APP", Member: "a b", QoS: qos}); return err }, wire.ErrInvalidName},
		{"no QoS", func() error { _, err := s.report(Report{Mirror: "APP", Member: "a"}); return err }, wire.ErrBadRequest},
		{"primary and backup", func() error {
			_, err := s.report(Report{Mirror: "APP", Member: "a", Primary: true, ActiveBackup: true, QoS: qos})
			return err
		}, wire.ErrBadRequest},
		{"new epoch not next", func() error {
			_, err := s.takeover(TakeoverRequest{Mirror: "APP", Member: "b", Epoch: 1, NewEpoch: 3})
			return err
		}, wire.ErrBadRequest},
		{"continue bad member", func() error { _, err := s.continueWithout(ContinueRequest{Mirror: "APP", Epoch: 1}); return err }, wire.ErrInvalidName},
		{"rejoined bad mirror", func() error { _, err := s.rejoined(RejoinedRequest{Member: "a", Epoch: 1}); return err }, wire.ErrInvalidName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Errorf("error = %v, want %v", err, tc.want)
			}
		})
	}
	if st := s.State(); len(st) > 1 || st["APP"].Epoch != 0 {
		t.Errorf("bad messages changed the state: %+v", st)
	}
}

func TestRacingTakeovers(t *testing.T) {
	for round := range 20 {
		clk := newClock()
		s := newServer(t, "", clk, nil)
		// Both members claim to be the Active backup of a primary that fell silent; each asks many times at once.
		mustReport(t, s, primaryReport("p", 1))
		mustReport(t, s, backupReport("a", 1))
		mustReport(t, s, backupReport("b", 1))
		clk.Advance(qos)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			granted []string
		)
		start := make(chan struct{})
		for i := range 16 {
			member := []string{"a", "b"}[i%2]
			wg.Go(func() {
				<-start
				d, err := s.takeover(TakeoverRequest{Mirror: "APP", Member: member, Epoch: 1, NewEpoch: 2})
				if err != nil {
					t.Errorf("takeover by %s: %v", member, err)
					return
				}
				if d.Granted {
					mu.Lock()
					granted = append(granted, member)
					mu.Unlock()
				}
				if d.Epoch != 2 && d.Epoch != 1 {
					t.Errorf("takeover by %s answered epoch %d", member, d.Epoch)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(granted) != 1 {
			t.Fatalf("round %d: granted to %v, want exactly one", round, granted)
		}
		if st := s.State()["APP"]; st.Epoch != 2 || st.Primary != granted[0] {
			t.Fatalf("round %d: record epoch %d primary %q, granted to %s", round, st.Epoch, st.Primary, granted[0])
		}
	}
}

func TestDecisionsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := newServer(t, dir, clk, nil)
	run(t, s, clk, scenario(healthy, []step{advance(qos), takeoverStep("b", 1, true, "")}))
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s = newServer(t, dir, clk, nil)
	if st := s.State()["APP"]; st.Epoch != 2 || st.Primary != "b" {
		t.Fatalf("after restart the record is epoch %d primary %q, want 2 b", st.Epoch, st.Primary)
	}
	mustReport(t, s, backupReport("b", 1))
	clk.Advance(qos)
	d, err := s.takeover(TakeoverRequest{Mirror: "APP", Member: "b", Epoch: 1, NewEpoch: 2})
	if err != nil {
		t.Fatal(err)
	}
	if d.Granted || d.Epoch != 2 || d.Primary != "b" || !strings.Contains(d.Reason, "epoch 1 is older than the recorded 2") {
		t.Fatalf("repeated takeover after restart = %+v, want refused showing b primary in 2", d)
	}
}

func TestRestartedArbiterWaitsOutQoS(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := newServer(t, dir, clk, nil)
	run(t, s, clk, healthy)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	clk.Advance(time.Hour)
	// The new arbiter has never heard from the primary, so it cannot know for how long the primary has been silent.
	s = newServer(t, dir, clk, nil)
	run(t, s, clk, []step{
		reportStep(backupReport("b", 1)),
		takeoverStep("b", 1, false, "primary a has not been heard from since the arbiter started 0s ago"),
		advance(qos - time.Millisecond),
		takeoverStep("b", 1, false, "since the arbiter started 1.999s ago"),
		reportStep(primaryReport("a", 1)),
		continueStep("a", 1, false, "member b was heard from 0s ago"), // its takeover request
		advance(time.Millisecond),
		takeoverStep("b", 1, false, "primary a was heard from 1ms ago"),
	})
}

func TestFailedPersistAnswersNoDecision(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := newServer(t, dir, clk, nil)
	run(t, s, clk, scenario(healthy, []step{advance(qos)}))
	// A directory where the state file goes makes the rename of every write fail.
	path := filepath.Join(dir, StateFile)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	req := TakeoverRequest{Mirror: "APP", Member: "b", Epoch: 1, NewEpoch: 2}
	if d, err := s.takeover(req); err == nil {
		t.Fatalf("takeover with an unwritable state = %+v, want an error", d)
	}
	if st := s.State()["APP"]; st.Epoch != 1 || st.Primary != "a" {
		t.Fatalf("a decision that was not persisted changed the record: epoch %d primary %q", st.Epoch, st.Primary)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if d, err := s.takeover(req); err != nil || !d.Granted {
		t.Fatalf("takeover once the state is writable = %+v, %v; want granted", d, err)
	}
}
