package journal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// decodeFrames decodes records written back to back.
func decodeFrames(tb testing.TB, frames []byte) []Record {
	tb.Helper()
	var out []Record
	for len(frames) > 0 {
		rec, n, err := DecodeRecord(frames)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, rec)
		frames = frames[n:]
	}
	return out
}

func TestReadEncodedSegmentBySegment(t *testing.T) {
	j, recs := smallJournal(t, 60)
	segs := j.Segments()
	var got []Record
	calls := 0
	for pos := (Position{}); ; calls++ {
		frames, next, err := j.ReadEncoded(pos, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(frames) == 0 {
			if next != pos {
				t.Fatalf("empty result from %s moves to %s", pos, next)
			}
			break
		}
		batch := decodeFrames(t, frames)
		s := segs[batch[0].Pos.Segment-segs[0].Number]
		for _, r := range batch {
			if r.Pos.Segment != s.Number {
				t.Fatalf("one call from %s returned records of %s and of segment %d", pos, s.Name, r.Pos.Segment)
			}
		}
		if batch[0].Pos != s.First || next != s.End {
			t.Fatalf("call from %s returned %s to %s; %s holds %s to %s", pos, batch[0].Pos, next, s.Name, s.First, s.End)
		}
		if sealed := s.Number < j.DurableEnd().Segment; j.SegmentEnd(next) != sealed {
			t.Fatalf("SegmentEnd(%s) = %v for a segment sealed %v", next, !sealed, sealed)
		}
		got = append(got, batch...)
		pos = next
	}
	checkRecords(t, got, recs)
	if calls != len(segs) {
		t.Fatalf("%d calls for %d segments", calls, len(segs))
	}
	for _, p := range []Position{{}, recs[1].Pos, segs[1].First, {Segment: 99, Offset: HeaderSize}} {
		if j.SegmentEnd(p) {
			t.Fatalf("SegmentEnd(%s) is true", p)
		}
	}
}

func TestReadEncodedMaxBytes(t *testing.T) {
	j, recs := smallJournal(t, 60)
	size := recs[0].Size()
	for _, maxBytes := range []int{0, 1, size, 2*size + size/2, 5 * size} {
		var got []Record
		for pos := (Position{}); ; {
			frames, next, err := j.ReadEncoded(pos, maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) == 0 && next == pos {
				break
			}
			batch := decodeFrames(t, frames)
			if len(frames) > maxBytes && len(batch) > 1 {
				t.Fatalf("maxBytes %d: %d bytes in %d records", maxBytes, len(frames), len(batch))
			}
			if !j.SegmentEnd(next) && next != j.DurableEnd() && len(frames)+size <= maxBytes {
				t.Fatalf("maxBytes %d: stopped at %s after %d bytes with room for another record", maxBytes, next, len(frames))
			}
			got = append(got, batch...)
			pos = next
		}
		checkRecords(t, got, recs)
	}
}

func TestReadEncodedPositions(t *testing.T) {
	j, recs := smallJournal(t, 60)
	segs := j.Segments()
	inside := recs[17].Pos
	inside.Offset += 3
	beyond := j.DurableEnd()
	beyond.Offset += 10
	tests := []struct {
		name    string
		from    Position
		first   int // index of the first record returned; len(recs): none
		wantErr error
	}{
		{"zero means oldest", Position{}, 0, nil},
		{"middle record", recs[17].Pos, 17, nil},
		{"record epoch ignored", Position{Epoch: 9, Segment: recs[17].Pos.Segment, Offset: recs[17].Pos.Offset}, 17, nil},
		{"segment start", segs[2].First, indexAt(recs, segs[2].First), nil},
		{"segment offset zero", Position{Segment: segs[2].Number}, indexAt(recs, segs[2].First), nil},
		{"end of a sealed segment", segs[1].End, indexAt(recs, segs[2].First), nil},
		{"durable end", j.DurableEnd(), len(recs), nil},
		{"inside a record", inside, 0, ErrBadPosition},
		{"inside the header", Position{Segment: segs[1].Number, Offset: 10}, 0, ErrBadPosition},
		{"past the records of a sealed segment", Position{Segment: segs[1].Number, Offset: segs[1].End.Offset + 8}, 0, ErrBadPosition},
		{"beyond the durable end", beyond, 0, ErrBadPosition},
		{"segment beyond the last", Position{Segment: beyond.Segment + 1, Offset: HeaderSize}, 0, ErrBadPosition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frames, next, err := j.ReadEncoded(tt.from, 1<<20)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.from.String()) {
					t.Fatalf("%q does not name %s", err, tt.from)
				}
				return
			}
			if tt.first == len(recs) {
				if len(frames) != 0 || next != tt.from {
					t.Fatalf("at the end: %d bytes, next %s", len(frames), next)
				}
				return
			}
			if got := decodeFrames(t, frames); !sameRecord(got[0], recs[tt.first]) {
				t.Fatalf("first record %+v, want %+v", got[0], recs[tt.first])
			}
		})
	}

	if _, err := j.Purge(PurgePolicy{}, recs[40].Pos); err != nil {
		t.Fatal(err)
	}
	if _, _, err := j.ReadEncoded(recs[0].Pos, 1<<20); !errors.Is(err, ErrPurged) {
		t.Fatalf("from a purged position: %v", err)
	}
}

