package journal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// purgeJournal has ten segments (one hour apart by the fake clock) and
// returns the first record of each.
func purgeJournal(tb testing.TB) (*Journal, *fakeClock, []Record) {
	tb.Helper()
	clock := newFakeClock()
	opts := testOptions(tb, vfs.NewMem())
	opts.SegmentSize = 256
	opts.Now = clock.Now
	j := openTest(tb, testDir, opts)
	var firsts []Record
	for i := 0; len(j.Segments()) < 10 || j.DurableEnd().Segment < 10; i++ {
		rec := []Record{setRecord("db", fmt.Sprint(i), "a value long enough to fill segments quickly")}
		commit(tb, j, rec...)
		if uint64(len(firsts)) < rec[0].Pos.Segment {
			firsts = append(firsts, rec[0])
			clock.Advance(time.Hour)
		}
	}
	return j, clock, firsts
}

func names(nums ...int) []string {
	var out []string
	for _, n := range nums {
		out = append(out, segmentName(uint64(n)))
	}
	return out
}

func TestPurgeRetention(t *testing.T) {
	tests := []struct {
		name    string
		policy  PurgePolicy
		floor   func(firsts []Record) Position
		retain  map[string]int // consumer -> index of the record it needs
		release []string
		want    []string
	}{
		{"zero floor keeps everything", PurgePolicy{}, func([]Record) Position { return Position{} }, nil, nil, nil},
		{"all but the current segment", PurgePolicy{}, nil, nil, nil, names(1, 2, 3, 4, 5, 6, 7, 8, 9)},
		{"keep segments", PurgePolicy{KeepSegments: 3}, nil, nil, nil, names(1, 2, 3, 4, 5, 6, 7)},
		{"floor", PurgePolicy{}, func(f []Record) Position { return f[4].Pos }, nil, nil, names(1, 2, 3, 4)},
		{"floor inside a segment", PurgePolicy{}, func(f []Record) Position {
			return Position{Segment: f[4].Pos.Segment, Offset: f[4].Pos.Offset + 50}
		}, nil, nil, names(1, 2, 3, 4)},
		{"retained consumer", PurgePolicy{}, nil, map[string]int{"db": 3}, nil, names(1, 2, 3)},
		{"slowest consumer wins", PurgePolicy{}, func(f []Record) Position { return f[6].Pos },
			map[string]int{"backup": 5, "async": 2}, nil, names(1, 2)},
		{"released consumer", PurgePolicy{}, nil, map[string]int{"db": 3, "gone": 1}, []string{"gone"}, names(1, 2, 3)},
		{"max age", PurgePolicy{MaxAge: 5*time.Hour + time.Minute}, nil, nil, nil, names(1, 2, 3, 4)},
		{"max age and keep", PurgePolicy{MaxAge: time.Hour / 2, KeepSegments: 8}, nil, nil, nil, names(1, 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, _, firsts := purgeJournal(t)
			floor := j.DurableEnd()
			if tt.floor != nil {
				floor = tt.floor(firsts)
			}
			for consumer, i := range tt.retain {
				j.Retain(consumer, firsts[i].Pos)
			}
			for _, consumer := range tt.release {
				j.Release(consumer)
			}
			removed, err := j.Purge(tt.policy, floor)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(removed, tt.want) {
				t.Fatalf("removed %v, want %v", removed, tt.want)
			}
			segs := j.Segments()
			if want := uint64(len(tt.want) + 1); segs[0].Number != want || j.FirstPosition().Segment != want {
				t.Fatalf("oldest segment %d, first position %s, want segment %d", segs[0].Number, j.FirstPosition(), want)
			}
			left, err := j.fs.List(testDir)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range tt.want {
				if slices.Contains(left, name) {
					t.Fatalf("%s still on disk", name)
				}
			}
			if got := readAll(t, j); len(got) == 0 || got[0].Pos.Segment != segs[0].Number {
				t.Fatalf("read after purge starts at %v", got[0].Pos)
			}
		})
	}
}

