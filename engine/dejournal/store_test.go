package dejournal

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

var _ Target = (*store.Database)(nil)

// openStore opens a member's store in dir with mj attached as the journal of mirror MIR.
func openStore(tb testing.TB, dir string, local, mj *journal.Journal) *store.Store {
	tb.Helper()
	s, err := store.Open(store.Options{Dir: dir, Journal: local, Logger: zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel),
		Mirrors: map[string]store.Attachment{"MIR": {Journal: mj}}})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	return s
}

func storeTargets(tb testing.TB, s *store.Store, names ...string) []Target {
	tb.Helper()
	var out []Target
	for _, name := range names {
		db, err := s.Database(name)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, db)
	}
	return out
}

// storeContents reads every node of the workload's globals from a database.
func storeContents(tb testing.TB, s *store.Store, db string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	for g := range 12 {
		key, err := globals.Encode(globals.Ref{Name: fmt.Sprintf("g%d", g)})
		if err != nil {
			tb.Fatal(err)
		}
		res, _, err := s.Exec(context.Background(), db, []wire.Op{{Kind: wire.OpQuery, Key: key, Limit: store.MaxQueryLimit}})
		if err != nil {
			tb.Fatalf("query %s: %v", db, err)
		}
		for _, kv := range res[0].Pairs {
			out[string(kv.Key)] = string(kv.Value)
		}
	}
	return out
}

// TestStoreDatabases dejournals into real store databases, stops in the middle, reopens the store as after a restart and
// finishes: the databases equal the sequential reference and their recorded positions reach the journal end.
func TestStoreDatabases(t *testing.T) {
	dir := t.TempDir()
	log := zerolog.New(zerolog.NewTestWriter(t))
	local, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = local.Close() })
	mj := openJournal(t, filepath.Join(dir, "mirror"))
	s := openStore(t, filepath.Join(dir, "data"), local, mj)
	for _, name := range []string{"A", "B"} {
		if _, err := s.CreateWith(name, store.CreateOptions{Mirror: "MIR", Start: mj.AppendedEnd()}); err != nil {
			t.Fatal(err)
		}
	}
	w := newWorkload(t, mj, 21, "A", "B")
	w.commitRandom(600)

	// First run: stopped after some transactions.
	ctx, cancel := context.WithCancel(context.Background())
	targets := storeTargets(t, s, "A", "B")
	d := newTest(t, mj, Options{}, &countingTarget{Target: targets[0], after: 150, stop: cancel}, targets[1])
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := storeContents(t, s, "A"); maps.Equal(got, w.reference("A")) {
		t.Fatal("the first run applied everything before it was stopped")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart: the store comes back with the positions it recorded, and a new dejournaler finishes the job.
	s = openStore(t, filepath.Join(dir, "data"), local, mj)
	t.Cleanup(func() { _ = s.Close() })
	end := w.commitRandom(200)
	d = newTest(t, mj, Options{}, storeTargets(t, s, "A", "B")...)
	start(t, d)
	waitApplied(t, d, end)
	for _, name := range []string{"A", "B"} {
		if got, want := storeContents(t, s, name), w.reference(name); !maps.Equal(got, want) {
			t.Errorf("%s: %d keys, want %d as in the sequential reference", name, len(got), len(want))
		}
		eventually(t, name+" records the journal end as applied", func() bool { return dbStatus(t, d, name).Applied == end })
	}
}

// countingTarget cancels a run after a number of applies.
type countingTarget struct {
	Target
	after int
	stop  context.CancelFunc

	mu sync.Mutex
	n  int
}

func (c *countingTarget) ApplyReplicated(recs []journal.Record, end journal.Position, partitions []int) error {
	err := c.Target.ApplyReplicated(recs, end, partitions)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n++; c.n == c.after {
		c.stop()
	}
	return err
}
