package dejournal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

func TestPartition(t *testing.T) {
	// The values are part of the on-disk meaning of per-partition applied positions: they must never change.
	tests := []struct {
		db   string
		key  []byte
		want int
	}{
		{"A", []byte("g\x00\x20x\x00\x01"), Partition("A", []byte("g"))},
		{"A", []byte("g"), 9},
		{"A", []byte("h"), 4},
		{"ORDERS", []byte("Customer\x00\x20abc\x00\x01"), 4},
		{"", nil, 15},
	}
	for _, tt := range tests {
		if got := Partition(tt.db, tt.key); got != tt.want {
			t.Errorf("Partition(%q, %q) = %d, want %d", tt.db, tt.key, got, tt.want)
		}
	}
	var seen [Partitions]bool
	for i := range 200 {
		seen[Partition("A", fmt.Appendf(nil, "g%d", i))] = true
	}
	for p, ok := range seen {
		if !ok {
			t.Errorf("no global of 200 falls in partition %d", p)
		}
	}
}

func TestApplyMatchesSequentialReference(t *testing.T) {
	tests := []struct {
		name    string
		workers int
		live    bool // commit while dejournaling runs, rather than before
	}{
		{"preloaded/16 workers", 16, false},
		{"live/16 workers", 16, true},
		{"live/3 workers", 3, true},
		{"preloaded/1 worker", 1, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := openJournal(t, t.TempDir())
			w := newWorkload(t, j, uint64(i+1), "A", "B", "C")
			fakes := []*fakeTarget{newFake("A"), newFake("B"), newFake("C")}
			d := newTest(t, j, Options{Workers: tt.workers}, fakes[0], fakes[1], fakes[2])
			var end journal.Position
			if !tt.live {
				end = w.commitRandom(1500)
			}
			stop := start(t, d)
			if tt.live {
				end = w.commitRandom(1500)
			}
			waitApplied(t, d, end)
			stop()
			for _, f := range fakes {
				w.checkAgainstReference(f)
			}
			if len(j.Segments()) < 3 {
				t.Errorf("the workload spans %d segments; want several so that segment rolls are crossed", len(j.Segments()))
			}
		})
	}
}

func TestRecordsIdlePartitionsWhenCaughtUp(t *testing.T) {
	j := openJournal(t, t.TempDir())
	w := newWorkload(t, j, 7, "A")
	a := newFake("A")
	d := newTest(t, j, Options{}, a)
	start(t, d)
	// One global only: every other partition sees no traffic and must still reach the end.
	var end journal.Position
	for i := range 20 {
		end = w.commit(journal.Record{Type: journal.RecordSet, DB: "A", Key: testKey(t, "only", fmt.Sprint(i)), Value: []byte("v"), HasValue: true})
	}
	end = w.commit(journal.Record{Type: journal.RecordNoop})
	waitApplied(t, d, end)
	eventually(t, "A records the journal end as its lowest applied position", func() bool {
		return a.effectiveLowest() == end && dbStatus(t, d, "A").Applied == end
	})
	st := d.Status()
	if st.Received != end || st.LastAppliedTime.IsZero() || st.LastAppliedTime.Before(st.LastReceivedTime) {
		t.Errorf("status %+v: want received %s and everything applied", st, end)
	}
}

// TestCrashRestart stops dejournaling at random points and starts a new Dejournaler over the same targets and journal:
// the result equals the reference and, since the fakes record positions atomically with data, no record is applied twice.
func TestCrashRestart(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			j := openJournal(t, t.TempDir())
			w := newWorkload(t, j, 100+seed, "A", "B", "C")
			fakes := []*fakeTarget{newFake("A"), newFake("B"), newFake("C")}
			end := w.commitRandom(800)
			for round := range 4 {
				ctx, cancel := context.WithCancel(context.Background())
				limit := 1 + w.rng.IntN(300)
				var once sync.Once
				for _, f := range fakes {
					f.onApply = func(n int) {
						if n >= limit {
							once.Do(cancel)
						}
					}
				}
				d := newTest(t, j, Options{}, fakes[0], fakes[1], fakes[2])
				if round == 3 {
					for _, f := range fakes {
						f.onApply = nil
					}
				}
				done := make(chan error, 1)
				go func() { done <- d.Run(ctx) }()
				if round < 3 {
					if err := <-done; err != nil {
						t.Fatalf("run: %v", err)
					}
					cancel()
					continue
				}
				waitApplied(t, d, end)
				cancel()
				if err := <-done; err != nil {
					t.Fatalf("run: %v", err)
				}
			}
			for _, f := range fakes {
				w.checkAgainstReference(f)
			}
		})
	}
}

