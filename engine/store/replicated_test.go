package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// refuseGate refuses writes with err and reads with readErr (nil: reads allowed).
type refuseGate struct{ err, readErr error }

func (g refuseGate) BeginWrite(context.Context, string) (func(), error) { return func() {}, g.err }
func (g refuseGate) BeginRead(context.Context, string) error            { return g.readErr }

// TestMirroredDatabases covers what a mirror needs from the store: a primary-style create with a journal marker, a
// replica-style create at a given position, replicated applies with per-partition positions, and write gating.
// openJournals opens a local journal and a mirror journal in dir, closed at cleanup.
func openJournals(t *testing.T, dir string) (local, mj *journal.Journal, log zerolog.Logger) {
	t.Helper()
	log = zerolog.New(zerolog.NewTestWriter(t))
	var err error
	if local, err = journal.Open(filepath.Join(dir, "journal"), journal.Options{Logger: log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	if mj, err = journal.Open(filepath.Join(dir, "mirror"), journal.Options{Logger: log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mj.Close() })
	return local, mj, log
}

func TestMirroredDatabases(t *testing.T) {
	dir := t.TempDir()
	local, mj, log := openJournals(t, dir)
	s, err := Open(Options{Dir: dir, Journal: local, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	if _, err := s.CreateWith("M1", CreateOptions{Mirror: "MIR", Marker: true}); err == nil {
		t.Fatal("create in a mirror that is not attached succeeded")
	}
	s.AttachMirror("MIR", Attachment{Journal: mj})
	info, err := s.CreateWith("M1", CreateOptions{Mirror: "MIR", Marker: true})
	if err != nil {
		t.Fatal(err)
	}
	var marker journal.Record
	journal.Dump(vfs.Default, filepath.Join(dir, "mirror"), journal.Position{}, func(r journal.Record) error {
		marker = r
		return nil
	})
	if marker.Type != journal.RecordMarker || marker.DB != "M1" || string(marker.Key) != MarkerCreate || info.Applied.IsZero() {
		t.Fatalf("marker %+v, applied %s", marker, info.Applied)
	}
	set(t, s, "M1", `^P(1)`, "primary write")
	if local.AppendedEnd() != local.FirstPosition() {
		t.Fatal("a mirrored database wrote to the local journal")
	}

	// A replica-style copy: created at a position, written only by replicated applies.
	start := journal.Position{Epoch: 1, Segment: 1, Offset: 100}
	if _, err := s.CreateWith("R1", CreateOptions{Mirror: "MIR", Start: start}); err != nil {
		t.Fatal(err)
	}
	d, _ := s.Database("R1")
	end1 := journal.Position{Epoch: 1, Segment: 1, Offset: 200}
	if err := d.ApplyReplicated([]journal.Record{{Type: journal.RecordSet, Key: key(t, `^R(1)`), Value: []byte("a")}, {Type: journal.RecordSet, Key: key(t, `^S`), Value: []byte("b")}}, end1, []int{3, 7}); err != nil {
		t.Fatal(err)
	}
	base, parts := d.AppliedPositions()
	if base != start || parts[3] != end1 || parts[7] != end1 || d.Applied() != start {
		t.Fatalf("after apply: base %s parts[3] %s lowest %s", base, parts[3], d.Applied())
	}
	end2 := journal.Position{Epoch: 1, Segment: 1, Offset: 300}
	if err := d.AdvanceApplied(end2); err != nil {
		t.Fatal(err)
	}
	if d.Applied() != end2 {
		t.Fatalf("lowest applied %s, want the new base %s", d.Applied(), end2)
	}
	if v, _ := getv(t, s, "R1", `^R(1)`); v != "a" {
		t.Fatalf("replicated value %q", v)
	}

	// The gate decides about writes; reads still work.
	s.AttachMirror("MIR", Attachment{Journal: mj, Gate: refuseGate{err: &wire.Error{Code: wire.CodeNotPrimary, Message: "not primary", Redirect: "127.0.0.9:1"}}})
	_, _, err = s.Exec(context.Background(), "R1", []wire.Op{{Kind: wire.OpSet, Key: key(t, `^R(2)`), Value: []byte("x")}})
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeNotPrimary || we.Redirect != "127.0.0.9:1" {
		t.Fatalf("gated write: %v", err)
	}
	if v, ok := getv(t, s, "R1", `^S`); !ok || v != "b" {
		t.Fatal("read refused on a gated database")
	}
	notPrimary := &wire.Error{Code: wire.CodeNotPrimary, Message: "backup", Redirect: "127.0.0.9:1"}
	s.AttachMirror("MIR", Attachment{Journal: mj, Gate: refuseGate{err: notPrimary, readErr: notPrimary}})
	if _, _, err := s.Exec(context.Background(), "R1", []wire.Op{{Kind: wire.OpGet, Key: key(t, `^S`)}}); !errors.As(err, &we) || we.Code != wire.CodeNotPrimary {
		t.Fatalf("read through a gate that refuses reads: %v", err)
	}

	// Partition positions survive a reopen.
	s.Close()
	s2, err := Open(Options{Dir: dir, Journal: local, Logger: log, Mirrors: map[string]Attachment{"MIR": {Journal: mj}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	d2, _ := s2.Database("R1")
	if _, parts := d2.AppliedPositions(); parts[7] != end1 || d2.Applied() != end2 {
		t.Fatalf("after reopen: parts[7] %s, lowest %s", parts[7], d2.Applied())
	}
}

// TestRollBack undoes a divergent tail with before-images, newest first, and moves applied positions back; the result
// survives a reopen.
func TestRollBack(t *testing.T) {
	dir := t.TempDir()
	local, mj, log := openJournals(t, dir)
	att := map[string]Attachment{"MIR": {Journal: mj}}
	s, err := Open(Options{Dir: dir, Journal: local, Logger: log, Mirrors: att})
	if err != nil {
		t.Fatal(err)
	}
	start := journal.Position{Epoch: 1, Segment: 1, Offset: 100}
	if _, err := s.CreateWith("R", CreateOptions{Mirror: "MIR", Start: start}); err != nil {
		t.Fatal(err)
	}
	d, _ := s.Database("R")
	pos := func(off uint64) journal.Position { return journal.Position{Epoch: 1, Segment: 1, Offset: off} }
	apply := func(end uint64, recs ...journal.Record) {
		t.Helper()
		if err := d.ApplyReplicated(recs, pos(end), []int{0, 1}); err != nil {
			t.Fatal(err)
		}
	}
	kept := journal.Record{Type: journal.RecordSet, Key: key(t, `^K`), Value: []byte("old"), HasValue: true}
	apply(200, kept)
	fork := pos(200)
	tail := []journal.Record{
		{Pos: pos(200), Type: journal.RecordSet, Key: key(t, `^K`), Value: []byte("new"), HasValue: true, Before: []byte("old"), HasBefore: true},
		{Pos: pos(250), Type: journal.RecordSet, Key: key(t, `^N`), Value: []byte("x"), HasValue: true},
		{Pos: pos(300), Type: journal.RecordSet, Key: key(t, `^K`), Value: []byte("newer"), HasValue: true, Before: []byte("new"), HasBefore: true},
		{Pos: pos(350), Type: journal.RecordKill, Key: key(t, `^N`), Before: []byte("x"), HasBefore: true},
	}
	apply(300, tail[0], tail[1], tail[2]) // the last record was never applied
	if err := d.RollBack(tail, fork); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store) {
		t.Helper()
		if v, ok := getv(t, s, "R", `^K`); !ok || v != "old" {
			t.Fatalf("^K = %q %v after the rollback, want old", v, ok)
		}
		if _, ok := getv(t, s, "R", `^N`); ok {
			t.Fatal("^N exists after the rollback of its creation")
		}
		d, _ := s.Database("R")
		base, parts := d.AppliedPositions()
		if fork.Less(base) || fork.Less(parts[0]) || fork.Less(parts[1]) {
			t.Fatalf("applied positions after the rollback: base %s, parts %s %s; want none beyond %s", base, parts[0], parts[1], fork)
		}
	}
	check(s)
	s.Close()
	s2, err := Open(Options{Dir: dir, Journal: local, Logger: log, Mirrors: att})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	check(s2)
}
