package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// damageJournal writes a closed journal of 512-byte segments holding 20
// one-record transactions and returns its records.
func damageJournal(tb testing.TB) (vfs.FS, Options, []Record) {
	tb.Helper()
	fs := vfs.NewMem()
	opts := testOptions(tb, fs)
	opts.SegmentSize = 512
	j, err := Open(testDir, opts)
	if err != nil {
		tb.Fatal(err)
	}
	var recs []Record
	for i := range 20 {
		r := []Record{setRecord("db", fmt.Sprintf("key%02d", i), "value of the record")}
		commit(tb, j, r...)
		recs = append(recs, r[0])
	}
	if err := j.Close(); err != nil {
		tb.Fatal(err)
	}
	return fs, opts, recs
}

// editFile applies edit to the contents of a file.
func editFile(tb testing.TB, fs vfs.FS, path string, edit func([]byte) []byte) {
	tb.Helper()
	writeFile(tb, fs, path, edit(readFile(tb, fs, path)))
}

func zeroRange(b []byte, from, to uint64) []byte {
	clear(b[from:to])
	return b
}

func TestRecoveryFromDamage(t *testing.T) {
	type damage struct {
		fs   vfs.FS
		recs []Record
		last uint64 // number of the last segment
	}
	lastRec := func(d damage) Record { return d.recs[len(d.recs)-1] }
	tests := []struct {
		name    string
		damage  func(t *testing.T, d damage)
		keep    int                  // records kept (when Open succeeds)
		cutAt   func(d damage) int64 // expected TornTail offset; nil: no torn tail
		wantErr error
		errAt   func(d damage) (uint64, int64) // segment and offset the error names
	}{
		{
			name: "half-written last record",
			damage: func(t *testing.T, d damage) {
				r := lastRec(d)
				editFile(t, d.fs, segPath(d.fs, d.last), func(b []byte) []byte {
					return zeroRange(b, r.Pos.Offset+uint64(r.Size()/2), r.Pos.Offset+uint64(r.Size()))
				})
			},
			keep: 19, cutAt: func(d damage) int64 { return int64(lastRec(d).Pos.Offset) },
		},
		{
			name: "file ends inside a frame header",
			damage: func(t *testing.T, d damage) {
				editFile(t, d.fs, segPath(d.fs, d.last), func(b []byte) []byte { return b[:lastRec(d).Pos.Offset+5] })
			},
			keep: 19, cutAt: func(d damage) int64 { return int64(lastRec(d).Pos.Offset) },
		},
		{
			name: "file ends inside a payload",
			damage: func(t *testing.T, d damage) {
				r := lastRec(d)
				editFile(t, d.fs, segPath(d.fs, d.last), func(b []byte) []byte { return b[:r.Pos.Offset+uint64(r.Size())-3] })
			},
			keep: 19, cutAt: func(d damage) int64 { return int64(lastRec(d).Pos.Offset) },
		},
		{
			name: "bad checksum on the final record",
			damage: func(t *testing.T, d damage) {
				r := lastRec(d)
				editFile(t, d.fs, segPath(d.fs, d.last), func(b []byte) []byte { b[r.Pos.Offset+12] ^= 0x40; return b })
			},
			keep: 19, cutAt: func(d damage) int64 { return int64(lastRec(d).Pos.Offset) },
		},
		{
			name: "garbage after the last record",
			damage: func(t *testing.T, d damage) {
				r := lastRec(d)
				editFile(t, d.fs, segPath(d.fs, d.last), func(b []byte) []byte {
					end := r.Pos.Offset + uint64(r.Size())
					copy(b[end:], "\x07\x00\x00\x00garbage that is not a record")
					return b
				})
			},
			keep: 20, cutAt: func(d damage) int64 { r := lastRec(d); return int64(r.Pos.Offset) + int64(r.Size()) },
		},
		{
			name: "zero-filled tail",
			damage: func(t *testing.T, d damage) {
				editFile(t, d.fs, segPath(d.fs, d.last), func(b []byte) []byte { return append(b, make([]byte, 3000)...) })
			},
			keep: 20,
		},
		{
			name: "bad record followed by a valid one",
			damage: func(t *testing.T, d damage) {
				r := d.recs[len(d.recs)-2]
				if r.Pos.Segment != d.last {
					t.Skip("the last two records are in different segments")
				}
				editFile(t, d.fs, segPath(d.fs, d.last), func(b []byte) []byte { b[r.Pos.Offset+10] ^= 1; return b })
			},
			wantErr: ErrCorrupt,
			errAt:   func(d damage) (uint64, int64) { r := d.recs[len(d.recs)-2]; return r.Pos.Segment, int64(r.Pos.Offset) },
		},
		{
			name: "valid record after zeros",
			damage: func(t *testing.T, d damage) {
				r := lastRec(d)
				moved := r
				moved.Pos.Offset += 100
				editFile(t, d.fs, segPath(d.fs, d.last), func(b []byte) []byte {
					zeroRange(b, r.Pos.Offset, r.Pos.Offset+uint64(r.Size()))
					return append(b[:moved.Pos.Offset], AppendRecord(nil, &moved)...)
				})
			},
			wantErr: ErrCorrupt,
			errAt:   func(d damage) (uint64, int64) { r := lastRec(d); return r.Pos.Segment, int64(r.Pos.Offset) },
		},
		{
			name: "bad final record of a sealed segment",
			damage: func(t *testing.T, d damage) {
				r := lastOfSegment(d.recs, 1)
				editFile(t, d.fs, segPath(d.fs, 1), func(b []byte) []byte { b[r.Pos.Offset+9] ^= 1; return b })
			},
			wantErr: ErrCorrupt,
			errAt:   func(d damage) (uint64, int64) { return 1, int64(lastOfSegment(d.recs, 1).Pos.Offset) },
		},
		{
			name: "data after the end of a sealed segment",
			damage: func(t *testing.T, d damage) {
				r := lastOfSegment(d.recs, 1)
				editFile(t, d.fs, segPath(d.fs, 1), func(b []byte) []byte {
					b[r.Pos.Offset+uint64(r.Size())+20] = 1
					return b
				})
			},
			wantErr: ErrCorrupt,
			errAt: func(d damage) (uint64, int64) {
				r := lastOfSegment(d.recs, 1)
				return 1, int64(r.Pos.Offset) + int64(r.Size())
			},
		},
		{
			name: "zero-length last segment",
			damage: func(t *testing.T, d damage) {
				writeFile(t, d.fs, segPath(d.fs, d.last+1), nil)
			},
			keep: 20, cutAt: func(damage) int64 { return 0 },
		},
		{
			name: "last segment preallocated but header lost",
			damage: func(t *testing.T, d damage) {
				writeFile(t, d.fs, segPath(d.fs, d.last+1), make([]byte, 4096))
			},
			keep: 20, cutAt: func(damage) int64 { return 0 },
		},
		{
			name: "last segment with a torn header",
			damage: func(t *testing.T, d damage) {
				b := make([]byte, 2048)
				copy(b, encodeHeader(d.last+1, 1)[:20])
				writeFile(t, d.fs, segPath(d.fs, d.last+1), b)
			},
			keep: 20, cutAt: func(damage) int64 { return 0 },
		},
		{
			name: "empty sealed segment",
			damage: func(t *testing.T, d damage) {
				writeFile(t, d.fs, segPath(d.fs, 1), nil)
			},
			wantErr: ErrCorrupt,
			errAt:   func(damage) (uint64, int64) { return 1, 0 },
		},
		{
			name: "bad segment magic",
			damage: func(t *testing.T, d damage) {
				editFile(t, d.fs, segPath(d.fs, d.last), func(b []byte) []byte { b[0] = 'X'; return b })
			},
			wantErr: ErrCorrupt,
			errAt:   func(d damage) (uint64, int64) { return d.last, 0 },
		},
		{
			name: "header of another segment",
			damage: func(t *testing.T, d damage) {
				first := readFile(t, d.fs, segPath(d.fs, 1))
				editFile(t, d.fs, segPath(d.fs, d.last), func(b []byte) []byte { copy(b, first[:HeaderSize]); return b })
			},
			wantErr: ErrCorrupt,
			errAt:   func(d damage) (uint64, int64) { return d.last, 0 },
		},
		{
			name: "newer record version",
			damage: func(t *testing.T, d damage) {
				r := lastRec(d)
				editFile(t, d.fs, segPath(d.fs, d.last), func(b []byte) []byte {
					start := r.Pos.Offset + frameHeaderSize
					payload := b[start : start+uint64(r.Size()-frameHeaderSize)]
					payload[0] = NewestRecordVersion + 1
					copy(b[r.Pos.Offset:], reframe(payload))
					return b
				})
			},
			wantErr: ErrUnsupportedVersion,
			errAt:   func(d damage) (uint64, int64) { r := lastRec(d); return r.Pos.Segment, int64(r.Pos.Offset) },
		},
		{
			name: "missing middle segment",
			damage: func(t *testing.T, d damage) {
				if err := d.fs.Remove(segPath(d.fs, 2)); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: ErrMissingSegment,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, opts, recs := damageJournal(t)
			d := damage{fs: fs, recs: recs, last: recs[len(recs)-1].Pos.Segment}
			if d.last < 3 {
				t.Fatalf("journal has only %d segments", d.last)
			}
			tt.damage(t, d)

			report, checkErr := Check(fs, testDir)
			j, err := Open(testDir, opts)
			if tt.wantErr != nil {
				if err == nil {
					j.Close()
				}
				t.Logf("Open: %v", err)
				for name, err := range map[string]error{"Open": err, "Check": checkErr} {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("%s: got %v, want %v", name, err, tt.wantErr)
					}
					if tt.errAt != nil {
						seg, off := tt.errAt(d)
						if want := fmt.Sprintf("%s at offset %d:", segmentName(seg), off); !strings.Contains(err.Error(), want) {
							t.Fatalf("%s: %q does not say %q", name, err, want)
						}
					}
				}
				return
			}
			if err != nil || checkErr != nil {
				t.Fatalf("Open: %v; Check: %v", err, checkErr)
			}
			info := j.Recovery()
			if info.TornTail != nil {
				t.Logf("torn tail: %+v", *info.TornTail)
			}
			if info.Records != tt.keep || report.Records != tt.keep {
				t.Fatalf("kept %d records (Check says %d), want %d", info.Records, report.Records, tt.keep)
			}
			switch {
			case tt.cutAt == nil && (info.TornTail != nil || report.TornTail != nil):
				t.Fatalf("unexpected torn tail %+v / %+v", info.TornTail, report.TornTail)
			case tt.cutAt != nil && (info.TornTail == nil || report.TornTail == nil):
				t.Fatalf("no torn tail reported: %+v / %+v", info.TornTail, report.TornTail)
			case tt.cutAt != nil && (info.TornTail.Offset != tt.cutAt(d) || *report.TornTail != *info.TornTail):
				t.Fatalf("torn tail %+v, Check said %+v, want offset %d", info.TornTail, report.TornTail, tt.cutAt(d))
			}
			checkRecords(t, readAll(t, j), recs[:tt.keep])

			// The journal goes on cleanly from the cut.
			commit(t, j, setRecord("db", "after", "recovery"))
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			report, err = Check(fs, testDir)
			if err != nil || report.TornTail != nil || report.Records != tt.keep+1 {
				t.Fatalf("after recovery and a commit: %+v, %v", report, err)
			}
		})
	}
}