func TestPauseResumeDatabase(t *testing.T) {
	j := openJournal(t, t.TempDir())
	w := newWorkload(t, j, 11, "A", "B", "C")
	fakes := []*fakeTarget{newFake("A"), newFake("B"), newFake("C")}
	d := newTest(t, j, Options{}, fakes[0], fakes[1], fakes[2])
	start(t, d)
	end := w.commitRandom(200)
	waitApplied(t, d, end)

	if err := d.Pause("B"); err != nil {
		t.Fatal(err)
	}
	end = w.commitRandom(300)
	if err := d.WaitApplied(context.Background(), end); !errors.Is(err, ErrPaused) || !strings.Contains(err.Error(), "database B") {
		t.Fatalf("wait applied with B paused: %v, want ErrPaused naming B", err)
	}
	waitOthers(t, d, end, "A", "C")
	if fakes[1].appliedAfter(w.txns[len(w.txns)-300][0].Pos) {
		t.Error("B applied records while paused")
	}
	if s := dbStatus(t, d, "B"); !s.Paused || s.Err != "" {
		t.Errorf("B status %+v: want paused without error", s)
	}

	if err := d.Resume("B"); err != nil {
		t.Fatal(err)
	}
	end = w.commitRandom(100)
	waitApplied(t, d, end)
	for _, f := range fakes {
		w.checkAgainstReference(f)
	}

	for _, call := range []func(string) error{d.Pause, d.Resume} {
		if err := call("NOPE"); !errors.Is(err, ErrUnknownDatabase) || !strings.Contains(err.Error(), "NOPE") {
			t.Errorf("unknown database: %v, want ErrUnknownDatabase naming it", err)
		}
	}
}

// waitOthers waits until the named databases have applied everything before pos.
func waitOthers(tb testing.TB, d *Dejournaler, pos journal.Position, dbs ...string) {
	tb.Helper()
	eventually(tb, fmt.Sprintf("%v apply up to %s", dbs, pos), func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, db := range dbs {
			if posLess(d.coveredLocked(d.targets[db]), pos) {
				return false
			}
		}
		return true
	})
}

func TestApplyErrorPausesDatabase(t *testing.T) {
	j := openJournal(t, t.TempDir())
	w := newWorkload(t, j, 12, "A", "B", "C")
	fakes := []*fakeTarget{newFake("A"), newFake("B"), newFake("C")}
	d := newTest(t, j, Options{}, fakes[0], fakes[1], fakes[2])
	start(t, d)
	end := w.commitRandom(100)
	waitApplied(t, d, end)

	fakes[1].setFail(func([]journal.Record) error { return errDiskFull })
	end = w.commitRandom(300)
	waitOthers(t, d, end, "A", "C")
	eventually(t, "B is paused by the error", func() bool { return dbStatus(t, d, "B").Paused })
	s := dbStatus(t, d, "B")
	if !strings.Contains(s.Err, "disk full") || !strings.Contains(s.Err, "database B") {
		t.Errorf("B error %q: want the apply error naming B", s.Err)
	}
	if st := d.Status(); st.Stopped || st.Err != "" {
		t.Errorf("mirror status %+v: a database error must not stop the mirror on a backup", st)
	}
	if err := d.WaitApplied(context.Background(), end); !errors.Is(err, ErrPaused) || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("wait applied: %v, want ErrPaused with the error", err)
	}

	fakes[1].setFail(nil)
	if err := d.Resume("B"); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, d, end)
	if s := dbStatus(t, d, "B"); s.Paused || s.Err != "" {
		t.Errorf("B status after resume %+v", s)
	}
	for _, f := range fakes {
		w.checkAgainstReference(f)
	}
}

