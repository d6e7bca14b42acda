package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// sourceStub stands where a shadowed copy expects its journal: the source's, which this member never appends to.
type sourceStub struct{}

var _ Journal = sourceStub{}

func (sourceStub) Append([]journal.Record) (journal.Position, error) {
	return journal.Position{}, errors.New("the source's journal is not written here")
}
func (sourceStub) WaitDurable(context.Context, journal.Position) error { return nil }
func (sourceStub) Sync() error                                         { return nil }
func (sourceStub) AppendedEnd() journal.Position                       { return journal.Position{} }
func (sourceStub) DurableEnd() journal.Position                        { return journal.Position{} }

// srcPos is a position of the (imaginary) source's local journal.
func srcPos(offset uint64) journal.Position {
	return journal.Position{Epoch: 1, Segment: 3, Offset: offset}
}

func setRec(t testing.TB, db, ref, v string) journal.Record {
	t.Helper()
	return journal.Record{Type: journal.RecordSet, DB: db, Key: key(t, ref), Value: []byte(v), HasValue: true, TxnEnd: true}
}

func markerRec(t testing.TB, db, keyName string, m ToMirror) journal.Record {
	t.Helper()
	v, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return journal.Record{Type: journal.RecordMarker, DB: db, Key: []byte(keyName), Value: v, HasValue: true, TxnEnd: true}
}

// shadowFixture is a destination store with a local journal, a mirror journal for MIR and shadow SH attached.
type shadowFixture struct {
	dir       string
	local, mj *journal.Journal
	s         *Store
	shadowAtt Attachment
}

func newShadowFixture(t testing.TB) *shadowFixture {
	t.Helper()
	f := &shadowFixture{dir: t.TempDir()}
	var err error
	log := zerologFor(t)
	if f.local, err = journal.Open(filepath.Join(f.dir, "journal"), journal.Options{Logger: log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.local.Close() })
	if f.mj, err = journal.Open(filepath.Join(f.dir, "mirror"), journal.Options{Logger: log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.mj.Close() })
	f.shadowAtt = Attachment{Journal: sourceStub{}, Local: f.local}
	f.open(t)
	return f
}

// open (re)opens the store the way a member does: the mirror and the shadow are attached.
func (f *shadowFixture) open(t testing.TB) {
	t.Helper()
	s, err := Open(Options{Dir: f.dir, Journal: f.local, Logger: zerologFor(t),
		Mirrors: map[string]Attachment{"MIR": {Journal: f.mj}, ShadowJournal("SH"): f.shadowAtt}})
	if err != nil {
		t.Fatal(err)
	}
	f.s = s
	t.Cleanup(func() { s.Close() })
}

