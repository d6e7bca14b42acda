package journal

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestCommitAndReadBack(t *testing.T) {
	fs := vfs.NewMem()
	clock := newFakeClock()
	opts := testOptions(t, fs)
	opts.Now = clock.Now
	j := openTest(t, testDir, opts)
	if info := j.Recovery(); !info.Created || info.Segments != 1 || info.End != (Position{1, 1, HeaderSize}) {
		t.Fatalf("recovery of a new journal: %+v", info)
	}
	if got := j.FirstPosition(); got != (Position{1, 1, HeaderSize}) {
		t.Fatalf("first position %s", got)
	}

	txn := []Record{
		{Type: RecordSet, DB: "db", Key: []byte("a"), Value: []byte("1"), HasValue: true},
		{Type: RecordKill, DB: "db", Key: []byte("b"), Before: []byte("old"), HasBefore: true, TxnEnd: true},
	}
	end := commit(t, j, txn...)
	if txn[0].Pos != (Position{1, 1, HeaderSize}) || txn[1].Pos.Offset != HeaderSize+uint64(txn[0].Size()) {
		t.Fatalf("positions %s %s", txn[0].Pos, txn[1].Pos)
	}
	if end.Offset != txn[1].Pos.Offset+uint64(txn[1].Size()) || end != j.DurableEnd() || end != j.AppendedEnd() {
		t.Fatalf("end %s, durable %s, appended %s", end, j.DurableEnd(), j.AppendedEnd())
	}
	if txn[0].TxnID != 1 || txn[1].TxnID != 1 || txn[0].Time != clock.Now().UnixNano() {
		t.Fatalf("txn ids %d %d, time %d", txn[0].TxnID, txn[1].TxnID, txn[0].Time)
	}
	one := setRecord("db", "c", "3")
	commit(t, j, one)
	second := []Record{setRecord("db", "d", "4")}
	commit(t, j, second...)
	if second[0].TxnID != 3 {
		t.Fatalf("third transaction got id %d", second[0].TxnID)
	}

	got := readAll(t, j)
	want := append(txn, one, second[0])
	want[2].Pos, want[2].TxnID, want[2].Time = got[2].Pos, 2, got[2].Time
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !sameRecord(got[i], want[i]) {
			t.Errorf("record %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	st := j.Stats()
	if st.Appends != 3 || st.Records != 4 || st.Transactions != 3 || st.Syncs != 3 || st.SyncedRecords != 4 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTxnIDs(t *testing.T) {
	j := openTest(t, testDir, testOptions(t, vfs.NewMem()))
	// A transaction spread over several appends keeps one id.
	a := []Record{{Type: RecordSet, Key: []byte("k"), Value: []byte("v"), HasValue: true}}
	b := []Record{{Type: RecordSet, Key: []byte("k"), Value: []byte("v"), HasValue: true, TxnEnd: true}}
	c := []Record{{Type: RecordNoop, TxnID: 50, TxnEnd: true}}
	d := []Record{{Type: RecordNoop, TxnEnd: true}}
	for _, recs := range [][]Record{a, b, c, d} {
		if _, err := j.Append(recs); err != nil {
			t.Fatal(err)
		}
	}
	if a[0].TxnID != 1 || b[0].TxnID != 1 || c[0].TxnID != 50 || d[0].TxnID != 51 {
		t.Fatalf("ids %d %d %d %d", a[0].TxnID, b[0].TxnID, c[0].TxnID, d[0].TxnID)
	}
}

func TestReopenContinues(t *testing.T) {
	fs := vfs.NewMem()
	opts := testOptions(t, fs)
	opts.SegmentSize = 1024
	j, err := Open(testDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	var last Record
	for i := range 30 {
		recs := []Record{setRecord("db", fmt.Sprint(i), "value")}
		commit(t, j, recs...)
		last = recs[0]
	}
	if _, err := j.Append([]Record{setRecord("db", "unsynced", "but closed")}); err != nil {
		t.Fatal(err)
	}
	end := j.AppendedEnd()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j = openTest(t, testDir, opts)
	info := j.Recovery()
	if info.End != end || j.AppendedEnd() != end || j.DurableEnd() != end || info.Records != 31 || info.TornTail != nil {
		t.Fatalf("recovery %+v, want end %s", info, end)
	}
	if info.Segments < 2 || info.Segments != len(j.Segments()) {
		t.Fatalf("segments: recovery says %d, Segments lists %d", info.Segments, len(j.Segments()))
	}
	next := []Record{setRecord("db", "after", "reopen")}
	commit(t, j, next...)
	if next[0].Pos != end || next[0].TxnID != last.TxnID+2 {
		t.Fatalf("after reopen: pos %s (want %s), txn %d (want %d)", next[0].Pos, end, next[0].TxnID, last.TxnID+2)
	}
	if got := readAll(t, j); len(got) != 32 || recordKey(got[31]) != "db/after" {
		t.Fatalf("read back %d records", len(got))
	}
}

func TestEpoch(t *testing.T) {
	fs := vfs.NewMem()
	opts := testOptions(t, fs)
	j, err := Open(testDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if j.Epoch() != 1 {
		t.Fatalf("default epoch %d", j.Epoch())
	}
	if err := j.SetEpoch(4); err != nil {
		t.Fatal(err)
	}
	if err := j.SetEpoch(3); err == nil {
		t.Fatal("lowering the epoch succeeded")
	}
	recs := []Record{{Type: RecordEpochStart, TxnEnd: true}}
	end := commit(t, j, recs...)
	if recs[0].Pos.Epoch != 4 || end.Epoch != 4 {
		t.Fatalf("record epoch %d, end %s", recs[0].Pos.Epoch, end)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// The journal never goes back to an older epoch than it holds.
	j = openTest(t, testDir, opts)
	if j.Epoch() != 4 {
		t.Fatalf("epoch after reopen %d", j.Epoch())
	}
}

func TestClosedJournal(t *testing.T) {
	j, err := Open(testDir, testOptions(t, vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	commit(t, j, setRecord("db", "k", "v"))
	r, err := j.NewReader(Position{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// Durable records stay readable; then the reader reports the close.
	if _, err := r.Next(context.Background()); err != nil {
		t.Fatalf("read durable record after close: %v", err)
	}
	if _, err := r.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("reader after close: %v", err)
	}
	checks := map[string]func() error{
		"Append": func() error { _, err := j.Append([]Record{setRecord("db", "k", "v")}); return err },
		"Commit": func() error {
			_, err := j.Commit(context.Background(), []Record{setRecord("db", "k", "v")})
			return err
		},
		"Sync":      j.Sync,
		"SetEpoch":  func() error { return j.SetEpoch(9) },
		"NewReader": func() error { _, err := j.NewReader(Position{}); return err },
		"Purge":     func() error { _, err := j.Purge(PurgePolicy{}, j.DurableEnd()); return err },
		"Close":     j.Close,
	}
	for name, call := range checks {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
}

func TestOpenLocksDirectory(t *testing.T) {
	fs := vfs.NewMem()
	openTest(t, testDir, testOptions(t, fs))
	if _, err := Open(testDir, testOptions(t, fs)); err == nil {
		t.Fatal("second Open of the same directory succeeded")
	}
}

func TestWaitDurableBeyondAppended(t *testing.T) {
	j := openTest(t, testDir, testOptions(t, vfs.NewMem()))
	end := j.AppendedEnd()
	end.Offset += 100
	if err := j.WaitDurable(context.Background(), end); !errors.Is(err, ErrBadPosition) {
		t.Fatalf("got %v", err)
	}
	if err := j.WaitDurable(context.Background(), Position{}); err != nil {
		t.Fatalf("zero position: %v", err)
	}
}

func TestSegmentRoll(t *testing.T) {
	fs := vfs.NewMem()
	opts := testOptions(t, fs)
	opts.SegmentSize = 512
	j := openTest(t, testDir, opts)
	var ends []Position
	for i := range 40 {
		ends = append(ends, commit(t, j, setRecord("db", fmt.Sprint(i), "0123456789012345678901234567890123456789")))
	}
	segs := j.Segments()
	if len(segs) < 4 {
		t.Fatalf("only %d segments", len(segs))
	}
	for i, s := range segs {
		if s.Number != uint64(i+1) || s.Name != segmentName(s.Number) || s.First.Offset != HeaderSize {
			t.Fatalf("segment %d: %+v", i, s)
		}
		if s.End.Offset > uint64(opts.SegmentSize) {
			t.Fatalf("segment %s ends at %d, past the segment size", s.Name, s.End.Offset)
		}
		if i < len(segs)-1 && segs[i+1].First.Segment != s.End.Segment+1 {
			t.Fatalf("segments not consecutive: %+v", segs)
		}
	}
	for i := 1; i < len(ends); i++ {
		if !ends[i-1].Less(ends[i]) {
			t.Fatalf("end %d (%s) not after end %d (%s)", i, ends[i], i-1, ends[i-1])
		}
	}
	if got := readAll(t, j); len(got) != 40 {
		t.Fatalf("read %d records", len(got))
	}
}

func TestTransactionNeverSpansSegments(t *testing.T) {
	opts := testOptions(t, vfs.NewMem())
	opts.SegmentSize = 256
	j := openTest(t, testDir, opts)
	var recs []Record
	for i := range 20 {
		r := []Record{{Type: RecordSet, Key: []byte(fmt.Sprint(i)), Value: make([]byte, 40), HasValue: true, TxnEnd: i == 19}}
		if _, err := j.Append(r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r[0])
	}
	for _, r := range recs {
		if r.Pos.Segment != 1 || r.TxnID != recs[0].TxnID {
			t.Fatalf("record of the open transaction at %s with id %d", r.Pos, r.TxnID)
		}
	}
	after := []Record{setRecord("db", "next", "x")}
	commit(t, j, after...)
	if after[0].Pos.Segment != 2 {
		t.Fatalf("next transaction at %s, want segment 2", after[0].Pos)
	}
}

func TestLargeRecordGetsItsOwnSegment(t *testing.T) {
	opts := testOptions(t, vfs.NewMem())
	opts.SegmentSize = 1024
	j := openTest(t, testDir, opts)
	small := []Record{setRecord("db", "small", "x")}
	big := []Record{{Type: RecordSet, Key: []byte("big"), Value: make([]byte, 5000), HasValue: true, TxnEnd: true}}
	after := []Record{setRecord("db", "after", "x")}
	commit(t, j, small...)
	commit(t, j, big...)
	commit(t, j, after...)
	if small[0].Pos.Segment != 1 || big[0].Pos != (Position{1, 2, HeaderSize}) || after[0].Pos != (Position{1, 3, HeaderSize}) {
		t.Fatalf("positions %s %s %s", small[0].Pos, big[0].Pos, after[0].Pos)
	}
	got := readAll(t, j)
	if len(got) != 3 || len(got[1].Value) != 5000 {
		t.Fatalf("read back %d records", len(got))
	}
}

func TestAppendRejectsInvalidRecords(t *testing.T) {
	j := openTest(t, testDir, testOptions(t, vfs.NewMem()))
	before := j.AppendedEnd()
	recs := []Record{setRecord("db", "k", "v"), {Type: RecordSet, Value: make([]byte, MaxPayloadSize), HasValue: true}}
	if _, err := j.Append(recs); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("got %v", err)
	}
	if _, err := j.Append([]Record{{Type: 0}}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("got %v", err)
	}
	if j.AppendedEnd() != before {
		t.Fatal("a refused append changed the journal")
	}
	// The journal keeps working.
	commit(t, j, setRecord("db", "k", "v"))
}
