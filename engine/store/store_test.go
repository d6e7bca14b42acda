package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// testStore opens a store and its journal in dir; both are closed at cleanup unless the test closes them first.
func testStore(tb testing.TB, dir string) (*Store, *journal.Journal) {
	tb.Helper()
	log := zerolog.New(zerolog.NewTestWriter(tb))
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{Logger: log})
	if err != nil {
		tb.Fatalf("open journal: %v", err)
	}
	s, err := Open(Options{Dir: dir, Journal: j, Logger: log})
	if err != nil {
		j.Close()
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() {
		s.Close()
		j.Close()
	})
	return s, j
}

func key(tb testing.TB, ref string) []byte {
	tb.Helper()
	k, err := globals.Encode(globals.MustParse(ref))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func exec1(tb testing.TB, s *Store, db string, op wire.Op) wire.Result {
	tb.Helper()
	res, _, err := s.Exec(context.Background(), db, []wire.Op{op})
	if err != nil {
		tb.Fatalf("%s: %v", op.Kind, err)
	}
	return res[0]
}

func set(tb testing.TB, s *Store, db, ref, v string) {
	tb.Helper()
	exec1(tb, s, db, wire.Op{Kind: wire.OpSet, Key: key(tb, ref), Value: []byte(v)})
}

func getv(tb testing.TB, s *Store, db, ref string) (string, bool) {
	tb.Helper()
	r := exec1(tb, s, db, wire.Op{Kind: wire.OpGet, Key: key(tb, ref)})
	return string(r.Value), r.Exists
}

func TestOperations(t *testing.T) {
	s, _ := testStore(t, t.TempDir())
	if _, err := s.Create("app"); err != nil {
		t.Fatal(err)
	}
	set(t, s, "APP", `^O(1)`, "one")
	set(t, s, "app", `^O(2,"a")`, "two-a")
	set(t, s, "App", `^O(2,"b")`, "two-b")
	set(t, s, "APP", `^O(-1.5)`, "neg")
	set(t, s, "APP", `^O("x")`, "str")
	set(t, s, "APP", `^O(10)`, "ten")

	if v, ok := getv(t, s, "APP", `^O(1)`); !ok || v != "one" {
		t.Fatalf("get ^O(1) = %q %v", v, ok)
	}
	if _, ok := getv(t, s, "APP", `^O(3)`); ok {
		t.Fatal("^O(3) should be undefined")
	}
	for ref, want := range map[string]uint8{`^O(1)`: 1, `^O(2)`: 10, `^O(3)`: 0, `^O`: 10} {
		if d := exec1(t, s, "APP", wire.Op{Kind: wire.OpData, Key: key(t, ref)}).Data; d != want {
			t.Errorf("$DATA(%s) = %d, want %d", ref, d, want)
		}
	}

	// $ORDER walks siblings in collation order: numbers (numerically) before strings, skipping subtrees.
	var walk []string
	cur := `^O("")`
	for {
		r := exec1(t, s, "APP", wire.Op{Kind: wire.OpOrder, Key: key(t, cur)})
		if len(r.Key) == 0 {
			break
		}
		ref, err := globals.Decode(r.Key)
		if err != nil {
			t.Fatal(err)
		}
		walk = append(walk, ref.String())
		cur = ref.String()
	}
	if got, want := strings.Join(walk, " "), `^O(-1.5) ^O(1) ^O(2) ^O(10) ^O("x")`; got != want {
		t.Fatalf("order walk = %s, want %s", got, want)
	}
	r := exec1(t, s, "APP", wire.Op{Kind: wire.OpOrder, Key: key(t, `^O("")`), Reverse: true})
	if ref, _ := globals.Decode(r.Key); ref.String() != `^O("x")` {
		t.Fatalf("reverse order from \"\" = %s", ref)
	}
	r = exec1(t, s, "APP", wire.Op{Kind: wire.OpOrder, Key: key(t, `^O(2)`), Reverse: true})
	if ref, _ := globals.Decode(r.Key); ref.String() != `^O(1)` {
		t.Fatalf("reverse order from 2 = %s", ref)
	}

	// Query with a limit and continuation.
	q := exec1(t, s, "APP", wire.Op{Kind: wire.OpQuery, Key: key(t, `^O`), Limit: 2})
	if len(q.Pairs) != 2 || !q.More {
		t.Fatalf("query page 1: %d pairs, more=%v", len(q.Pairs), q.More)
	}
	q2 := exec1(t, s, "APP", wire.Op{Kind: wire.OpQuery, Key: key(t, `^O`), From: q.Pairs[1].Key, Limit: 100})
	if len(q2.Pairs) != 4 || q2.More {
		t.Fatalf("query page 2: %d pairs, more=%v", len(q2.Pairs), q2.More)
	}
	if ref, _ := globals.Decode(q2.Pairs[0].Key); ref.String() != `^O(2,"a")` {
		t.Fatalf("page 2 starts at %s", ref)
	}

	// Increment: from absent, then decimals.
	for _, step := range []struct{ by, want string }{{"1", "1"}, {"2.5", "3.5"}, {"-4", "-0.5"}} {
		r := exec1(t, s, "APP", wire.Op{Kind: wire.OpIncr, Key: key(t, `^C`), Value: []byte(step.by)})
		if string(r.Value) != step.want {
			t.Fatalf("incr by %s = %s, want %s", step.by, r.Value, step.want)
		}
	}
	_, _, err := s.Exec(context.Background(), "APP", []wire.Op{{Kind: wire.OpIncr, Key: key(t, `^O(1)`), Value: []byte("1")}})
	if !errors.Is(err, wire.ErrNotANumber) {
		t.Fatalf("incr of a non-number: %v", err)
	}

	// Compare-and-set.
	if r := exec1(t, s, "APP", wire.Op{Kind: wire.OpCAS, Key: key(t, `^O(1)`), Expect: []byte("nope"), ExpectExists: true, Value: []byte("x")}); r.OK || string(r.Value) != "one" {
		t.Fatalf("cas with wrong expectation: ok=%v value=%q", r.OK, r.Value)
	}
	if r := exec1(t, s, "APP", wire.Op{Kind: wire.OpCAS, Key: key(t, `^O(1)`), Expect: []byte("one"), ExpectExists: true, Value: []byte("uno")}); !r.OK {
		t.Fatal("cas with right expectation failed")
	}
	if r := exec1(t, s, "APP", wire.Op{Kind: wire.OpCAS, Key: key(t, `^New`), Value: []byte("v")}); !r.OK {
		t.Fatal("cas expecting absence failed")
	}

	// Kill node only, then a whole subtree.
	exec1(t, s, "APP", wire.Op{Kind: wire.OpKill, Key: key(t, `^O(2,"a")`), NodeOnly: true})
	if _, ok := getv(t, s, "APP", `^O(2,"a")`); ok {
		t.Fatal("node kill left the value")
	}
	exec1(t, s, "APP", wire.Op{Kind: wire.OpKill, Key: key(t, `^O`)})
	if d := exec1(t, s, "APP", wire.Op{Kind: wire.OpData, Key: key(t, `^O`)}).Data; d != 0 {
		t.Fatalf("after kill $DATA(^O) = %d", d)
	}
}

func TestTransactionAtomicAndSeesItsOwnWrites(t *testing.T) {
	s, _ := testStore(t, t.TempDir())
	s.Create("T")
	res, pos, err := s.Exec(context.Background(), "T", []wire.Op{
		{Kind: wire.OpSet, Key: key(t, `^A`), Value: []byte("5")},
		{Kind: wire.OpIncr, Key: key(t, `^A`), Value: []byte("1")},
		{Kind: wire.OpGet, Key: key(t, `^A`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(res[1].Value) != "6" || string(res[2].Value) != "6" || pos.IsZero() {
		t.Fatalf("results %q %q pos %s", res[1].Value, res[2].Value, pos)
	}
	// A failing operation aborts the whole transaction: the set before it is not applied.
	_, _, err = s.Exec(context.Background(), "T", []wire.Op{
		{Kind: wire.OpSet, Key: key(t, `^B`), Value: []byte("x")},
		{Kind: wire.OpIncr, Key: key(t, `^B`), Value: []byte("1")},
	})
	if !errors.Is(err, wire.ErrNotANumber) {
		t.Fatalf("want not-a-number, got %v", err)
	}
	if _, ok := getv(t, s, "T", `^B`); ok {
		t.Fatal("aborted transaction left ^B behind")
	}
}

func TestLimitsAndNames(t *testing.T) {
	s, _ := testStore(t, t.TempDir())
	for _, bad := range []string{"", "1abc", "a b", "x/y", strings.Repeat("a", 63)} {
		if _, err := s.Create(bad); !errors.Is(err, wire.ErrInvalidName) {
			t.Errorf("create %q: %v", bad, err)
		}
	}
	if _, err := s.Create("Good_1-x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("GOOD_1-X"); !errors.Is(err, wire.ErrExists) {
		t.Fatalf("duplicate ignoring case: %v", err)
	}
	_, _, err := s.Exec(context.Background(), "GOOD_1-X", []wire.Op{{Kind: wire.OpSet, Key: key(t, `^V`), Value: make([]byte, DefaultMaxValueSize+1)}})
	if !errors.Is(err, wire.ErrTooLarge) || !strings.Contains(err.Error(), "^V") {
		t.Fatalf("oversized value: %v", err)
	}
	if _, _, err := s.Exec(context.Background(), "NOPE", []wire.Op{{Kind: wire.OpGet, Key: key(t, `^V`)}}); !errors.Is(err, wire.ErrNoSuchDatabase) {
		t.Fatalf("missing database: %v", err)
	}
	if _, _, err := s.Exec(context.Background(), "GOOD_1-X", []wire.Op{{Kind: wire.OpGet, Key: []byte{0xff, 0x00}}}); !errors.Is(err, wire.ErrBadRequest) {
		t.Fatalf("corrupt key: %v", err)
	}
	if _, _, err := s.Exec(context.Background(), "GOOD_1-X", []wire.Op{{Kind: wire.OpSet, Key: key(t, `^V("")`), Value: []byte("x")}}); !errors.Is(err, wire.ErrBadRequest) {
		t.Fatalf("empty subscript: %v", err)
	}
}

// TestReplayAfterCrash closes the databases without flushing (as a crash would lose Pebble's memtables, since its WAL is off)
// and checks that reopening replays every committed transaction from the journal.
func TestReplayAfterCrash(t *testing.T) {
	dir := t.TempDir()
	log := zerolog.New(zerolog.NewTestWriter(t))
	// Small segments, so replay starts at positions that end a segment and crosses segment rolls.
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{Logger: log, SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: dir, Journal: j, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	s.Create("A")
	s.Create("B")
	for i := 0; i < 200; i++ {
		ref := globals.Ref{Name: "K", Subs: []globals.Subscript{globals.Int(int64(i))}}
		k, _ := globals.Encode(ref)
		if _, _, err := s.Exec(context.Background(), "A", []wire.Op{{Kind: wire.OpSet, Key: k, Value: []byte("a")}}); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			s.Exec(context.Background(), "B", []wire.Op{{Kind: wire.OpSet, Key: k, Value: []byte("b")}, {Kind: wire.OpIncr, Key: key(t, `^N`), Value: []byte("1")}})
		}
	}
	exec1(t, s, "A", wire.Op{Kind: wire.OpKill, Key: key(t, `^K(7)`)})
	if len(j.Segments()) < 3 {
		t.Fatalf("want several segments, got %d", len(j.Segments()))
	}
	// Persist A up to here (its applied position is now the end of the newest segment's last record), then write to B only.
	if err := s.dbs["A"].pdb.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		exec1(t, s, "B", wire.Op{Kind: wire.OpIncr, Key: key(t, `^M`), Value: []byte("1")})
	}
	// Simulate the crash: close Pebble without flushing, then the journal.
	for _, d := range s.dbs {
		d.pdb.Close()
	}
	j.Close()

	s2, _ := testStore(t, dir)
	if v, ok := getv(t, s2, "B", `^N`); !ok || v != "100" {
		t.Fatalf("after replay ^N = %q %v, want 100", v, ok)
	}
	if _, ok := getv(t, s2, "A", `^K(7)`); ok {
		t.Fatal("replay lost the kill of ^K(7)")
	}
	if v, ok := getv(t, s2, "B", `^M`); !ok || v != "100" {
		t.Fatalf("after replay ^M = %q %v, want 100", v, ok)
	}
	if v, ok := getv(t, s2, "A", `^K(199)`); !ok || v != "a" {
		t.Fatalf("after replay ^K(199) = %q %v", v, ok)
	}
	infos := s2.List()
	if len(infos) != 2 || infos[0].Applied.IsZero() {
		t.Fatalf("list after replay: %+v", infos)
	}
}

func TestMountDismountDeleteCheckpoint(t *testing.T) {
	dir := t.TempDir()
	s, _ := testStore(t, dir)
	s.Create("D")
	set(t, s, "D", `^X(1)`, "v")
	if _, err := s.Dismount("d"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Exec(context.Background(), "D", []wire.Op{{Kind: wire.OpGet, Key: key(t, `^X(1)`)}}); !errors.Is(err, wire.ErrDatabaseDismounted) {
		t.Fatalf("read while dismounted: %v", err)
	}
	if _, err := s.Mount("D"); err != nil {
		t.Fatal(err)
	}
	if v, _ := getv(t, s, "D", `^X(1)`); v != "v" {
		t.Fatalf("after remount: %q", v)
	}
	cp, err := s.Checkpoint("D", filepath.Join(t.TempDir(), "cp"))
	if err != nil {
		t.Fatal(err)
	}
	if cp.Applied != s.dbs["D"].Applied() || cp.Applied.IsZero() {
		t.Fatalf("checkpoint position %s, database at %s", cp.Applied, s.dbs["D"].Applied())
	}
	if _, err := os.Stat(filepath.Join(cp.Dir, "MANIFEST-000001")); err != nil {
		entries, _ := os.ReadDir(cp.Dir)
		if len(entries) == 0 {
			t.Fatalf("checkpoint dir is empty")
		}
	}
	if err := s.Delete("D"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "db", "D")); !os.IsNotExist(err) {
		t.Fatalf("database directory still there: %v", err)
	}
	// A re-created database of the same name starts empty: the old incarnation's journal records are not replayed into it.
	s.Create("D")
	if _, ok := getv(t, s, "D", `^X(1)`); ok {
		t.Fatal("re-created database shows data of the deleted one")
	}
}

func TestMalformedCatalog(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "catalog.json"), []byte("{not json"), 0o644)
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	_, err = Open(Options{Dir: dir, Journal: j})
	if err == nil || !strings.Contains(err.Error(), "catalog.json is malformed") {
		t.Fatalf("want a malformed catalog error, got %v", err)
	}
}