// shadowed creates db with the given baseline data and attaches it to shadow SH at start.
func (f *shadowFixture) shadowed(t testing.TB, db string, start journal.Position, baseline map[string]string) *Database {
	t.Helper()
	if _, err := f.s.Create(db); err != nil {
		t.Fatal(err)
	}
	for ref, v := range baseline {
		set(t, f.s, db, ref, v)
	}
	if err := f.s.ShadowDatabase(db, "SH", start, f.shadowAtt); err != nil {
		t.Fatal(err)
	}
	d, err := f.s.Database(db)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func wantValue(t testing.TB, s *Store, db, ref, want string) {
	t.Helper()
	v, ok := getv(t, s, db, ref)
	if want == "" && ok {
		t.Fatalf("%s %s = %q, want no value", db, ref, v)
	}
	if want != "" && (!ok || v != want) {
		t.Fatalf("%s %s = %q (exists %v), want %q", db, ref, v, ok, want)
	}
}

// A shadowed copy applies the source's transactions from its checkpoint, moves the checkpoint with each, and skips what it
// has applied already (a stream resumed from a lower checkpoint resends it).
func TestShadowApplyMovesCheckpoint(t *testing.T) {
	f := newShadowFixture(t)
	start := srcPos(100)
	d := f.shadowed(t, "COPY", start, map[string]string{"^Base": "kept", "^K(9)": "old"})
	if d.Mirror() != ShadowJournal("SH") {
		t.Fatalf("journal of a shadowed copy: %q", d.Mirror())
	}
	if info := d.ShadowInfo(); info.Applied != start || info.Modified || info.ToMirror != nil {
		t.Fatalf("right after shadowing: %+v", info)
	}
	// Attaching again to the same shadow changes nothing; another shadow cannot take it.
	if err := f.s.ShadowDatabase("COPY", "SH", srcPos(999), f.shadowAtt); err != nil || d.ShadowInfo().Applied != start {
		t.Fatalf("shadowing twice: %v, checkpoint %s", err, d.ShadowInfo().Applied)
	}
	if err := f.s.ShadowDatabase("COPY", "OTHER", srcPos(100), f.shadowAtt); err == nil || !strings.Contains(err.Error(), "shadow SH") {
		t.Fatalf("a second shadow took the copy: %v", err)
	}

	txn1 := []journal.Record{setRec(t, "COPY", "^K(1)", "a"), setRec(t, "COPY", "^K(2)", "b"),
		{Type: journal.RecordKill, DB: "COPY", Key: key(t, "^K(9)"), TxnEnd: true}}
	if err := d.ApplyShadow("SH", txn1, srcPos(300)); err != nil {
		t.Fatal(err)
	}
	if got := d.ShadowInfo().Applied; got != srcPos(300) {
		t.Fatalf("checkpoint after a transaction: %s, want %s", got, srcPos(300))
	}
	wantValue(t, f.s, "COPY", "^K(1)", "a")
	wantValue(t, f.s, "COPY", "^K(2)", "b")
	wantValue(t, f.s, "COPY", "^K(9)", "")
	wantValue(t, f.s, "COPY", "^Base", "kept")

	// At and before the checkpoint: already applied, skipped.
	for _, end := range []journal.Position{srcPos(300), srcPos(200)} {
		if err := d.ApplyShadow("SH", []journal.Record{setRec(t, "COPY", "^K(1)", "again")}, end); err != nil {
			t.Fatal(err)
		}
		wantValue(t, f.s, "COPY", "^K(1)", "a")
		if got := d.ShadowInfo().Applied; got != srcPos(300) {
			t.Fatalf("a skipped transaction moved the checkpoint to %s", got)
		}
	}
	// A later segment is later, whatever its offset.
	next := journal.Position{Epoch: 1, Segment: 4, Offset: 40}
	if err := d.ApplyShadow("SH", []journal.Record{setRec(t, "COPY", "^K(1)", "c")}, next); err != nil {
		t.Fatal(err)
	}
	wantValue(t, f.s, "COPY", "^K(1)", "c")

	// Advancing moves forward only.
	if err := d.AdvanceShadow("SH", srcPos(500)); err != nil || d.ShadowInfo().Applied != next {
		t.Fatalf("advance backwards: %v, checkpoint %s", err, d.ShadowInfo().Applied)
	}
	later := journal.Position{Epoch: 1, Segment: 4, Offset: 900}
	if err := d.AdvanceShadow("SH", later); err != nil || d.ShadowInfo().Applied != later {
		t.Fatalf("advance: %v, checkpoint %s", err, d.ShadowInfo().Applied)
	}
	// Another shadow's applier is told the copy is not its own; nothing changes.
	if err := d.ApplyShadow("OTHER", []journal.Record{setRec(t, "COPY", "^K(1)", "x")}, journal.Position{Epoch: 1, Segment: 9, Offset: 1}); !errors.Is(err, ErrNotShadowed) {
		t.Fatalf("apply by another shadow: %v", err)
	}
	if err := d.AdvanceShadow("OTHER", journal.Position{Epoch: 1, Segment: 9, Offset: 1}); err != nil || d.ShadowInfo().Applied != later {
		t.Fatalf("advance by another shadow: %v, checkpoint %s", err, d.ShadowInfo().Applied)
	}
	wantValue(t, f.s, "COPY", "^K(1)", "c")
	// A local database is nobody's shadowed copy.
	if _, err := f.s.Create("PLAIN"); err != nil {
		t.Fatal(err)
	}
	plain, _ := f.s.Database("PLAIN")
	if err := plain.ApplyShadow("SH", []journal.Record{setRec(t, "PLAIN", "^X", "x")}, srcPos(1000)); !errors.Is(err, ErrNotShadowed) {
		t.Fatalf("apply to a local database: %v", err)
	}
	// A mirrored database cannot be shadowed.
	if _, err := f.s.CreateWith("MIRRORED", CreateOptions{Mirror: "MIR", Marker: true}); err != nil {
		t.Fatal(err)
	}
	if err := f.s.ShadowDatabase("MIRRORED", "SH", start, f.shadowAtt); err == nil || !strings.Contains(err.Error(), "mirror MIR") {
		t.Fatalf("shadowing a mirrored database: %v", err)
	}
}

// The source's to-mirror marker is remembered by the copy that applies it, survives further progress of the shadow (records
// of other databases, idle advances), and is forgotten as soon as a later record of the database itself arrives (the move
// did not complete). Markers of other kinds are not remembered.
func TestShadowToMirrorMarker(t *testing.T) {
	f := newShadowFixture(t)
	d := f.shadowed(t, "APP", srcPos(100), nil)
	to := ToMirror{Mirror: "MIR", Pos: journal.Position{Epoch: 1, Segment: 1, Offset: 4242}}
	if err := d.ApplyShadow("SH", []journal.Record{markerRec(t, "APP", MarkerAdd, to)}, srcPos(150)); err != nil {
		t.Fatal(err)
	}
	if info := d.ShadowInfo(); info.ToMirror != nil || info.Applied != srcPos(150) {
		t.Fatalf("after a marker of another kind: %+v", info)
	}
	if err := d.ApplyShadow("SH", []journal.Record{setRec(t, "APP", "^A", "1"), markerRec(t, "APP", MarkerToMirror, to)}, srcPos(200)); err != nil {
		t.Fatal(err)
	}
	info := d.ShadowInfo()
	if info.ToMirror == nil || *info.ToMirror != to || info.Applied != srcPos(200) {
		t.Fatalf("after the to-mirror marker: %+v", info)
	}
	// ShadowInfo hands out a copy.
	info.ToMirror.Mirror = "CHANGED"
	if got := d.ShadowInfo().ToMirror; got == nil || *got != to {
		t.Fatalf("changing a returned marker changed the copy's: %+v", got)
	}
	if err := d.AdvanceShadow("SH", srcPos(400)); err != nil {
		t.Fatal(err)
	}
	if got := d.ShadowInfo(); got.ToMirror == nil || *got.ToMirror != to || got.Applied != srcPos(400) {
		t.Fatalf("after an advance: %+v", got)
	}
	// A transaction at or before the checkpoint cannot forget it.
	if err := d.ApplyShadow("SH", []journal.Record{setRec(t, "APP", "^A", "old")}, srcPos(400)); err != nil {
		t.Fatal(err)
	}
	if d.ShadowInfo().ToMirror == nil {
		t.Fatal("a skipped transaction forgot the marker")
	}
	if err := d.ApplyShadow("SH", []journal.Record{setRec(t, "APP", "^A", "2")}, srcPos(500)); err != nil {
		t.Fatal(err)
	}
	if got := d.ShadowInfo(); got.ToMirror != nil {
		t.Fatalf("a later record of the database did not forget the marker: %+v", got)
	}
	// Within one transaction, what comes last wins.
	if err := d.ApplyShadow("SH", []journal.Record{markerRec(t, "APP", MarkerToMirror, to), setRec(t, "APP", "^A", "3")}, srcPos(600)); err != nil {
		t.Fatal(err)
	}
	if got := d.ShadowInfo(); got.ToMirror != nil {
		t.Fatalf("a record after the marker in the same transaction: %+v", got)
	}
	if err := d.ApplyShadow("SH", []journal.Record{{Type: journal.RecordKill, DB: "APP", Key: key(t, "^A"), TxnEnd: true}, markerRec(t, "APP", MarkerToMirror, to)}, srcPos(700)); err != nil {
		t.Fatal(err)
	}
	if got := d.ShadowInfo(); got.ToMirror == nil || *got.ToMirror != to {
		t.Fatalf("a marker after a kill: %+v", got)
	}
	// A damaged marker is an error, and nothing of its transaction is applied.
	bad := journal.Record{Type: journal.RecordMarker, DB: "APP", Key: []byte(MarkerToMirror), Value: []byte("{"), HasValue: true, TxnEnd: true}
	if err := d.ApplyShadow("SH", []journal.Record{setRec(t, "APP", "^A", "4"), bad}, srcPos(800)); err == nil {
		t.Fatal("a damaged marker was applied")
	}
	if got := d.ShadowInfo(); got.Applied != srcPos(700) || got.ToMirror == nil {
		t.Fatalf("after a damaged marker: %+v", got)
	}
	wantValue(t, f.s, "APP", "^A", "")
}

// This member's own writes to a shadowed copy go to its local journal and mark the copy modified; a modified copy cannot
// join a mirror in place. An unmodified one joins only at the position its marker names, for the mirror it names, and
// (when the primary's hash is known) only with the same content; it is then a copy of the mirrored database at that
// position, with its data, and no longer the shadow's.
func TestShadowJoinMirrorAt(t *testing.T) {
	f := newShadowFixture(t)
	to := ToMirror{Mirror: "MIR", Pos: journal.Position{Epoch: 1, Segment: 1, Offset: 777}}
	app := f.shadowed(t, "APP", srcPos(100), map[string]string{"^Base": "b"})
	mod := f.shadowed(t, "MOD", srcPos(100), nil)
	for _, d := range []*Database{app, mod} {
		if err := d.ApplyShadow("SH", []journal.Record{setRec(t, d.Name(), "^S", "from the source")}, srcPos(200)); err != nil {
			t.Fatal(err)
		}
	}

	// Writes that change nothing (a failed compare-and-set, a kill of a node that does not exist) are no local writes.
	noop := f.local.AppendedEnd()
	exec1(t, f.s, "APP", wire.Op{Kind: wire.OpCAS, Key: key(t, "^Base"), Expect: []byte("not b"), ExpectExists: true, Value: []byte("x")})
	exec1(t, f.s, "APP", wire.Op{Kind: wire.OpKill, Key: key(t, "^Nothing")})
	if info := app.ShadowInfo(); info.Modified || f.local.AppendedEnd() != noop {
		t.Fatalf("writes that changed nothing: %+v, local journal %s → %s", info, noop, f.local.AppendedEnd())
	}
	if v, ok := getv(t, f.s, "APP", "^Base"); !ok || v != "b" {
		t.Fatalf("^Base after a failed compare-and-set: %q %v", v, ok)
	}

	// A local write to MOD: in the local journal, not the shadow's; the copy is marked modified, its checkpoint unchanged.
	before := f.local.AppendedEnd()
	set(t, f.s, "MOD", "^Local", "mine")
	if !before.Less(f.local.DurableEnd()) {
		t.Fatal("a write to a shadowed copy did not go to the local journal")
	}
	var last journal.Record
	if err := journal.Dump(vfs.Default, filepath.Join(f.dir, "journal"), journal.Position{}, func(r journal.Record) error { last = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if last.DB != "MOD" || last.Type != journal.RecordSet {
		t.Fatalf("last local journal record: %+v", last)
	}
	if info := mod.ShadowInfo(); !info.Modified || info.Applied != srcPos(200) {
		t.Fatalf("after a local write: %+v", info)
	}
	if app.ShadowInfo().Modified {
		t.Fatal("a write to MOD marked APP modified")
	}

	// Neither has applied a marker yet.
	if _, err := f.s.JoinMirrorAt("APP", "SH", "MIR", to.Pos, nil); err == nil || !strings.Contains(err.Error(), "has not reached") {
		t.Fatalf("join before the marker: %v", err)
	}
	for _, d := range []*Database{app, mod} {
		if err := d.ApplyShadow("SH", []journal.Record{markerRec(t, d.Name(), MarkerToMirror, to)}, srcPos(300)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.s.JoinMirrorAt("MOD", "SH", "MIR", to.Pos, nil); err == nil || !strings.Contains(err.Error(), "written on this member") {
		t.Fatalf("join of a modified copy: %v", err)
	}
	if _, err := f.s.JoinMirrorAt("APP", "SH", "MIR", journal.Position{Epoch: 1, Segment: 1, Offset: 778}, nil); err == nil || !strings.Contains(err.Error(), "added it at") {
		t.Fatalf("join at another position: %v", err)
	}
	if _, err := f.s.JoinMirrorAt("APP", "SH", "NOTHERE", to.Pos, nil); err == nil || !strings.Contains(err.Error(), "not active") {
		t.Fatalf("join of a mirror that is not attached: %v", err)
	}
	f.s.AttachMirror("OTHER", Attachment{Journal: f.mj})
	if _, err := f.s.JoinMirrorAt("APP", "SH", "OTHER", to.Pos, nil); err == nil || !strings.Contains(err.Error(), "has not reached") {
		t.Fatalf("join of another mirror than the marker's: %v", err)
	}
	if _, err := f.s.JoinMirrorAt("APP", "WRONG", "MIR", to.Pos, nil); err == nil || !strings.Contains(err.Error(), "not shadow WRONG") {
		t.Fatalf("join through another shadow: %v", err)
	}
	want, err := f.s.Hash("APP")
	if err != nil {
		t.Fatal(err)
	}
	differs := want
	differs.Nodes++
	if _, err := f.s.JoinMirrorAt("APP", "SH", "MIR", to.Pos, &differs); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("join of a copy whose hash differs from the primary's: %v", err)
	}
	if info, _ := f.s.Get("APP"); info.Mirror != ShadowJournal("SH") {
		t.Fatalf("a refused join moved the copy to %q", info.Mirror)
	}

	h, err := f.s.JoinMirrorAt("APP", "SH", "MIR", to.Pos, &want)
	if err != nil {
		t.Fatal(err)
	}
	if h != want {
		t.Fatalf("join returned hash %+v, want %+v", h, want)
	}
	info, err := f.s.Get("APP")
	if err != nil || info.Mirror != "MIR" || info.Applied != to.Pos {
		t.Fatalf("after the join: %+v %v", info, err)
	}
	wantValue(t, f.s, "APP", "^Base", "b")
	wantValue(t, f.s, "APP", "^S", "from the source")
	if err := app.ApplyShadow("SH", []journal.Record{setRec(t, "APP", "^S", "late")}, srcPos(400)); !errors.Is(err, ErrNotShadowed) {
		t.Fatalf("the shadow still applies to a joined copy: %v", err)
	}
	if got := f.s.ShadowedDatabases("SH"); len(got) != 1 || got[0].Name() != "MOD" {
		t.Fatalf("shadowed databases after the join: %v", got)
	}
	// Joining again is harmless.
	if h2, err := f.s.JoinMirrorAt("APP", "SH", "MIR", to.Pos, &want); err != nil || h2 != want {
		t.Fatalf("second join: %+v %v", h2, err)
	}
	// It is a copy of the mirrored database now: the mirror's replicated applies continue from the join position.
	next := journal.Position{Epoch: 1, Segment: 1, Offset: 900}
	if err := app.ApplyReplicated([]journal.Record{{Type: journal.RecordSet, Key: key(t, "^M"), Value: []byte("m")}}, next, []int{0}); err != nil {
		t.Fatal(err)
	}
	wantValue(t, f.s, "APP", "^M", "m")

	// The join survives a reopen.
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	f.open(t)
	if info, err := f.s.Get("APP"); err != nil || info.Mirror != "MIR" {
		t.Fatalf("after reopening: %+v %v", info, err)
	}
	d, _ := f.s.Database("APP")
	if d.ShadowInfo().ToMirror != nil {
		t.Fatal("a joined copy still carries its shadow marker")
	}
}

// The checkpoint, the marker and the record of local writes are persisted with the data: they survive closing and reopening
// the store; after a crash (databases closed unflushed) the copy is back at its last persisted checkpoint, consistent with
// its data, and its local writes are replayed from the local journal.
func TestShadowStateSurvivesReopen(t *testing.T) {
	f := newShadowFixture(t)
	to := ToMirror{Mirror: "MIR", Pos: journal.Position{Epoch: 1, Segment: 1, Offset: 55}}
	app := f.shadowed(t, "APP", srcPos(100), nil)
	mod := f.shadowed(t, "MOD", srcPos(100), nil)
	if err := app.ApplyShadow("SH", []journal.Record{setRec(t, "APP", "^A", "1"), markerRec(t, "APP", MarkerToMirror, to)}, srcPos(200)); err != nil {
		t.Fatal(err)
	}
	if err := mod.ApplyShadow("SH", []journal.Record{setRec(t, "MOD", "^A", "1")}, srcPos(250)); err != nil {
		t.Fatal(err)
	}
	set(t, f.s, "MOD", "^Local", "mine")
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}

	f.open(t)
	app, _ = f.s.Database("APP")
	mod, _ = f.s.Database("MOD")
	if info := app.ShadowInfo(); info.Applied != srcPos(200) || info.ToMirror == nil || *info.ToMirror != to || info.Modified {
		t.Fatalf("APP after reopening: %+v", info)
	}
	if info := mod.ShadowInfo(); info.Applied != srcPos(250) || info.ToMirror != nil || !info.Modified {
		t.Fatalf("MOD after reopening: %+v", info)
	}
	if app.Mirror() != ShadowJournal("SH") || len(f.s.ShadowedDatabases("SH")) != 2 {
		t.Fatalf("after reopening: APP on %q, shadowed %v", app.Mirror(), f.s.ShadowedDatabases("SH"))
	}
	wantValue(t, f.s, "APP", "^A", "1")
	wantValue(t, f.s, "MOD", "^Local", "mine")

	// Persist APP at 200 (what the shadow's periodic flush does), then apply more and write locally, and crash.
	if _, err := f.s.PurgeFloor(ShadowJournal("SH"), srcPos(200)); err != nil {
		t.Fatal(err)
	}
	if err := app.ApplyShadow("SH", []journal.Record{setRec(t, "APP", "^A", "2")}, srcPos(300)); err != nil {
		t.Fatal(err)
	}
	set(t, f.s, "MOD", "^Local", "mine again")
	for _, d := range f.s.dbs {
		d.pdb.Close()
	}
	f.s.dbs = map[string]*Database{}

	f.open(t)
	app, _ = f.s.Database("APP")
	if info := app.ShadowInfo(); info.Applied != srcPos(200) || info.ToMirror == nil {
		t.Fatalf("APP after a crash: %+v, want the persisted checkpoint %s with its marker", info, srcPos(200))
	}
	wantValue(t, f.s, "APP", "^A", "1")
	wantValue(t, f.s, "MOD", "^Local", "mine again")
	// The shadow fetches the lost transaction again.
	if err := app.ApplyShadow("SH", []journal.Record{setRec(t, "APP", "^A", "2")}, srcPos(300)); err != nil {
		t.Fatal(err)
	}
	wantValue(t, f.s, "APP", "^A", "2")
	if app.ShadowInfo().ToMirror != nil {
		t.Fatal("the refetched record of APP did not forget the marker")
	}
}

// Taking a copy out of its shadow leaves a plain local database with its data, written through the local journal and
// recovered from it; its shadow state is gone.
func TestShadowUnshadowLeavesLocalDatabase(t *testing.T) {
	f := newShadowFixture(t)
	to := ToMirror{Mirror: "MIR", Pos: journal.Position{Epoch: 1, Segment: 1, Offset: 55}}
	d := f.shadowed(t, "COPY", srcPos(100), map[string]string{"^Base": "b"})
	if err := d.ApplyShadow("SH", []journal.Record{setRec(t, "COPY", "^S", "s"), markerRec(t, "COPY", MarkerToMirror, to)}, srcPos(200)); err != nil {
		t.Fatal(err)
	}
	set(t, f.s, "COPY", "^Local", "l")
	if err := f.s.UnshadowDatabase("COPY", "OTHER"); err == nil {
		t.Fatal("another shadow released the copy")
	}
	// Another database's commit is in flight: appended to the local journal, not yet durable.
	if _, err := f.local.Append([]journal.Record{setRec(t, "ELSEWHERE", "^E", "e")}); err != nil {
		t.Fatal(err)
	}
	if err := f.s.UnshadowDatabase("COPY", "SH"); err != nil {
		t.Fatal(err)
	}
	// The copy's new applied position is persisted with its data: the journal must hold it durably, or a crash now would
	// leave the database ahead of the journal it is recovered from.
	if durable := f.local.DurableEnd(); durable.Less(d.Applied()) {
		t.Fatalf("applied %s persisted while the local journal is durable only up to %s", d.Applied(), durable)
	}
	info, err := f.s.Get("COPY")
	if err != nil || info.Mirror != "" {
		t.Fatalf("after unshadowing: %+v %v", info, err)
	}
	if d.Applied() != f.local.AppendedEnd() {
		t.Fatalf("applied %s, want the local journal's end %s", d.Applied(), f.local.AppendedEnd())
	}
	if si := d.ShadowInfo(); si.Modified || si.ToMirror != nil {
		t.Fatalf("shadow state left on a local database: %+v", si)
	}
	if len(f.s.ShadowedDatabases("SH")) != 0 {
		t.Fatal("the copy is still listed as shadowed")
	}
	if err := d.ApplyShadow("SH", []journal.Record{setRec(t, "COPY", "^S", "late")}, srcPos(300)); !errors.Is(err, ErrNotShadowed) {
		t.Fatalf("the shadow still applies: %v", err)
	}
	// Unshadowing again is harmless.
	if err := f.s.UnshadowDatabase("COPY", "SH"); err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]string{"^Base": "b", "^S": "s", "^Local": "l"} {
		wantValue(t, f.s, "COPY", ref, want)
	}
	before := f.local.AppendedEnd()
	set(t, f.s, "COPY", "^After", "a")
	if d.Applied() == before || d.Applied() != f.local.AppendedEnd() {
		t.Fatalf("a write to the local database did not move its applied position along the local journal: %s", d.Applied())
	}
	// A crash: the write after unshadowing is replayed from the local journal.
	for _, db := range f.s.dbs {
		db.pdb.Close()
	}
	f.s.dbs = map[string]*Database{}
	f.open(t)
	for ref, want := range map[string]string{"^Base": "b", "^S": "s", "^Local": "l", "^After": "a"} {
		wantValue(t, f.s, "COPY", ref, want)
	}
	if info, _ := f.s.Get("COPY"); info.Mirror != "" {
		t.Fatalf("after a crash the copy is on %q", info.Mirror)
	}
}

// Adding a local database to a mirror writes a to-mirror marker into the local journal after the database's last local
// record, carrying the mirror journal position the database continues from. A destination that applies that local journal
// through a shadow ends with a copy that joins the mirror at exactly that position, with the primary's content.
func TestShadowAttachToMirrorWritesMarker(t *testing.T) {
	src := newShadowFixture(t)
	if _, err := src.s.Create("APP"); err != nil {
		t.Fatal(err)
	}
	if _, err := src.s.Create("OTHER"); err != nil {
		t.Fatal(err)
	}
	start := src.local.DurableEnd()
	for i := range 20 {
		set(t, src.s, "APP", fmt.Sprintf("^A(%d)", i), "v")
		set(t, src.s, "OTHER", fmt.Sprintf("^O(%d)", i), "o")
	}
	exec1(t, src.s, "APP", wireKill(t, "^A(3)"))
	var added journal.Position
	var hash LogicalHash
	if _, err := src.s.AttachToMirror("APP", "MIR", func(p journal.Position) error { added = p; return nil },
		func(h LogicalHash, err error) {
			if err != nil {
				t.Error(err)
			}
			hash = h
		}); err != nil {
		t.Fatal(err)
	}
	if added != src.mj.DurableEnd() {
		t.Fatalf("added at %s, the mirror journal ends at %s", added, src.mj.DurableEnd())
	}
	set(t, src.s, "APP", "^A(100)", "mirrored")
	set(t, src.s, "OTHER", "^O(100)", "o")

	var recs []journal.Record
	if err := journal.Dump(vfs.Default, filepath.Join(src.dir, "journal"), start, func(r journal.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	markerAt := -1
	for i, r := range recs {
		if r.Type == journal.RecordMarker {
			if markerAt >= 0 {
				t.Fatalf("two markers in the local journal: %+v", r)
			}
			markerAt = i
		}
	}
	if markerAt < 0 {
		t.Fatal("no marker in the local journal")
	}
	m := recs[markerAt]
	var to ToMirror
	if err := json.Unmarshal(m.Value, &to); err != nil {
		t.Fatal(err)
	}
	if m.DB != "APP" || string(m.Key) != MarkerToMirror || !m.TxnEnd || to.Mirror != "MIR" || to.Pos != added {
		t.Fatalf("local journal marker %+v (%+v), want APP to MIR at %s", m, to, added)
	}
	for _, r := range recs[markerAt+1:] {
		if r.DB == "APP" {
			t.Fatalf("a record of APP after its to-mirror marker in the local journal: %+v", r)
		}
	}

	// A destination shadowing APP and OTHER applies the local journal transaction by transaction, as a shadow does.
	dst := newShadowFixture(t)
	app := dst.shadowed(t, "APP", start, nil)
	other := dst.shadowed(t, "OTHER", start, nil)
	var txn []journal.Record
	for _, r := range recs {
		txn = append(txn, r)
		if !r.TxnEnd {
			continue
		}
		end := r.Pos
		end.Offset += uint64(r.Size())
		d := app
		if r.DB == "OTHER" {
			d = other
		}
		if err := d.ApplyShadow("SH", txn, end); err != nil {
			t.Fatal(err)
		}
		txn = nil
	}
	if err := app.AdvanceShadow("SH", src.local.DurableEnd()); err != nil {
		t.Fatal(err)
	}
	if got := app.ShadowInfo().ToMirror; got == nil || *got != to {
		t.Fatalf("the destination's copy applied marker %+v, want %+v", got, to)
	}
	if other.ShadowInfo().ToMirror != nil {
		t.Fatal("the marker of APP reached OTHER")
	}
	if h, err := dst.s.JoinMirrorAt("APP", "SH", "MIR", added, &hash); err != nil || h != hash {
		t.Fatalf("join at the add position: %+v %v (primary's hash %+v)", h, err, hash)
	}
	wantValue(t, dst.s, "APP", "^A(100)", "")
	wantValue(t, dst.s, "APP", "^A(3)", "")
	wantValue(t, dst.s, "APP", "^A(19)", "v")
	wantValue(t, dst.s, "OTHER", "^O(100)", "o")
}

// Local writes, applies, advances and status reads of shadowed copies run concurrently (run with -race).
func TestShadowConcurrentUse(t *testing.T) {
	f := newShadowFixture(t)
	d := f.shadowed(t, "APP", srcPos(100), nil)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for i := range 200 {
			end := srcPos(uint64(200 + 10*i))
			if err := d.ApplyShadow("SH", []journal.Record{setRec(t, "APP", fmt.Sprintf("^S(%d)", i), "s")}, end); err != nil {
				t.Error(err)
				return
			}
			if err := d.AdvanceShadow("SH", journal.Position{Epoch: 1, Segment: 3, Offset: end.Offset + 5}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 100 {
			if _, _, err := f.s.Exec(context.Background(), "APP", []wire.Op{{Kind: wire.OpSet, Key: key(t, fmt.Sprintf("^L(%d)", i)), Value: []byte("l")}}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range 200 {
			_ = d.ShadowInfo()
			_ = f.s.ShadowedDatabases("SH")
			if _, err := f.s.PurgeFloor(ShadowJournal("SH"), srcPos(100)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	if info := d.ShadowInfo(); info.Applied != srcPos(200+10*199+5) || !info.Modified {
		t.Fatalf("after concurrent use: %+v", info)
	}
	wantValue(t, f.s, "APP", "^S(199)", "s")
	wantValue(t, f.s, "APP", "^L(99)", "l")
}

func zerologFor(t testing.TB) zerolog.Logger { return zerolog.New(zerolog.NewTestWriter(t)) }

func wireKill(t testing.TB, ref string) wire.Op {
	t.Helper()
	return wire.Op{Kind: wire.OpKill, Key: key(t, ref)}
}

// A database added to a mirror while clients write to it: the to-mirror marker is the last record of the database in the
// local journal, every write after the move is in the mirror journal, and the database's applied position is a mirror
// journal position. (A writer that picked the local journal before the move and committed after it would put a record of
// a mirrored database in the local journal: the backup would never get it and a shadow copy would never join.)
func TestShadowAttachToMirrorUnderWrites(t *testing.T) {
	f := newShadowFixture(t)
	if _, err := f.s.Create("APP"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	written := 0
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := f.s.Exec(context.Background(), "APP", []wire.Op{{Kind: wire.OpSet, Key: key(t, fmt.Sprintf("^W(%d,%d)", w, i)), Value: []byte("v")}}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				written++
				mu.Unlock()
			}
		}()
	}
	waitWritten := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; runtime.Gosched() {
			mu.Lock()
			done := written >= n
			mu.Unlock()
			if done {
				return
			}
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("the writers wrote %d transactions, want %d", written, n)
			}
		}
	}
	waitWritten(100)
	var added journal.Position
	if _, err := f.s.AttachToMirror("APP", "MIR", func(p journal.Position) error { added = p; return nil }); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	at := written
	mu.Unlock()
	waitWritten(at + 100)
	close(stop)
	wg.Wait()

	seenMarker := false
	if err := journal.Dump(vfs.Default, filepath.Join(f.dir, "journal"), journal.Position{}, func(r journal.Record) error {
		switch {
		case r.Type == journal.RecordMarker && string(r.Key) == MarkerToMirror:
			seenMarker = true
		case seenMarker && r.DB == "APP":
			return fmt.Errorf("record of APP at %s after its to-mirror marker in the local journal", r.Pos)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !seenMarker {
		t.Fatal("no to-mirror marker in the local journal")
	}
	info, err := f.s.Get("APP")
	if err != nil {
		t.Fatal(err)
	}
	if info.Mirror != "MIR" || info.Applied.Less(added) || f.mj.DurableEnd().Less(info.Applied) {
		t.Fatalf("APP after the move: %+v; the mirror journal runs from %s to %s", info, added, f.mj.DurableEnd())
	}
}

// A copy that applies a to-mirror marker is hashed in the background; the join uses that hash while the copy is unchanged,
// and a local write after the marker makes the join refuse the copy, not trust the old hash.
func TestShadowHashTakenAtMarker(t *testing.T) {
	f := newShadowFixture(t)
	to := ToMirror{Mirror: "MIR", Pos: journal.Position{Epoch: 1, Segment: 1, Offset: 777}}
	app := f.shadowed(t, "APP", srcPos(100), map[string]string{"^Base": "b"})
	late := f.shadowed(t, "LATE", srcPos(100), nil)
	for _, d := range []*Database{app, late} {
		if err := d.ApplyShadow("SH", []journal.Record{setRec(t, d.Name(), "^S", "x"), markerRec(t, d.Name(), MarkerToMirror, to)}, srcPos(200)); err != nil {
			t.Fatal(err)
		}
	}
	taken := func(d *Database) *markerHash {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.markerHash
	}
	deadline := time.Now().Add(30 * time.Second)
	for taken(app) == nil || taken(late) == nil {
		if time.Now().After(deadline) {
			t.Fatal("no background hash was taken at the marker")
		}
		time.Sleep(10 * time.Millisecond)
	}
	want, err := f.s.Hash("APP")
	if err != nil {
		t.Fatal(err)
	}
	if got := taken(app).hash; got != want {
		t.Fatalf("background hash %+v, the copy's %+v", got, want)
	}
	// A wrong expectation is refused with the background hash as the copy's.
	bad := want
	bad.SHA256 = strings.Repeat("0", 64)
	if _, err := f.s.JoinMirrorAt("APP", "SH", "MIR", to.Pos, &bad); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("join against another hash: %v", err)
	}
	if h, err := f.s.JoinMirrorAt("APP", "SH", "MIR", to.Pos, &want); err != nil || h != want {
		t.Fatalf("join: %+v %v", h, err)
	}
	// LATE is written locally after its hash was taken: the old hash is not used, the copy is refused as modified.
	set(t, f.s, "LATE", "^After", "local")
	if _, err := f.s.JoinMirrorAt("LATE", "SH", "MIR", to.Pos, nil); err == nil || !strings.Contains(err.Error(), "written on this member") {
		t.Fatalf("join of a copy written after its hash was taken: %v", err)
	}
}
