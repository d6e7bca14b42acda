package journal

import (
	"errors"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

func truncOptions(tb testing.TB, fs vfs.FS) Options {
	tb.Helper()
	opts := testOptions(tb, fs)
	opts.SegmentSize = 512
	return opts
}

// truncJournal opens a journal in fs holding 40 transactions over several
// segments and epochs, and returns it and its records.
func truncJournal(tb testing.TB, fs vfs.FS) (*Journal, []Record) {
	tb.Helper()
	j := openTest(tb, testDir, truncOptions(tb, fs))
	recs := epochTxns(tb, j, "t", 40)
	if n := len(j.Segments()); n < 5 {
		tb.Fatalf("only %d segments", n)
	}
	return j, recs
}

// segmentFiles lists the segment numbers present in fs, and fails the test
// if a TruncateAfter copy is left over.
func segmentFiles(tb testing.TB, fs vfs.FS) []uint64 {
	tb.Helper()
	names, err := fs.List(testDir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, name := range names {
		if strings.HasSuffix(name, truncatingSuffix) {
			tb.Fatalf("leftover %s", name)
		}
	}
	nums, err := listSegments(fs, testDir)
	if err != nil {
		tb.Fatal(err)
	}
	return nums
}

// firstInTxn is the index of a record of segment seg that does not start a
// transaction.
func firstInTxn(tb testing.TB, recs []Record, seg uint64) int {
	tb.Helper()
	for i := 1; i < len(recs); i++ {
		if recs[i].Pos.Segment == seg && !recs[i-1].TxnEnd && recs[i-1].Pos.Segment == seg {
			return i
		}
	}
	tb.Fatalf("no transaction of two records in segment %d", seg)
	return 0
}

func TestTruncateAfter(t *testing.T) {
	type at func(tb testing.TB, recs []Record, segs []SegmentInfo) (Position, int)
	record := func(seg, nth int) at {
		return func(_ testing.TB, recs []Record, segs []SegmentInfo) (Position, int) {
			i := indexAt(recs, segs[seg].First) + nth
			return recs[i].Pos, i
		}
	}
	tests := []struct {
		name     string
		at       at
		unsynced bool // append records without waiting before truncating
	}{
		{"inside the second segment", record(1, 2), false},
		{"first record", record(0, 0), false},
		{"inside the last segment", func(_ testing.TB, recs []Record, _ []SegmentInfo) (Position, int) {
			return recs[len(recs)-1].Pos, len(recs) - 1
		}, false},
		{"segment start", func(_ testing.TB, recs []Record, segs []SegmentInfo) (Position, int) {
			return segs[2].First, indexAt(recs, segs[2].First)
		}, false},
		{"segment offset zero", func(_ testing.TB, recs []Record, segs []SegmentInfo) (Position, int) {
			return Position{Segment: segs[2].Number}, indexAt(recs, segs[2].First)
		}, false},
		{"end of a sealed segment", func(_ testing.TB, recs []Record, segs []SegmentInfo) (Position, int) {
			return segs[1].End, indexAt(recs, segs[2].First)
		}, false},
		{"inside a transaction", func(tb testing.TB, recs []Record, segs []SegmentInfo) (Position, int) {
			i := firstInTxn(tb, recs, segs[1].Number)
			return recs[i].Pos, i
		}, false},
		{"the end", func(_ testing.TB, recs []Record, _ []SegmentInfo) (Position, int) {
			last := recs[len(recs)-1]
			return Position{Epoch: last.Pos.Epoch, Segment: last.Pos.Segment, Offset: last.Pos.Offset + uint64(last.Size())}, len(recs)
		}, false},
		{"records not yet durable", record(2, 1), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewMem()
			j, recs := truncJournal(t, fs)
			if tt.unsynced {
				extra := []Record{setRecord("db", "pending-1", "v"), setRecord("db", "pending-2", "v")}
				for i := range extra {
					if _, err := j.Append(extra[i : i+1]); err != nil {
						t.Fatal(err)
					}
				}
				recs = append(recs, extra...)
			}
			pos, idx := tt.at(t, recs, j.Segments())
			removed, err := j.TruncateAfter(pos)
			if err != nil {
				t.Fatal(err)
			}
			checkRecords(t, removed, recs[idx:])

			want := pos
			if want.Offset == 0 {
				want.Offset = HeaderSize
			}
			end := j.AppendedEnd()
			if end.Segment != want.Segment || end.Offset != want.Offset || j.DurableEnd() != end {
				t.Fatalf("appended end %s, durable end %s after truncating at %s", end, j.DurableEnd(), pos)
			}
			if idx > 0 && recs[idx-1].Pos.Segment == end.Segment && end.Epoch != recs[idx-1].Pos.Epoch {
				t.Fatalf("end %s does not carry the epoch of the record before it (%s)", end, recs[idx-1].Pos)
			}
			segs := j.Segments()
			if last := segs[len(segs)-1]; last.Number != want.Segment || last.End != end {
				t.Fatalf("last segment %+v, end %s", last, end)
			}
			if nums := segmentFiles(t, fs); nums[len(nums)-1] != want.Segment {
				t.Fatalf("segment files %v after truncating at %s", nums, pos)
			}
			checkRecords(t, readAll(t, j), recs[:idx])

			// Append goes on from pos (or from the next segment, if the
			// record does not fit after pos).
			next := []Record{setRecord("db", "after", "truncation")}
			commit(t, j, next...)
			if p := next[0].Pos; (p.Segment != want.Segment || p.Offset != want.Offset) &&
				(p.Segment != want.Segment+1 || p.Offset != HeaderSize || int64(want.Offset)+int64(next[0].Size()) <= 512) {
				t.Fatalf("first record after truncating at %s is at %s", pos, p)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			report, err := Check(fs, testDir)
			if err != nil || report.Records != idx+1 || report.TornTail != nil {
				t.Fatalf("check after truncating: %+v, %v", report, err)
			}
			j = openTest(t, testDir, truncOptions(t, fs))
			checkRecords(t, readAll(t, j), append(recs[:idx:idx], next...))
		})
	}
}

func TestTruncateAfterRefuses(t *testing.T) {
	tests := []struct {
		name    string
		pos     func(tb testing.TB, j *Journal, recs []Record) Position
		wantErr error
	}{
		{"inside a record", func(_ testing.TB, _ *Journal, recs []Record) Position {
			p := recs[5].Pos
			p.Offset += 2
			return p
		}, ErrBadPosition},
		{"inside the header", func(_ testing.TB, j *Journal, _ []Record) Position {
			return Position{Segment: j.Segments()[1].Number, Offset: 10}
		}, ErrBadPosition},
		{"past the records of a sealed segment", func(_ testing.TB, j *Journal, _ []Record) Position {
			s := j.Segments()[1]
			return Position{Segment: s.Number, Offset: s.End.Offset + 8}
		}, ErrBadPosition},
		{"beyond the end", func(_ testing.TB, j *Journal, _ []Record) Position {
			p := j.DurableEnd()
			p.Offset += 8
			return p
		}, ErrBadPosition},
		{"segment after the last", func(_ testing.TB, j *Journal, _ []Record) Position {
			return Position{Segment: j.DurableEnd().Segment + 1, Offset: HeaderSize}
		}, ErrBadPosition},
		{"purged", func(tb testing.TB, j *Journal, recs []Record) Position {
			if _, err := j.Purge(PurgePolicy{}, j.Segments()[3].First); err != nil {
				tb.Fatal(err)
			}
			return recs[0].Pos
		}, ErrPurged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewMem()
			j, _ := truncJournal(t, fs)
			pos := tt.pos(t, j, readAll(t, j))
			before, end := readAll(t, j), j.AppendedEnd()
			removed, err := j.TruncateAfter(pos)
			if !errors.Is(err, tt.wantErr) || removed != nil {
				t.Fatalf("got %d records, %v; want %v", len(removed), err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), pos.String()) {
				t.Fatalf("%q does not name %s", err, pos)
			}
			if j.AppendedEnd() != end {
				t.Fatalf("end moved from %s to %s", end, j.AppendedEnd())
			}
			checkRecords(t, readAll(t, j), before)
			commit(t, j, setRecord("db", "still", "usable"))
		})
	}

	j, _ := truncJournal(t, vfs.NewMem())
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.TruncateAfter(Position{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// TestTruncateAfterIsCrashSafe fails TruncateAfter at every sync, removal
// and rename, crashes keeping a random part of what was not synced, and
// checks that the journal opens holding a prefix of the old one from which
// TruncateAfter finishes the job.
func TestTruncateAfterIsCrashSafe(t *testing.T) {
	base := vfs.NewCrashableMem()
	j, recs := truncJournal(t, base)
	segs := j.Segments()
	idx := indexAt(recs, segs[1].First) + 2
	for !recs[idx-1].TxnEnd {
		idx++
	}
	pos := recs[idx].Pos
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	for failAt := 1; ; failAt++ {
		fs := base.CrashClone(vfs.CrashCloneCfg{})
		var ops atomic.Int64
		var armed atomic.Bool
		inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
			switch op.Kind {
			case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpRemove, errorfs.OpRename:
				if armed.Load() && ops.Add(1) == int64(failAt) {
					return errInjected
				}
			}
			return nil
		})
		j, err := Open(testDir, truncOptions(t, errorfs.Wrap(fs, inj)))
		if err != nil {
			t.Fatal(err)
		}
		armed.Store(true)
		removed, err := j.TruncateAfter(pos)
		_ = j.Close()
		if err == nil {
			checkRecords(t, removed, recs[idx:])
			if failAt < 5 {
				t.Fatalf("truncation finished after %d steps; expected a removal and sync per later segment", failAt-1)
			}
			return
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("fail at step %d: %v", failAt, err)
		}
		for seed := range 3 {
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(uint64(seed), uint64(failAt)))})
			j2, err := Open(testDir, truncOptions(t, crashed))
			if err != nil {
				t.Fatalf("open after a crash at step %d (seed %d): %v", failAt, seed, err)
			}
			segmentFiles(t, crashed)
			got := readAll(t, j2)
			if len(got) < idx {
				t.Fatalf("crash at step %d (seed %d): %d records left, the truncation keeps %d", failAt, seed, len(got), idx)
			}
			checkRecords(t, got, recs[:len(got)])
			removed, err := j2.TruncateAfter(pos)
			if err != nil {
				t.Fatalf("truncate again after a crash at step %d (seed %d): %v", failAt, seed, err)
			}
			checkRecords(t, removed, recs[idx:len(got)])
			checkRecords(t, readAll(t, j2), recs[:idx])
			if err := j2.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRejoinWithDivergentTail has a former primary cut the tail its backup
// never received, then take the new primary's records.
func TestRejoinWithDivergentTail(t *testing.T) {
	oldPrimary, ofs := primaryJournal(t)
	backup, bfs := primaryJournal(t)
	epochTxns(t, oldPrimary, "shared", 30)
	shipEncoded(t, oldPrimary, backup, 1000)
	common := backup.DurableEnd()
	tail := epochTxns(t, oldPrimary, "lost", 12)

	// The backup takes over in a new epoch and writes on.
	if err := backup.SetEpoch(oldPrimary.Epoch() + 1); err != nil {
		t.Fatal(err)
	}
	epochTxns(t, backup, "new", 12)

	removed, err := oldPrimary.TruncateAfter(common)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, removed, tail)
	shipEncoded(t, backup, oldPrimary, 1000)
	sameCopies(t, backup, bfs, oldPrimary, ofs, true)
	checkRecords(t, readAll(t, oldPrimary), readAll(t, backup))
	if oldPrimary.Epoch() != backup.Epoch() {
		t.Fatalf("epochs %d and %d", oldPrimary.Epoch(), backup.Epoch())
	}
}
