package plans

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSystem stands for the live system the handlers of samplePlan act on: it counts what was called and lets a test make
// checks, runs, verifications and undos fail.
type fakeSystem struct {
	mu         sync.Mutex
	runs       map[int]int       // step → Run calls
	undos      []int             // steps undone, in order
	checksSeen int               // Checks calls
	checkFail  map[string]string // check name → detail of its failure
	noResult   string            // a check name the handler gives no result for
	runErr     map[int]error     // step → error of its next Run
	verifyErr  map[int]error
	undoErr    map[int]error
	beforeRun  func(ctx context.Context, s *Step) // called inside Run, before it counts
}

func newFakeSystem() *fakeSystem {
	return &fakeSystem{runs: map[int]int{}, checkFail: map[string]string{}, runErr: map[int]error{},
		verifyErr: map[int]error{}, undoErr: map[int]error{}}
}

func (f *fakeSystem) handlers() Handlers {
	checks := func(_ context.Context, s *Step) []CheckResult {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.checksSeen++
		var out []CheckResult
		for _, c := range s.Checks {
			if c.Name == f.noResult {
				continue
			}
			detail, failed := f.checkFail[c.Name]
			if !failed {
				detail = c.Name + " fine on " + s.Member
			}
			out = append(out, CheckResult{Name: c.Name, OK: !failed, Detail: detail})
		}
		return out
	}
	run := func(ctx context.Context, s *Step, ev Events) error {
		if f.beforeRun != nil {
			f.beforeRun(ctx, s)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.runs[s.N]++
		ev.Event(Event{Step: s.N, Kind: s.Kind, Phase: PhaseProgress, Bytes: 10, Total: 10})
		err := f.runErr[s.N]
		delete(f.runErr, s.N)
		return err
	}
	verify := func(_ context.Context, s *Step) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		err := f.verifyErr[s.N]
		delete(f.verifyErr, s.N)
		return err
	}
	undo := func(_ context.Context, s *Step) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := f.undoErr[s.N]; err != nil {
			delete(f.undoErr, s.N)
			return err
		}
		f.undos = append(f.undos, s.N)
		return nil
	}
	return Handlers{
		"work":  {Checks: checks, Run: run, Verify: verify, Undo: undo},
		"final": {Checks: checks, Run: run},
	}
}

func (f *fakeSystem) runCount(n int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs[n]
}

// recorder keeps the events of an execution.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Event(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// phases lists "step:phase" for every event, to compare sequences.
func (r *recorder) phases() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, fmt.Sprintf("%d:%s", e.Step, e.Phase))
	}
	return out
}

func statePath(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(tb.TempDir(), "plan.json.state")
}

func statuses(st *State) []StepStatus {
	var out []StepStatus
	for _, s := range st.Steps {
		out = append(out, s.Status)
	}
	return out
}

// requireStatuses checks the returned state and the state on disk.
func requireStatuses(tb testing.TB, st *State, path string, want ...StepStatus) {
	tb.Helper()
	if got := statuses(st); !slices.Equal(got, want) {
		tb.Fatalf("returned statuses %v, want %v", got, want)
	}
	onDisk, err := LoadState(path)
	if err != nil {
		tb.Fatal(err)
	}
	if got := statuses(onDisk); !slices.Equal(got, want) {
		tb.Fatalf("persisted statuses %v, want %v", got, want)
	}
}

func TestExecute(t *testing.T) {
	p, sys, path, rec := samplePlan(t), newFakeSystem(), statePath(t), &recorder{}
	st, err := Execute(context.Background(), p, sys.handlers(), path, rec)
	if err != nil {
		t.Fatal(err)
	}
	requireStatuses(t, st, path, StatusDone, StatusDone, StatusDone)
	if !st.Finished || st.PlanID != p.ID || st.Version != FormatVersion {
		t.Errorf("state %+v", st)
	}
	for n := 1; n <= 3; n++ {
		if got := sys.runCount(n); got != 1 {
			t.Errorf("step %d ran %d times", n, got)
		}
		ss := st.Steps[n-1]
		if ss.Attempts != 1 || ss.Started.IsZero() || ss.Ended.Before(ss.Started) || ss.Error != "" {
			t.Errorf("step %d state %+v", n, ss)
		}
	}
	if want := []CheckResult{{"space", true, "space fine on b"}, {"reachable", true, "reachable fine on b"}}; !reflect.DeepEqual(st.Steps[1].Checks, want) {
		t.Errorf("step 2 checks recorded %+v", st.Steps[1].Checks)
	}
	want := []string{"1:checks", "1:run", "1:progress", "1:verify", "1:done", "2:checks", "2:run", "2:progress", "2:verify", "2:done",
		"3:checks", "3:run", "3:progress", "3:done"}
	if got := rec.phases(); !slices.Equal(got, want) {
		t.Errorf("events %v\nwant %v", got, want)
	}

	// Executing a finished plan again does nothing.
	if _, err := Execute(context.Background(), p, sys.handlers(), path, nil); err != nil {
		t.Fatal(err)
	}
	if got := sys.runCount(1) + sys.runCount(2) + sys.runCount(3); got != 3 {
		t.Errorf("a finished plan ran again: %d runs", got)
	}
}

