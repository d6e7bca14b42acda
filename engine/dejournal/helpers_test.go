package dejournal

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// fakeTarget is an in-memory database that records every call, checks that no two calls touching one partition overlap, and
// can be made to fail.
type fakeTarget struct {
	name string

	mu      sync.Mutex
	data    map[string]string
	base    journal.Position
	parts   [Partitions]journal.Position
	batches [][]journal.Position          // positions of the records of each ApplyReplicated call
	applied map[journal.Position]int      // how often each record was applied
	order   map[string][]journal.Position // per global, positions in the order they were applied
	busy    [Partitions]bool              // partitions with a call in progress
	errs    []string                      // violations seen
	fail    func(recs []journal.Record) error
	onApply func(n int) // called after each successful ApplyReplicated with the number of calls so far
	advance int         // AdvanceApplied calls
}

var _ Target = (*fakeTarget)(nil)

func newFake(name string) *fakeTarget {
	return &fakeTarget{name: name, data: map[string]string{}, applied: map[journal.Position]int{}, order: map[string][]journal.Position{}}
}

func (f *fakeTarget) Name() string { return f.name }

func (f *fakeTarget) ApplyReplicated(recs []journal.Record, end journal.Position, partitions []int) error {
	f.mu.Lock()
	for _, p := range partitions {
		if f.busy[p] {
			f.errs = append(f.errs, fmt.Sprintf("partition %d applied concurrently at %s", p, end))
		}
		f.busy[p] = true
	}
	fail := f.fail
	f.mu.Unlock()
	var err error
	if fail != nil {
		err = fail(recs)
	}
	f.mu.Lock()
	for _, p := range partitions {
		f.busy[p] = false
	}
	if err != nil {
		f.mu.Unlock()
		return err
	}
	var positions []journal.Position
	for _, rec := range recs {
		if rec.DB != f.name {
			f.errs = append(f.errs, fmt.Sprintf("record %s for %s applied to %s", rec.Pos, rec.DB, f.name))
		}
		if p := Partition(f.name, rec.Key); !slices.Contains(partitions, p) {
			f.errs = append(f.errs, fmt.Sprintf("record %s in partition %d not listed in %v", rec.Pos, p, partitions))
		}
		switch rec.Type {
		case journal.RecordSet:
			f.data[string(rec.Key)] = string(rec.Value)
		case journal.RecordKill:
			delete(f.data, string(rec.Key))
		}
		positions = append(positions, rec.Pos)
		f.applied[rec.Pos]++
		g := globalOf(rec.Key)
		f.order[g] = append(f.order[g], rec.Pos)
	}
	for _, p := range partitions {
		f.parts[p] = end
	}
	f.batches = append(f.batches, positions)
	n, hook := len(f.batches), f.onApply
	f.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return nil
}

func (f *fakeTarget) AdvanceApplied(pos journal.Position) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.base = pos
	f.advance++
	return nil
}

func (f *fakeTarget) AppliedPositions() (journal.Position, [Partitions]journal.Position) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.base, f.parts
}

func (f *fakeTarget) setFail(fn func(recs []journal.Record) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fn
}

func (f *fakeTarget) snapshot() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.data)
}

func (f *fakeTarget) applyCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.batches)
}

// appliedAfter reports whether a record at or after pos was applied.
func (f *fakeTarget) appliedAfter(pos journal.Position) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p := range f.applied {
		if !posLess(p, pos) {
			return true
		}
	}
	return false
}

// effectiveLowest is the lowest effective position the fake has recorded.
func (f *fakeTarget) effectiveLowest() journal.Position {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := entry{base: f.base, parts: f.parts}
	return e.lowest()
}

func globalOf(key []byte) string {
	for i, b := range key {
		if b == 0 {
			return string(key[:i])
		}
	}
	return string(key)
}

// checkFake fails the test on any violation the fake saw, and on any record applied more than once.
func checkFake(tb testing.TB, f *fakeTarget) {
	tb.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.errs {
		tb.Errorf("%s: %s", f.name, e)
	}
	for pos, n := range f.applied {
		if n != 1 {
			tb.Errorf("%s: record %s applied %d times", f.name, pos, n)
		}
	}
}

// workload commits random transactions to a journal and keeps the sequential reference of what they do.
type workload struct {
	tb   testing.TB
	j    *journal.Journal
	rng  *rand.Rand
	dbs  []string
	txns [][]journal.Record // committed transactions, in journal order, with positions
	live map[string]map[string]bool
}

func newWorkload(tb testing.TB, j *journal.Journal, seed uint64, dbs ...string) *workload {
	tb.Helper()
	w := &workload{tb: tb, j: j, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), dbs: dbs, live: map[string]map[string]bool{}}
	for _, db := range dbs {
		w.live[db] = map[string]bool{}
	}
	return w
}

func testKey(tb testing.TB, global, sub string) []byte {
	tb.Helper()
	key, err := globals.Encode(globals.Ref{Name: global, Subs: []globals.Subscript{globals.Str(sub)}})
	if err != nil {
		tb.Fatalf("encode key: %v", err)
	}
	return key
}