func TestApplyErrorStopsMirror(t *testing.T) {
	j := openJournal(t, t.TempDir())
	w := newWorkload(t, j, 13, "A", "B", "C")
	fakes := []*fakeTarget{newFake("A"), newFake("B"), newFake("C")}
	d := newTest(t, j, Options{PauseMirrorOnError: true}, fakes[0], fakes[1], fakes[2])
	start(t, d)
	fakes[1].setFail(func([]journal.Record) error { return errDiskFull })
	end := w.commitRandom(300)
	eventually(t, "the mirror is stopped by the error", func() bool { return d.Status().Stopped })
	st := d.Status()
	if !strings.Contains(st.Err, "database B") || !strings.Contains(st.Err, "disk full") {
		t.Errorf("mirror error %q: want B's apply error", st.Err)
	}
	if err := d.WaitApplied(context.Background(), end); !errors.Is(err, ErrStopped) {
		t.Errorf("wait applied on a stopped mirror: %v, want ErrStopped", err)
	}
	counts := []int{fakes[0].applyCount(), fakes[2].applyCount()}
	more := w.commitRandom(50)
	if err := d.WaitApplied(context.Background(), more); !errors.Is(err, ErrStopped) {
		t.Errorf("wait applied: %v, want ErrStopped", err)
	}

	fakes[1].setFail(nil)
	d.ResumeAll()
	waitApplied(t, d, more)
	if st := d.Status(); st.Stopped || st.Err != "" {
		t.Errorf("status after resume %+v", st)
	}
	if fakes[0].applyCount() == counts[0] && fakes[2].applyCount() == counts[1] {
		t.Error("nothing applied after the mirror resumed")
	}
	for _, f := range fakes {
		w.checkAgainstReference(f)
	}
}

func TestPauseAllResumeAll(t *testing.T) {
	j := openJournal(t, t.TempDir())
	w := newWorkload(t, j, 14, "A", "B")
	fakes := []*fakeTarget{newFake("A"), newFake("B")}
	d := newTest(t, j, Options{}, fakes[0], fakes[1])
	start(t, d)
	end := w.commitRandom(100)
	waitApplied(t, d, end)

	d.PauseAll()
	// A database paused on its own stays paused across the mirror's resumption.
	if err := d.Pause("B"); err != nil {
		t.Fatal(err)
	}
	if st := d.Status(); !st.Stopped || st.Err != "" {
		t.Errorf("status %+v: want stopped without error", st)
	}
	w.commitRandom(200)
	if err := d.WaitApplied(context.Background(), end); !errors.Is(err, ErrStopped) {
		t.Errorf("wait applied: %v, want ErrStopped", err)
	}
	d.ResumeAll()
	end = w.commitRandom(50)
	waitOthers(t, d, end, "A")
	if err := d.Resume("B"); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, d, end)
	for _, f := range fakes {
		w.checkAgainstReference(f)
	}
}