func TestExecuteResumesAfterFailure(t *testing.T) {
	tests := []struct {
		name   string
		fault  func(sys *fakeSystem)
		reason string
	}{
		{"run fails", func(sys *fakeSystem) { sys.runErr[2] = errors.New("disk full on b") }, "disk full on b"},
		{"verify fails", func(sys *fakeSystem) { sys.verifyErr[2] = errors.New("checksum mismatch in chunk 7") },
			"verification failed: checksum mismatch in chunk 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, sys, path := samplePlan(t), newFakeSystem(), statePath(t)
			tt.fault(sys)
			st, err := Execute(context.Background(), p, sys.handlers(), path, nil)
			if err == nil || !strings.Contains(err.Error(), "step 2 (Copy orders to b)") || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("Execute error %v", err)
			}
			requireStatuses(t, st, path, StatusDone, StatusFailed, StatusPending)
			if st.Finished || st.Steps[1].Error != tt.reason {
				t.Fatalf("failed step state %+v", st.Steps[1])
			}

			st, err = Execute(context.Background(), p, sys.handlers(), path, nil)
			if err != nil {
				t.Fatal(err)
			}
			requireStatuses(t, st, path, StatusDone, StatusDone, StatusDone)
			if got := []int{sys.runCount(1), sys.runCount(2), sys.runCount(3)}; !slices.Equal(got, []int{1, 2, 1}) {
				t.Errorf("runs per step %v, want step 1 once, step 2 twice, step 3 once", got)
			}
			if ss := st.Steps[1]; ss.Attempts != 2 || ss.Error != "" || !st.Finished {
				t.Errorf("retried step state %+v finished %v", ss, st.Finished)
			}
		})
	}
}

// A check that passes in the dry run but fails when the step is about to run stops the plan before the step does anything.
func TestExecuteRechecksAtRunTime(t *testing.T) {
	p, sys, path := samplePlan(t), newFakeSystem(), statePath(t)
	reports, err := DryRun(context.Background(), p, sys.handlers())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reports {
		if !r.OK() {
			t.Fatalf("dry run step %d: %+v", r.N, r.Checks)
		}
	}

	sys.checkFail["reachable"] = "b refused the connection"
	st, err := Execute(context.Background(), p, sys.handlers(), path, nil)
	if !errors.Is(err, ErrCheckFailed) || !strings.Contains(err.Error(), "reachable: b refused the connection") {
		t.Fatalf("Execute error %v, want a failed pre-check naming reachable", err)
	}
	requireStatuses(t, st, path, StatusDone, StatusFailed, StatusPending)
	if got := st.Steps[1].Error; got != "pre-check failed: reachable: b refused the connection" {
		t.Errorf("reason %q", got)
	}
	if sys.runCount(2) != 0 {
		t.Errorf("step 2 ran although its pre-check failed")
	}
	onDisk, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := []CheckResult{{"space", true, "space fine on b"}, {"reachable", false, "b refused the connection"}}; !reflect.DeepEqual(onDisk.Steps[1].Checks, want) {
		t.Errorf("persisted checks %+v", onDisk.Steps[1].Checks)
	}

	// A check the handler gives no result for counts as failed.
	delete(sys.checkFail, "reachable")
	sys.noResult = "space"
	_, err = Execute(context.Background(), p, sys.handlers(), path, nil)
	if !errors.Is(err, ErrCheckFailed) || !strings.Contains(err.Error(), "space: the check gave no result") {
		t.Fatalf("Execute with a missing result: %v", err)
	}

	sys.noResult = ""
	st, err = Execute(context.Background(), p, sys.handlers(), path, nil)
	if err != nil || !st.Finished || st.Steps[1].Attempts != 3 {
		t.Fatalf("Execute after the checks pass: %v, %+v", err, st)
	}
}

