package journal

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// smallJournal has 512-byte segments and n committed one-record transactions.
func smallJournal(tb testing.TB, n int) (*Journal, []Record) {
	tb.Helper()
	opts := testOptions(tb, vfs.NewMem())
	opts.SegmentSize = 512
	j := openTest(tb, testDir, opts)
	var recs []Record
	for i := range n {
		r := []Record{setRecord("db", fmt.Sprintf("key%03d", i), "some value of a few bytes")}
		commit(tb, j, r...)
		recs = append(recs, r[0])
	}
	return j, recs
}

func TestReaderPositions(t *testing.T) {
	j, recs := smallJournal(t, 60)
	segs := j.Segments()
	if len(segs) < 4 {
		t.Fatalf("only %d segments", len(segs))
	}
	tests := []struct {
		name  string
		from  Position
		first int // index of the first record read; len(recs) = none
	}{
		{"zero means oldest", Position{}, 0},
		{"first record", recs[0].Pos, 0},
		{"middle record", recs[17].Pos, 17},
		{"record epoch ignored", Position{Epoch: 7, Segment: recs[17].Pos.Segment, Offset: recs[17].Pos.Offset}, 17},
		{"segment start", Position{Segment: segs[2].Number, Offset: HeaderSize}, indexAt(recs, segs[2].First)},
		{"segment offset zero", Position{Segment: segs[2].Number}, indexAt(recs, segs[2].First)},
		{"end of a sealed segment", segs[1].End, indexAt(recs, segs[2].First)},
		{"durable end", j.DurableEnd(), len(recs)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := j.NewReader(tt.from)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for i := tt.first; i < len(recs); i++ {
				if r.Position().Segment == recs[i].Pos.Segment && r.Position().Offset != recs[i].Pos.Offset {
					t.Fatalf("reader at %s before record %d at %s", r.Position(), i, recs[i].Pos)
				}
				got, err := r.Next(context.Background())
				if err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
				if !sameRecord(got, recs[i]) {
					t.Fatalf("record %d: got %+v, want %+v", i, got, recs[i])
				}
			}
			if r.Position() != j.DurableEnd() {
				t.Fatalf("reader ends at %s, durable end %s", r.Position(), j.DurableEnd())
			}
		})
	}
}

func indexAt(recs []Record, pos Position) int {
	for i, r := range recs {
		if r.Pos.Segment == pos.Segment && r.Pos.Offset == pos.Offset {
			return i
		}
	}
	return -1
}

func TestReaderBadPositions(t *testing.T) {
	j, recs := smallJournal(t, 30)
	end := j.DurableEnd()
	tests := []struct {
		name string
		from Position
		want error
	}{
		{"inside a record", Position{Segment: recs[3].Pos.Segment, Offset: recs[3].Pos.Offset + 3}, ErrBadPosition},
		{"inside the header", Position{Segment: 1, Offset: 5}, ErrBadPosition},
		{"past a sealed segment", Position{Segment: 1, Offset: 500}, ErrBadPosition},
		{"beyond the durable end", Position{Segment: end.Segment, Offset: end.Offset + 10}, ErrBadPosition},
		{"future segment", Position{Segment: end.Segment + 1, Offset: HeaderSize}, ErrBadPosition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := j.NewReader(tt.from); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestTailingReader(t *testing.T) {
	j, _ := smallJournal(t, 3)
	r, err := j.NewReader(j.DurableEnd())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	type result struct {
		rec Record
		err error
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := make(chan result, 1)
	go func() {
		rec, err := r.Next(ctx)
		got <- result{rec, err}
	}()
	// Appended but not yet durable: the reader must not see it.
	if _, err := j.Append([]Record{setRecord("db", "tail", "v")}); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-got:
		t.Fatalf("reader returned before the record was durable: %+v, %v", res.rec, res.err)
	default:
	}
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	res := <-got
	if res.err != nil || recordKey(res.rec) != "db/tail" {
		t.Fatalf("tailing reader got %+v, %v", res.rec, res.err)
	}

	// A cancelled context ends a blocked Next.
	cctx, ccancel := context.WithCancel(context.Background())
	go func() {
		rec, err := r.Next(cctx)
		got <- result{rec, err}
	}()
	ccancel()
	if res := <-got; !errors.Is(res.err, context.Canceled) {
		t.Fatalf("after cancel: %+v, %v", res.rec, res.err)
	}

	// Closing the journal wakes a blocked reader.
	go func() {
		rec, err := r.Next(ctx)
		got <- result{rec, err}
	}()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if res := <-got; !errors.Is(res.err, ErrClosed) {
		t.Fatalf("after close: %+v, %v", res.rec, res.err)
	}
}

// TestReaderFollowsRolls tails a journal while it rolls through many small
// segments.
func TestReaderFollowsRolls(t *testing.T) {
	const n = 300
	j, _ := smallJournal(t, 0)
	r, err := j.NewReader(Position{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	written := make(chan []Record, 1)
	go func() {
		var recs []Record
		for i := range n {
			rec := []Record{setRecord("db", fmt.Sprintf("k%d", i), "value value value")}
			if _, err := j.Commit(ctx, rec); err != nil {
				written <- nil
				return
			}
			recs = append(recs, rec[0])
		}
		written <- recs
	}()
	var read []Record
	for range n {
		rec, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("after %d records: %v", len(read), err)
		}
		read = append(read, rec)
	}
	recs := <-written
	if len(recs) != n {
		t.Fatal("writer failed")
	}
	for i := range recs {
		if !sameRecord(read[i], recs[i]) {
			t.Fatalf("record %d: got %+v, want %+v", i, read[i], recs[i])
		}
	}
	if segs := len(j.Segments()); segs < 10 {
		t.Fatalf("only %d segments: the test does not exercise rolls", segs)
	}
}

func TestReaderOwnsRecords(t *testing.T) {
	j, _ := smallJournal(t, 2)
	r, err := j.NewReader(Position{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a, err := r.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	key := string(a.Key)
	if _, err := r.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	if string(a.Key) != key {
		t.Fatalf("first record's key changed to %q after the next read", a.Key)
	}
	a.Key = append(a.Key, "more"...)
	if string(a.Value) != "some value of a few bytes" {
		t.Fatalf("appending to Key overwrote Value: %q", a.Value)
	}
}