func TestReadEncodedOnlyDurable(t *testing.T) {
	j, _ := smallJournal(t, 3)
	end := j.DurableEnd()
	if _, err := j.Append([]Record{setRecord("db", "pending", "v")}); err != nil {
		t.Fatal(err)
	}
	frames, next, err := j.ReadEncoded(end, 1<<20)
	if err != nil || len(frames) != 0 || next != end {
		t.Fatalf("before the sync: %d bytes, next %s, %v", len(frames), next, err)
	}
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	frames, next, err = j.ReadEncoded(end, 1<<20)
	if err != nil || next != j.DurableEnd() {
		t.Fatalf("after the sync: next %s, %v", next, err)
	}
	if got := decodeFrames(t, frames); len(got) != 1 || recordKey(got[0]) != "db/pending" {
		t.Fatalf("after the sync: %+v", got)
	}
}

func TestReadEncodedAfterFailure(t *testing.T) {
	inj := &faultInjector{}
	j := openTest(t, testDir, testOptions(t, errorfs.Wrap(vfs.NewMem(), inj)))
	commit(t, j, setRecord("db", "k", "v"))
	inj.failSync.Store(true)
	if _, err := j.Commit(t.Context(), []Record{setRecord("db", "lost", "v")}); err == nil {
		t.Fatal("commit succeeded")
	}
	frames, next, err := j.ReadEncoded(Position{}, 1<<20)
	if err != nil || len(decodeFrames(t, frames)) != 1 {
		t.Fatalf("durable record: %d bytes, %v", len(frames), err)
	}
	if _, _, err := j.ReadEncoded(next, 1<<20); !errors.Is(err, ErrFailed) {
		t.Fatalf("after the durable records: %v", err)
	}
	_ = j.Close()
	if _, _, err := j.ReadEncoded(Position{}, 1<<20); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestReadEncodedDetectsCorruption(t *testing.T) {
	fs := vfs.NewMem()
	opts := testOptions(t, fs)
	opts.SegmentSize = 512
	j := openTest(t, testDir, opts)
	var recs []Record
	for len(j.Segments()) < 2 {
		r := []Record{setRecord("db", "k", "some value")}
		commit(t, j, r...)
		recs = append(recs, r[0])
	}
	bad := recs[2].Pos
	editFile(t, fs, segPath(fs, bad.Segment), func(b []byte) []byte { b[bad.Offset+frameHeaderSize+5] ^= 1; return b })
	_, _, err := j.ReadEncoded(Position{}, 1<<20)
	if want := fmt.Sprintf("journal.000001 at offset %d:", bad.Offset); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v", err)
	}
}

// TestReadWrittenShipsBeforeTheSync holds the group commit inside its sync and checks that the records it wrote can already
// be read for shipping (ReadWritten, WrittenNotify) while ReadEncoded, bound to what is durable, does not return them yet.
func TestReadWrittenShipsBeforeTheSync(t *testing.T) {
	hold := newSyncHold()
	j := openTest(t, testDir, testOptions(t, hold.fs))
	start := j.DurableEnd()
	notify := j.WrittenNotify()

	hold.armed.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := j.Commit(context.Background(), []Record{setRecord("db", "k", "v")})
		done <- err
	}()
	<-hold.entered // written, not yet synced
	<-notify
	frames, next, err := j.ReadWritten(start, 1<<20)
	if err != nil || len(frames) == 0 || next != j.WrittenEnd() {
		t.Fatalf("ReadWritten during the sync: %d bytes, next %s (written end %s), %v", len(frames), next, j.WrittenEnd(), err)
	}
	if rec, _, err := DecodeRecord(frames); err != nil || string(rec.Key) != "k" {
		t.Fatalf("shipped record %+v, %v", rec, err)
	}
	if frames, _, err := j.ReadEncoded(start, 1<<20); err != nil || len(frames) != 0 {
		t.Fatalf("ReadEncoded returned %d bytes that are not durable yet (%v)", len(frames), err)
	}
	close(hold.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if j.DurableEnd() != j.WrittenEnd() {
		t.Fatalf("after the sync: durable %s, written %s", j.DurableEnd(), j.WrittenEnd())
	}
}