func TestExecuteInterrupted(t *testing.T) {
	p, sys, path := samplePlan(t), newFakeSystem(), statePath(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sys.beforeRun = func(_ context.Context, s *Step) {
		if s.N == 2 {
			cancel()
		}
	}
	sys.runErr[2] = context.Canceled
	st, err := Execute(ctx, p, sys.handlers(), path, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Execute error %v", err)
	}
	requireStatuses(t, st, path, StatusDone, StatusFailed, StatusPending)
	if got := st.Steps[1].Error; got != "interrupted: context canceled" {
		t.Errorf("reason %q", got)
	}

	sys.beforeRun = nil
	st, err = Execute(context.Background(), p, sys.handlers(), path, nil)
	if err != nil || !st.Finished {
		t.Fatalf("re-run: %v %+v", err, st)
	}
}

func TestExecuteRefusesStateOfAnotherPlan(t *testing.T) {
	path := statePath(t)
	first, sys := samplePlan(t), newFakeSystem()
	if _, err := Execute(context.Background(), first, sys.handlers(), path, nil); err != nil {
		t.Fatal(err)
	}
	second := samplePlan(t)
	_, err := Execute(context.Background(), second, sys.handlers(), path, nil)
	want := fmt.Sprintf("%s belongs to plan %s, not %s", path, first.ID, second.ID)
	if !errors.Is(err, ErrWrongPlan) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Execute error %v, want %q", err, want)
	}
	if _, err := Undo(context.Background(), second, sys.handlers(), path, nil); !errors.Is(err, ErrWrongPlan) {
		t.Fatalf("Undo error %v", err)
	}
	if got := sys.runCount(1); got != 1 {
		t.Errorf("step 1 ran %d times", got)
	}
}

func TestExecuteLocked(t *testing.T) {
	p, sys, path := samplePlan(t), newFakeSystem(), statePath(t)
	started, release := make(chan struct{}), make(chan struct{})
	sys.beforeRun = func(_ context.Context, s *Step) {
		if s.N == 1 {
			close(started)
			<-release
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := Execute(context.Background(), p, sys.handlers(), path, nil)
		done <- err
	}()
	<-started

	want := fmt.Sprintf("plan %s is being executed by another process (pid %d)", p.ID, os.Getpid())
	_, err := Execute(context.Background(), p, newFakeSystem().handlers(), path, nil)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), want) {
		t.Errorf("second Execute: %v, want %q", err, want)
	}
	if _, err := Undo(context.Background(), p, newFakeSystem().handlers(), path, nil); !errors.Is(err, ErrLocked) {
		t.Errorf("Undo during Execute: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := sys.runCount(1); got != 1 {
		t.Errorf("step 1 ran %d times", got)
	}
	// The lock is free again.
	if _, err := Execute(context.Background(), p, sys.handlers(), path, nil); err != nil {
		t.Fatal(err)
	}
}

func TestExecuteUnknownKind(t *testing.T) {
	p, sys, path := samplePlan(t), newFakeSystem(), statePath(t)
	p.Steps[2].Kind = "teleport"
	_, err := Execute(context.Background(), p, sys.handlers(), path, nil)
	if !errors.Is(err, ErrUnknownKind) || !strings.Contains(err.Error(), `step 3`) || !strings.Contains(err.Error(), `"teleport"`) {
		t.Fatalf("Execute error %v", err)
	}
	if sys.runCount(1) != 0 || sys.checksSeen != 0 {
		t.Errorf("steps ran before the kinds were validated")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state file written for a plan that cannot run: %v", err)
	}
	if _, err := DryRun(context.Background(), p, sys.handlers()); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("DryRun error %v", err)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	p, sys := samplePlan(t), newFakeSystem()
	dir := t.TempDir()
	t.Chdir(dir) // anything the dry run wrote by a relative path would land here
	sys.checkFail["space"] = "2 GiB free, 14 GiB needed"
	reports, err := DryRun(context.Background(), p, sys.handlers())
	if err != nil {
		t.Fatal(err)
	}
	want := []StepReport{
		{N: 1, Checks: []CheckResult{{"space", false, "2 GiB free, 14 GiB needed"}}},
		{N: 2, Checks: []CheckResult{{"space", false, "2 GiB free, 14 GiB needed"}, {"reachable", true, "reachable fine on b"}}},
		{N: 3},
	}
	if !reflect.DeepEqual(reports, want) {
		t.Errorf("reports %+v\nwant %+v", reports, want)
	}
	if reports[0].OK() || !reports[2].OK() {
		t.Errorf("OK: step 1 %v, step 3 %v", reports[0].OK(), reports[2].OK())
	}
	if got := sys.runCount(1) + sys.runCount(2) + sys.runCount(3); got != 0 || len(sys.undos) != 0 {
		t.Errorf("dry run ran %d steps and undid %v", got, sys.undos)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("dry run wrote files: %v %v", entries, err)
	}
}