func lastOfSegment(recs []Record, seg uint64) Record {
	var last Record
	for _, r := range recs {
		if r.Pos.Segment == seg {
			last = r
		}
	}
	return last
}

func checkRecords(tb testing.TB, got, want []Record) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !sameRecord(got[i], want[i]) {
			tb.Fatalf("record %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestRecoveryCutsIncompleteTransaction(t *testing.T) {
	fs := vfs.NewMem()
	opts := testOptions(t, fs)
	j, err := Open(testDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := []Record{setRecord("db", "a", "1")}
	commit(t, j, done...)
	open := []Record{
		{Type: RecordSet, DB: "db", Key: []byte("b"), Value: []byte("2"), HasValue: true},
		{Type: RecordSet, DB: "db", Key: []byte("c"), Value: []byte("3"), HasValue: true},
	}
	if _, err := j.Append(open[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(open[1:]); err != nil {
		t.Fatal(err)
	}
	// Close syncs the unfinished transaction; it was never acknowledged.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// A torn frame after it as well.
	editFile(t, fs, segPath(fs, 1), func(b []byte) []byte {
		end := open[1].Pos.Offset + uint64(open[1].Size())
		copy(b[end:], "\x30\x00\x00\x00torn")
		return b
	})

	j = openTest(t, testDir, opts)
	info := j.Recovery()
	if info.TornTail == nil || info.TornTail.Offset != int64(open[0].Pos.Offset) || info.Records != 1 || info.Transactions != 1 {
		t.Fatalf("recovery %+v (torn %+v)", info, info.TornTail)
	}
	if !strings.Contains(info.TornTail.Reason, "unfinished transaction") {
		t.Fatalf("reason %q", info.TornTail.Reason)
	}
	next := []Record{setRecord("db", "d", "4")}
	commit(t, j, next...)
	if next[0].Pos != open[0].Pos || next[0].TxnID <= open[0].TxnID {
		t.Fatalf("next record at %s with id %d; cut transaction was at %s with id %d", next[0].Pos, next[0].TxnID, open[0].Pos, open[0].TxnID)
	}
	checkRecords(t, readAll(t, j), append(done, next...))
}

// TestCrashRecovery crashes a journal under concurrent commits and checks
// that recovery keeps every acknowledged transaction, whole, at its position.
func TestCrashRecovery(t *testing.T) {
	for round := range 24 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			crashRound(t, uint64(round))
		})
	}
}

func crashRound(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	mem := vfs.NewCrashableMem()
	opts := testOptions(t, mem)
	opts.SegmentSize = 4096
	j, err := Open(testDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu     sync.Mutex
		acked  = map[string]Position{}
		maxEnd Position // end of the last acknowledged transaction
		wg     sync.WaitGroup
	)
	progress := make(chan struct{}, 1000)
	for w := range 6 {
		valueSize := 10 + rng.IntN(700)
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("%d-%d", w, i)
				recs := []Record{
					{Type: RecordSet, DB: "db", Key: []byte(key + "-a"), Value: bytes.Repeat([]byte{'v'}, valueSize), HasValue: true},
					{Type: RecordSet, DB: "db", Key: []byte(key + "-b"), Value: []byte(key), HasValue: true, TxnEnd: true},
				}
				end, err := j.Commit(ctx, recs)
				if err != nil {
					return
				}
				mu.Lock()
				if maxEnd.Less(end) {
					maxEnd = end
				}
				for _, r := range recs {
					acked[recordKey(r)] = r.Pos
				}
				mu.Unlock()
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		})
	}
	for range 20 + rng.IntN(200) {
		<-progress
	}
	mu.Lock()
	snapshot := make(map[string]Position, len(acked))
	for k, v := range acked {
		snapshot[k] = v
	}
	ackedEnd := maxEnd
	mu.Unlock()
	full := rng.IntN(2) == 0
	cfg := vfs.CrashCloneCfg{}
	if full {
		cfg = vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng}
	}
	crashed := mem.CrashClone(cfg)
	cancel()
	wg.Wait()
	_ = j.Close()

	if full {
		tearLastSegment(t, crashed, ackedEnd, rng)
	}
	j2, err := Open(testDir, testOptions(t, crashed))
	if err != nil {
		t.Fatalf("recover after crash: %v", err)
	}
	defer j2.Close()
	got := readAll(t, j2)
	t.Logf("%d acknowledged, %d recovered in %d segments (full clone %v), torn tail %+v",
		len(snapshot), len(got), j2.Recovery().Segments, full, j2.Recovery().TornTail)
	seen := map[string]Position{}
	for _, r := range got {
		seen[recordKey(r)] = r.Pos
	}
	for k, pos := range snapshot {
		if seen[k] != pos {
			t.Fatalf("acknowledged record %s at %s recovered at %s", k, pos, seen[k])
		}
	}
	for _, r := range got {
		k := string(r.Key)
		other, ok := strings.CutSuffix(k, "-a")
		if ok {
			other += "-b"
		} else {
			other = strings.TrimSuffix(k, "-b") + "-a"
		}
		if _, ok := seen["db/"+other]; !ok {
			t.Fatalf("record %s recovered without the rest of its transaction", k)
		}
	}
	commit(t, j2, setRecord("db", "after", "crash"))
	if got2 := readAll(t, j2); len(got2) != len(got)+1 {
		t.Fatalf("after a commit: %d records, want %d", len(got2), len(got)+1)
	}
}