func TestPurgedReader(t *testing.T) {
	j, _, firsts := purgeJournal(t)
	r, err := j.NewReader(Position{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Purge(PurgePolicy{}, firsts[3].Pos); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(context.Background()); !errors.Is(err, ErrPurged) {
		t.Fatalf("reader in a purged segment: %v", err)
	}
	if _, err := j.NewReader(firsts[1].Pos); !errors.Is(err, ErrPurged) {
		t.Fatalf("new reader in a purged segment: %v", err)
	}
	r2, err := j.NewReader(Position{})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if rec, err := r2.Next(context.Background()); err != nil || rec.Pos != firsts[3].Pos {
		t.Fatalf("reader from the oldest: %+v, %v", rec.Pos, err)
	}
}

func TestReopenAfterPurge(t *testing.T) {
	mem := vfs.NewMem()
	opts := testOptions(t, mem)
	opts.SegmentSize = 256
	j, err := Open(testDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		commit(t, j, setRecord("db", fmt.Sprint(i), "a value long enough to fill segments quickly"))
	}
	removed, err := j.Purge(PurgePolicy{KeepSegments: 2}, j.DurableEnd())
	if err != nil || len(removed) == 0 {
		t.Fatalf("purge: %v, %v", removed, err)
	}
	end := j.DurableEnd()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openTest(t, testDir, opts)
	if info := j.Recovery(); info.Segments != 2 || info.End != end || info.First.Segment != uint64(len(removed)+1) {
		t.Fatalf("recovery after purge: %+v", info)
	}
}

// A reader left exactly at the end of the newest purged segment lost nothing: it goes on in the oldest segment, also after a
// reopen; anywhere earlier is purged. A damaged record of that end is ignored (the position is then reported purged).
func TestReadFromThePurgedEnd(t *testing.T) {
	j, _, firsts := purgeJournal(t)
	segs := j.Segments()
	end3, end5 := segs[2].End, segs[4].End
	if _, err := j.Purge(PurgePolicy{}, firsts[3].Pos); err != nil {
		t.Fatal(err)
	}
	check := func(when string, j *Journal, at Position, next Record) {
		t.Helper()
		if j.Purged(at) {
			t.Fatalf("%s: %s reported purged", when, at)
		}
		r, err := j.NewReader(at)
		if err != nil {
			t.Fatalf("%s: reader from %s: %v", when, at, err)
		}
		defer r.Close()
		if rec, err := r.Next(context.Background()); err != nil || rec.Pos != next.Pos {
			t.Fatalf("%s: reader from %s: %+v, %v; want %s", when, at, rec.Pos, err, next.Pos)
		}
		frames, _, err := j.ReadEncoded(at, 1<<20)
		if err != nil {
			t.Fatalf("%s: ReadEncoded from %s: %v", when, at, err)
		}
		if rec, _, err := DecodeRecord(frames); err != nil || rec.Pos != next.Pos {
			t.Fatalf("%s: ReadEncoded from %s: %+v, %v; want %s", when, at, rec.Pos, err, next.Pos)
		}
	}
	purged := func(when string, j *Journal, at Position) {
		t.Helper()
		if !j.Purged(at) {
			t.Fatalf("%s: %s not reported purged", when, at)
		}
		if _, err := j.NewReader(at); !errors.Is(err, ErrPurged) {
			t.Fatalf("%s: reader from %s: %v", when, at, err)
		}
		if _, _, err := j.ReadEncoded(at, 1<<20); !errors.Is(err, ErrPurged) {
			t.Fatalf("%s: ReadEncoded from %s: %v", when, at, err)
		}
	}
	check("after the purge", j, end3, firsts[3])
	purged("after the purge", j, segs[1].End)
	purged("after the purge", j, Position{Epoch: end3.Epoch, Segment: end3.Segment, Offset: HeaderSize})
	if j.Purged(Position{}) || j.Purged(firsts[3].Pos) {
		t.Fatal("the oldest position reported purged")
	}

	opts := j.opts
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openTest(t, testDir, opts)
	check("reopened", j, end3, firsts[3])

	if _, err := j.Purge(PurgePolicy{}, firsts[5].Pos); err != nil {
		t.Fatal(err)
	}
	check("after a second purge", j, end5, firsts[5])
	purged("after a second purge", j, end3)

	path := opts.FS.PathJoin(testDir, purgedEndFile)
	data := readFile(t, opts.FS, path)
	data[10] ^= 0xff
	writeFile(t, opts.FS, path, data)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openTest(t, testDir, opts)
	purged("with a damaged record of the purged end", j, end5)
	if got := readAll(t, j); len(got) == 0 || got[0].Pos != firsts[5].Pos {
		t.Fatalf("the journal reads from %+v after a damaged record of the purged end", got[0].Pos)
	}
}