func TestUndo(t *testing.T) {
	t.Run("before the point of no return", func(t *testing.T) {
		p, sys, path := samplePlan(t), newFakeSystem(), statePath(t)
		sys.runErr[3] = errors.New("application did not switch")
		if _, err := Execute(context.Background(), p, sys.handlers(), path, nil); err == nil {
			t.Fatal("Execute succeeded with a failing step 3")
		}
		rec := &recorder{}
		st, err := Undo(context.Background(), p, sys.handlers(), path, rec)
		if err != nil {
			t.Fatal(err)
		}
		requireStatuses(t, st, path, StatusUndone, StatusUndone, StatusUndone)
		if !slices.Equal(sys.undos, []int{2, 1}) {
			t.Errorf("undo order %v, want [2 1]", sys.undos)
		}
		if want := []string{"3:undo", "2:undo", "2:undone", "1:undo", "1:undone"}; !slices.Equal(rec.phases(), want) {
			t.Errorf("events %v, want %v", rec.phases(), want)
		}

		// Undo again: nothing left to undo.
		if _, err := Undo(context.Background(), p, sys.handlers(), path, nil); err != nil || len(sys.undos) != 2 {
			t.Fatalf("second Undo: %v, undos %v", err, sys.undos)
		}
		// Executing an undone plan carries it out again.
		st, err = Execute(context.Background(), p, sys.handlers(), path, nil)
		if err != nil || !st.Finished || sys.runCount(1) != 2 {
			t.Fatalf("Execute after Undo: %v %+v", err, st)
		}
	})

	t.Run("past the point of no return", func(t *testing.T) {
		p, sys, path := samplePlan(t), newFakeSystem(), statePath(t)
		if _, err := Execute(context.Background(), p, sys.handlers(), path, nil); err != nil {
			t.Fatal(err)
		}
		st, err := Undo(context.Background(), p, sys.handlers(), path, nil)
		if !errors.Is(err, ErrPastPointOfNoReturn) || !strings.Contains(err.Error(), "step 3 (Switch the application to the mirror)") {
			t.Fatalf("Undo error %v", err)
		}
		requireStatuses(t, st, path, StatusDone, StatusDone, StatusDone)
		if len(sys.undos) != 0 {
			t.Errorf("steps undone past the point of no return: %v", sys.undos)
		}
	})

	t.Run("undo fails then resumes", func(t *testing.T) {
		p, sys, path := samplePlan(t), newFakeSystem(), statePath(t)
		p.PointOfNoReturn = 0
		if _, err := Execute(context.Background(), p, sys.handlers(), path, nil); err != nil {
			t.Fatal(err)
		}
		sys.undoErr[1] = errors.New("a is unreachable")
		st, err := Undo(context.Background(), p, sys.handlers(), path, nil)
		if err == nil || !strings.Contains(err.Error(), "step 1 (Prepare orders on a): undo: a is unreachable") {
			t.Fatalf("Undo error %v", err)
		}
		requireStatuses(t, st, path, StatusFailed, StatusUndone, StatusUndone)
		st, err = Undo(context.Background(), p, sys.handlers(), path, nil)
		if err != nil {
			t.Fatal(err)
		}
		requireStatuses(t, st, path, StatusUndone, StatusUndone, StatusUndone)
		if !slices.Equal(sys.undos, []int{2, 1}) {
			t.Errorf("undo calls %v, want [2 1]", sys.undos)
		}
	})

	t.Run("never executed", func(t *testing.T) {
		p, sys, path := samplePlan(t), newFakeSystem(), statePath(t)
		if _, err := Undo(context.Background(), p, sys.handlers(), path, nil); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Undo error %v", err)
		}
	})
}

// With HoldEnv naming a step's phase, an execution stops right after reporting it and waits, running nothing more, until
// it is interrupted; the step is then failed as interrupted, and a re-run finishes the plan.
func TestExecuteHoldsForCrashTests(t *testing.T) {
	for _, phase := range []string{PhaseRun, PhaseVerify} {
		t.Run(phase, func(t *testing.T) {
			t.Setenv(HoldEnv, "2:"+phase)
			p, sys, path, rec := samplePlan(t), newFakeSystem(), statePath(t), &recorder{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := Execute(ctx, p, sys.handlers(), path, rec)
				done <- err
			}()
			held := "2:" + phase
			if err := WaitFor(context.Background(), 10*time.Second, 5*time.Millisecond, func() error {
				if got := rec.phases(); len(got) == 0 || got[len(got)-1] != held {
					return fmt.Errorf("waiting for %s: events %v", held, got)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				t.Fatalf("the execution ended while held: %v", err)
			default:
			}
			wantRuns := 0
			if phase == PhaseVerify {
				wantRuns = 1
			}
			if got := sys.runCount(2); got != wantRuns {
				t.Fatalf("held after %s, step 2 ran %d times", phase, got)
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("held execution interrupted: %v", err)
			}
			t.Setenv(HoldEnv, "")
			st, err := Execute(context.Background(), p, sys.handlers(), path, nil)
			if err != nil || !st.Finished {
				t.Fatalf("re-run: %v %+v", err, st)
			}
		})
	}
}