func TestAddRemoveTargetWhileRunning(t *testing.T) {
	j := openJournal(t, t.TempDir())
	w := newWorkload(t, j, 15, "A", "B", "C", "D")
	a, b, c, dd := newFake("A"), newFake("B"), newFake("C"), newFake("D")
	d := newTest(t, j, Options{}, a, c)
	start(t, d)
	end := w.commitRandom(400)
	waitApplied(t, d, end)

	// B has applied nothing: it catches up from the start of the journal while A and C keep going.
	d.AddTarget(b)
	end = w.commitRandom(400)
	waitApplied(t, d, end)

	// D starts at the current end: it must apply only what comes after.
	from := j.DurableEnd()
	dd.base = from
	d.AddTarget(dd)
	d.RemoveTarget("C")
	removedAt := c.applyCount()
	end = w.commitRandom(300)
	waitApplied(t, d, end)
	if c.applyCount() != removedAt {
		t.Error("C was applied to after RemoveTarget returned")
	}
	for _, f := range []*fakeTarget{a, b} {
		w.checkAgainstReference(f)
	}
	w.checkFrom(dd, from)
	eventually(t, "D records the end as applied", func() bool { return dd.effectiveLowest() == end })
	var names []string
	for _, s := range d.Status().Databases {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "A,B,D" {
		t.Errorf("status lists %v, want A, B, D", names)
	}
}

func TestWaitApplied(t *testing.T) {
	j := openJournal(t, t.TempDir())
	w := newWorkload(t, j, 16, "A")
	a := newFake("A")
	d := newTest(t, j, Options{}, a)
	end := w.commitRandom(50)

	// Not running: nothing moves, and the wait ends with the context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.WaitApplied(ctx, end); !errors.Is(err, context.Canceled) {
		t.Errorf("wait applied with a done context: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- d.WaitApplied(context.Background(), end) }()
	start(t, d)
	if err := <-waited; err != nil {
		t.Errorf("wait applied: %v", err)
	}
	checkFake(t, a)
	if got, want := len(a.snapshot()), len(w.reference("A")); got != want {
		t.Errorf("A holds %d keys after WaitApplied, want %d", got, want)
	}
}

func TestCatchUpDoesNotHoldBackOthers(t *testing.T) {
	j := openJournal(t, t.TempDir())
	w := newWorkload(t, j, 17, "A", "B")
	a, b := newFake("A"), newFake("B")
	d := newTest(t, j, Options{}, a)
	start(t, d)
	end := w.commitRandom(200)
	waitApplied(t, d, end)

	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	b.setFail(func([]journal.Record) error {
		once.Do(func() { close(entered) })
		<-release
		return nil
	})
	d.AddTarget(b)
	<-entered
	if s := dbStatus(t, d, "B"); !s.CatchingUp {
		t.Errorf("B status %+v: want catching up", s)
	}
	// A keeps being applied while B's catch-up is stuck in its first transaction.
	end = w.commitRandom(100)
	waitOthers(t, d, end, "A")
	close(release)
	waitApplied(t, d, end)
	eventually(t, "B is handed over and records the end as applied", func() bool {
		s := dbStatus(t, d, "B")
		return !s.CatchingUp && s.Applied == end
	})
	w.checkAgainstReference(a)
	w.checkAgainstReference(b)
}

func TestPurgedPositionPausesDatabase(t *testing.T) {
	j := openJournal(t, t.TempDir())
	w := newWorkload(t, j, 18, "A", "B", "C")
	w.commitRandom(600)
	if _, err := j.Purge(journal.PurgePolicy{KeepSegments: 1}, j.DurableEnd()); err != nil {
		t.Fatal(err)
	}
	if j.FirstPosition().Segment < 2 {
		t.Fatalf("nothing purged: first position %s", j.FirstPosition())
	}
	from := j.DurableEnd()
	a, b, c := newFake("A"), newFake("B"), newFake("C")
	a.base = from
	d := newTest(t, j, Options{}, a, b) // B needs the whole journal, which is gone
	start(t, d)
	end := w.commitRandom(100)
	waitOthers(t, d, end, "A")
	d.AddTarget(c) // so does C, added while running
	for _, db := range []string{"B", "C"} {
		eventually(t, db+" is paused", func() bool { return dbStatus(t, d, db).Paused })
		if s := dbStatus(t, d, db); !strings.Contains(s.Err, "purged") || !strings.Contains(s.Err, "take a newer backup") {
			t.Errorf("%s error %q: want the purge explained", db, s.Err)
		}
	}
	waitOthers(t, d, end, "A")
	w.checkFrom(a, from)
	if b.applyCount() != 0 || c.applyCount() != 0 {
		t.Error("a database whose journal is purged was applied to")
	}
}

func TestJournalFailureEndsRun(t *testing.T) {
	j := openJournal(t, t.TempDir())
	w := newWorkload(t, j, 19, "A")
	a := newFake("A")
	d := newTest(t, j, Options{}, a)
	end := w.commitRandom(20)
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	waitApplied(t, d, end)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, journal.ErrClosed) || !strings.Contains(err.Error(), "MIR") {
		t.Errorf("run after the journal closed: %v, want ErrClosed naming the mirror", err)
	}
	w.checkAgainstReference(a)
}

func TestReplaceTarget(t *testing.T) {
	j := openJournal(t, t.TempDir())
	w := newWorkload(t, j, 20, "A")
	old, repl := newFake("A"), newFake("A")
	d := newTest(t, j, Options{}, old)
	start(t, d)
	end := w.commitRandom(100)
	waitApplied(t, d, end)
	// A new copy of A (say, restored from an older backup) replaces the old one and catches up from its own position.
	d.AddTarget(repl)
	n := old.applyCount()
	end = w.commitRandom(100)
	waitApplied(t, d, end)
	if old.applyCount() != n {
		t.Error("the replaced target was applied to")
	}
	w.checkAgainstReference(repl)
}