// tearLastSegment zeroes the last segment from a random offset past the
// acknowledged records, as if the last writes had been cut short.
func tearLastSegment(tb testing.TB, fs vfs.FS, acked Position, rng *rand.Rand) {
	tb.Helper()
	nums, err := listSegments(fs, testDir)
	if err != nil {
		tb.Fatal(err)
	}
	last := nums[len(nums)-1]
	from := int64(HeaderSize)
	if last == acked.Segment {
		from = int64(acked.Offset)
	}
	editFile(tb, fs, segPath(fs, last), func(b []byte) []byte {
		dataEnd := int64(len(bytes.TrimRight(b, "\x00")))
		if dataEnd <= from {
			return b
		}
		at := from + rng.Int64N(dataEnd-from)
		clear(b[at:])
		return b
	})
}

// TestCutIsCrashSafe crashes Open while it cuts a long torn tail, at every
// sync, keeping a random part of the unsynced writes, and checks that the
// next Open still recovers the same records.
func TestCutIsCrashSafe(t *testing.T) {
	base := vfs.NewCrashableMem()
	opts := testOptions(t, base)
	opts.SegmentSize = 1 << 20
	j, err := Open(testDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	var kept []Record
	for i := range 3 {
		r := []Record{setRecord("db", fmt.Sprint(i), "committed")}
		commit(t, j, r...)
		kept = append(kept, r[0])
	}
	// Records larger than a block, so that a crash can keep part of one.
	for i := range 4 {
		big := Record{Type: RecordSet, DB: "db", Key: []byte(fmt.Sprint("open", i)), Value: bytes.Repeat([]byte{'x'}, 5000), HasValue: true}
		if _, err := j.Append([]Record{big}); err != nil {
			t.Fatal(err)
		}
	}
	end := j.AppendedEnd()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	editFile(t, base, segPath(base, 1), func(b []byte) []byte {
		copy(b[end.Offset:], "\x99\x00\x00\x00partial frame")
		return b
	})

	for failAt := 1; ; failAt++ {
		fs := base.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 1))})
		var syncs atomic.Int64
		inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
			if op.Kind == errorfs.OpFileSyncData && syncs.Add(1) == int64(failAt) {
				return errInjected
			}
			return nil
		})
		j, err := Open(testDir, testOptions(t, errorfs.Wrap(fs, inj)))
		if err == nil {
			// Every sync of the cut passed: the test has covered them all.
			checkRecords(t, readAll(t, j), kept)
			j.Close()
			if failAt < 5 {
				t.Fatalf("cut finished after %d syncs; expected one per cut record", failAt-1)
			}
			return
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("crash at sync %d: %v", failAt, err)
		}
		for seed := range 5 {
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(uint64(seed), uint64(failAt)))})
			j2, err := Open(testDir, testOptions(t, crashed))
			if err != nil {
				t.Fatalf("open after a crash at sync %d (seed %d): %v", failAt, seed, err)
			}
			checkRecords(t, readAll(t, j2), kept)
			j2.Close()
		}
	}
}