// commitRandom commits n random transactions of 1 to 6 records over the workload's databases and globals g0..g11, some
// with markers or no-ops mixed in.
func (w *workload) commitRandom(n int) journal.Position {
	w.tb.Helper()
	var end journal.Position
	for range n {
		size := 1 + w.rng.IntN(6)
		recs := make([]journal.Record, 0, size+1)
		for range size {
			db := w.dbs[w.rng.IntN(len(w.dbs))]
			key := testKey(w.tb, fmt.Sprintf("g%d", w.rng.IntN(12)), fmt.Sprintf("s%d", w.rng.IntN(8)))
			if w.live[db][string(key)] && w.rng.IntN(4) == 0 {
				recs = append(recs, journal.Record{Type: journal.RecordKill, DB: db, Key: key})
				continue
			}
			recs = append(recs, journal.Record{Type: journal.RecordSet, DB: db, Key: key, Value: fmt.Appendf(nil, "v%d", w.rng.Uint32()), HasValue: true})
		}
		if w.rng.IntN(10) == 0 {
			recs = append(recs, journal.Record{Type: journal.RecordMarker, DB: w.dbs[0], Key: []byte("marker")})
		}
		end = w.commit(recs...)
		if w.rng.IntN(20) == 0 {
			end = w.commit(journal.Record{Type: journal.RecordNoop})
		}
	}
	return end
}

// commit commits recs as one transaction.
func (w *workload) commit(recs ...journal.Record) journal.Position {
	w.tb.Helper()
	recs[len(recs)-1].TxnEnd = true
	end, err := w.j.Commit(context.Background(), recs)
	if err != nil {
		w.tb.Fatalf("commit: %v", err)
	}
	for _, rec := range recs {
		switch rec.Type {
		case journal.RecordSet:
			w.live[rec.DB][string(rec.Key)] = true
		case journal.RecordKill:
			delete(w.live[rec.DB], string(rec.Key))
		}
	}
	w.txns = append(w.txns, recs)
	return end
}

// reference applies every committed transaction sequentially and returns the contents of db.
func (w *workload) reference(db string) map[string]string {
	return w.referenceFrom(db, journal.Position{})
}

// referenceFrom is reference for a database that starts, empty, at position from.
func (w *workload) referenceFrom(db string, from journal.Position) map[string]string {
	out := map[string]string{}
	for _, txn := range w.txns {
		if posLess(txn[0].Pos, from) {
			continue
		}
		for _, rec := range txn {
			if rec.DB != db {
				continue
			}
			switch rec.Type {
			case journal.RecordSet:
				out[string(rec.Key)] = string(rec.Value)
			case journal.RecordKill:
				delete(out, string(rec.Key))
			}
		}
	}
	return out
}

// checkAgainstReference checks a fake after a complete run: its contents equal the sequential reference, every batch is
// the whole share of one transaction, and every global's records were applied in journal order, each exactly once.
func (w *workload) checkAgainstReference(f *fakeTarget) {
	w.tb.Helper()
	w.checkFrom(f, journal.Position{})
}

// checkFrom is checkAgainstReference for a database that starts, empty, at position from.
func (w *workload) checkFrom(f *fakeTarget, from journal.Position) {
	w.tb.Helper()
	checkFake(w.tb, f)
	if got, want := f.snapshot(), w.referenceFrom(f.name, from); !maps.Equal(got, want) {
		w.tb.Errorf("%s: contents differ from the sequential reference: %d keys, want %d", f.name, len(got), len(want))
	}
	shares := map[journal.Position][]journal.Position{} // first record position → positions of the share
	order := map[string][]journal.Position{}
	for _, txn := range w.txns {
		if posLess(txn[0].Pos, from) {
			continue
		}
		var share []journal.Position
		for _, rec := range txn {
			if rec.DB == f.name && isData(&rec) {
				share = append(share, rec.Pos)
				g := globalOf(rec.Key)
				order[g] = append(order[g], rec.Pos)
			}
		}
		if len(share) > 0 {
			shares[share[0]] = share
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.batches {
		if want := shares[b[0]]; !slices.Equal(b, want) {
			w.tb.Errorf("%s: batch %v is not the whole share %v of a transaction", f.name, b, want)
		}
	}
	for g, want := range order {
		if got := f.order[g]; !slices.Equal(got, want) {
			w.tb.Errorf("%s: global %q applied in order %v, journal order %v", f.name, g, got, want)
		}
	}
}

func openJournal(tb testing.TB, dir string) *journal.Journal {
	tb.Helper()
	j, err := journal.Open(dir, journal.Options{SegmentSize: 32 << 10, Logger: zerolog.New(zerolog.NewTestWriter(tb))})
	if err != nil {
		tb.Fatalf("open journal: %v", err)
	}
	tb.Cleanup(func() { _ = j.Close() })
	return j
}

func newTest(tb testing.TB, src Source, opts Options, targets ...Target) *Dejournaler {
	tb.Helper()
	opts.Mirror = "MIR"
	opts.Source = src
	opts.Logger = zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.InfoLevel)
	d := New(opts)
	for _, t := range targets {
		d.AddTarget(t)
	}
	return d
}

// start runs d until the test ends (or the returned stop is called) and fails the test if Run returns an error.
func start(tb testing.TB, d *Dejournaler) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("run: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

// waitApplied waits for every target to apply everything before pos.
func waitApplied(tb testing.TB, d *Dejournaler, pos journal.Position) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.WaitApplied(ctx, pos); err != nil {
		tb.Fatalf("wait applied %s: %v", pos, err)
	}
}

// eventually polls cond until it holds, failing the test after a deadline.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// dbStatus returns the status of one database.
func dbStatus(tb testing.TB, d *Dejournaler, name string) DBStatus {
	tb.Helper()
	for _, s := range d.Status().Databases {
		if s.Name == name {
			return s
		}
	}
	tb.Fatalf("no status for database %s", name)
	return DBStatus{}
}

var errDiskFull = errors.New("disk full")
