package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// mirroredStore opens a store in a new directory with mirror MIR attached, closed when the test ends.
func mirroredStore(t *testing.T) *Store {
	t.Helper()
	dir := t.TempDir()
	local, mj, log := openJournals(t, dir)
	s, err := Open(Options{Dir: dir, Journal: local, Logger: log, Mirrors: map[string]Attachment{"MIR": {Journal: mj}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestInspectAndHashCheckpoint checks that a checkpoint read from its directory alone reports what the mounted database
// reported: its identity, its lowest applied position (partitions included) and its logical hash.
func TestInspectAndHashCheckpoint(t *testing.T) {
	s := mirroredStore(t)

	if _, err := s.Create("L"); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		set(t, s, "L", fmt.Sprintf(`^G(%d,"x")`, i), fmt.Sprintf("value %d", i))
	}
	// A replicated database whose lowest applied position is one partition's, above the base.
	pos := func(off uint64) journal.Position { return journal.Position{Epoch: 2, Segment: 3, Offset: off} }
	if _, err := s.CreateWith("R", CreateOptions{Mirror: "MIR", Start: pos(100)}); err != nil {
		t.Fatal(err)
	}
	d, _ := s.Database("R")
	var others []int
	for p := range Partitions {
		if p != 5 {
			others = append(others, p)
		}
	}
	if err := d.ApplyReplicated([]journal.Record{{Type: journal.RecordSet, Key: key(t, `^R(1)`), Value: []byte("a")}}, pos(200), []int{5}); err != nil {
		t.Fatal(err)
	}
	if err := d.ApplyReplicated([]journal.Record{{Type: journal.RecordSet, Key: key(t, `^R(2)`), Value: []byte("b")}}, pos(300), others); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		db          string
		wantApplied journal.Position
	}{
		{db: "L"},
		{db: "R", wantApplied: pos(200)},
	} {
		t.Run(tc.db, func(t *testing.T) {
			cp, err := s.Checkpoint(tc.db, filepath.Join(t.TempDir(), "cp"))
			if err != nil {
				t.Fatal(err)
			}
			want, err := s.Hash(tc.db)
			if err != nil {
				t.Fatal(err)
			}
			info, err := InspectDir(cp.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if info.Name != tc.db || info.Format != FormatVersion || info.Applied != cp.Applied || info.Incarnation == 0 {
				t.Fatalf("InspectDir = %+v, checkpoint %+v", info, cp)
			}
			if !tc.wantApplied.IsZero() && info.Applied != tc.wantApplied {
				t.Fatalf("applied %s, want the lowest partition's %s", info.Applied, tc.wantApplied)
			}
			got, err := HashDir(cp.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if got != want || got.Nodes == 0 {
				t.Fatalf("HashDir = %+v, Store.Hash = %+v", got, want)
			}
			// Inspecting twice gives the same answer: nothing was changed by the first look.
			if again, err := InspectDir(cp.Dir); err != nil || again != info {
				t.Fatalf("second InspectDir = %+v, %v", again, err)
			}
		})
	}
}

func TestInspectNotADatabase(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	// A Pebble store that is not one of our databases: it lacks the meta records.
	foreign := filepath.Join(base, "foreign")
	pdb, err := pebble.Open(foreign, &pebble.Options{FormatMajorVersion: pebbleFormat})
	if err != nil {
		t.Fatal(err)
	}
	if err := pdb.Set([]byte("k"), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := pdb.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir string
		notDB     bool
	}{
		{"missing", filepath.Join(base, "missing"), false},
		{"file", file, true},
		{"empty", empty, true},
		{"foreign", foreign, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := InspectDir(tc.dir); err == nil || errors.Is(err, ErrNotDatabase) != tc.notDB {
				t.Fatalf("InspectDir: %v", err)
			}
			if _, err := HashDir(tc.dir); err == nil || errors.Is(err, ErrNotDatabase) != tc.notDB {
				t.Fatalf("HashDir: %v", err)
			}
		})
	}
}

// A checkpoint whose table files were deleted under it (a snapshot released while it was being hashed) fails the
// inspection with an error; it never stops the process.
func TestHashDirWithMissingTables(t *testing.T) {
	s := mirroredStore(t)
	if _, err := s.Create("L"); err != nil {
		t.Fatal(err)
	}
	// Enough data for several table files, most of which opening the store and reading its meta records never touch.
	rng := rand.New(rand.NewPCG(1, 2))
	for b := range 40 {
		var ops []wire.Op
		for i := range 100 {
			v := make([]byte, 4096)
			for j := range v {
				v[j] = byte(rng.Uint32())
			}
			ops = append(ops, wire.Op{Kind: wire.OpSet, Key: key(t, fmt.Sprintf(`^G(%d)`, b*100+i)), Value: v})
		}
		if _, _, err := s.Exec(context.Background(), "L", ops); err != nil {
			t.Fatal(err)
		}
		if err := s.dbs["L"].pdb.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// Compacted into tables of separate key ranges: reading the meta records opens only the one that holds them.
	if err := s.dbs["L"].pdb.Compact(context.Background(), []byte{0}, bytes.Repeat([]byte{0xff}, 16), true); err != nil {
		t.Fatal(err)
	}
	cp, err := s.Checkpoint("L", filepath.Join(t.TempDir(), "cp"))
	if err != nil {
		t.Fatal(err)
	}
	tables, _ := filepath.Glob(filepath.Join(cp.Dir, "*.sst"))
	if len(tables) == 0 {
		t.Fatalf("the checkpoint has no table files to delete")
	}
	for _, f := range tables {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := HashDir(cp.Dir); err == nil {
		t.Fatal("HashDir of a checkpoint without its tables succeeded")
	}

	// Deleted while the store is open: Pebble finds a table it knows of missing and calls its logger's Fatalf.
	cp2, err := s.Checkpoint("L", filepath.Join(t.TempDir(), "cp"))
	if err != nil {
		t.Fatal(err)
	}
	err = withReadOnly(cp2.Dir, func(d *Database) error {
		tables, _ := filepath.Glob(filepath.Join(cp2.Dir, "*.sst"))
		for _, f := range tables {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
		h, err := logicalHash(d.name, d.pdb)
		t.Logf("deleted %d tables; hash %+v", len(tables), h)
		return err
	})
	if err == nil {
		t.Fatal("hashing a store whose tables were deleted under it succeeded")
	}
	t.Log(err)
}
