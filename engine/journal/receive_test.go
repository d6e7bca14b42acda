package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// epochTxns commits n transactions of one or two records on j, raising the
// epoch before every seventh, and returns the records.
func epochTxns(tb testing.TB, j *Journal, prefix string, n int) []Record {
	tb.Helper()
	var out []Record
	for i := range n {
		if i%7 == 6 {
			if err := j.SetEpoch(j.Epoch() + 1); err != nil {
				tb.Fatal(err)
			}
		}
		key := fmt.Sprintf("%s%03d", prefix, i)
		recs := []Record{{Type: RecordSet, DB: "db", Key: []byte(key + "-a"), Value: bytes.Repeat([]byte{'v'}, 10+i%40), HasValue: true}}
		if i%3 == 0 {
			recs = append(recs, Record{Type: RecordKill, DB: "db", Key: []byte(key + "-b"), Before: []byte("old"), HasBefore: true})
		}
		recs[len(recs)-1].TxnEnd = true
		commit(tb, j, recs...)
		out = append(out, recs...)
	}
	return out
}

// primaryJournal opens a journal of 512-byte segments in its own memory
// file system.
func primaryJournal(tb testing.TB) (*Journal, vfs.FS) {
	tb.Helper()
	fs := vfs.NewMem()
	opts := testOptions(tb, fs)
	opts.SegmentSize = 512
	return openTest(tb, testDir, opts), fs
}

// shipEncoded copies what src holds beyond dst's end into dst with
// ReadEncoded and AppendEncoded, maxBytes at a time, and syncs dst.
func shipEncoded(tb testing.TB, src, dst *Journal, maxBytes int) {
	tb.Helper()
	pos := dst.AppendedEnd()
	for {
		frames, next, err := src.ReadEncoded(pos, maxBytes)
		if err != nil {
			tb.Fatalf("read encoded from %s: %v", pos, err)
		}
		if len(frames) == 0 && next == pos {
			break
		}
		if len(frames) > 0 {
			end, n, err := dst.AppendEncoded(frames)
			if err != nil {
				tb.Fatalf("append encoded %d bytes from %s: %v", len(frames), pos, err)
			}
			if n == 0 || end.Segment != next.Segment || end.Offset != next.Offset {
				tb.Fatalf("appended %d records ending at %s; the sender's next is %s", n, end, next)
			}
		}
		pos = next
	}
	if err := dst.Sync(); err != nil {
		tb.Fatal(err)
	}
}

// shipRecords copies what src holds beyond dst's end into dst with a Reader
// and AppendReceived, batch records at a time, and syncs dst.
func shipRecords(tb testing.TB, src, dst *Journal, batch int) {
	tb.Helper()
	r, err := src.NewReader(dst.AppendedEnd())
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	var recs []Record
	flush := func() {
		if len(recs) == 0 {
			return
		}
		if _, err := dst.AppendReceived(recs); err != nil {
			tb.Fatalf("append %d received records from %s: %v", len(recs), recs[0].Pos, err)
		}
		recs = recs[:0]
	}
	for {
		rec, err := r.Next(done)
		if errors.Is(err, context.Canceled) {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		if recs = append(recs, rec); len(recs) == batch {
			flush()
		}
	}
	flush()
	if err := dst.Sync(); err != nil {
		tb.Fatal(err)
	}
}

// sameCopies checks that two journals hold the same segments with the same
// bytes: from the start of each file if headers, else from HeaderSize (a
// segment re-initialised by recovery has its header written locally).
func sameCopies(tb testing.TB, a *Journal, fsA vfs.FS, b *Journal, fsB vfs.FS, headers bool) {
	tb.Helper()
	segsA, segsB := a.Segments(), b.Segments()
	if len(segsA) != len(segsB) {
		tb.Fatalf("%d segments and %d", len(segsA), len(segsB))
	}
	from := uint64(HeaderSize)
	if headers {
		from = 0
	}
	for i := range segsA {
		sa, sb := segsA[i], segsB[i]
		sa.ModTime, sb.ModTime = time.Time{}, time.Time{}
		if !headers {
			sa.First, sb.First = Position{}, Position{}
		}
		if sa != sb {
			tb.Fatalf("segment %d: %+v and %+v", i, sa, sb)
		}
		da := readFile(tb, fsA, segPath(fsA, sa.Number))[from:sa.End.Offset]
		db := readFile(tb, fsB, segPath(fsB, sb.Number))[from:sb.End.Offset]
		if !bytes.Equal(da, db) {
			tb.Fatalf("%s differs between the copies", sa.Name)
		}
	}
}

func TestShipToReplica(t *testing.T) {
	tests := []struct {
		name string
		ship func(tb testing.TB, src, dst *Journal)
	}{
		{"encoded", func(tb testing.TB, src, dst *Journal) { shipEncoded(tb, src, dst, 300) }},
		{"encoded one record at a time", func(tb testing.TB, src, dst *Journal) { shipEncoded(tb, src, dst, 1) }},
		{"encoded a segment at a time", func(tb testing.TB, src, dst *Journal) { shipEncoded(tb, src, dst, 1<<20) }},
		{"records", func(tb testing.TB, src, dst *Journal) { shipRecords(tb, src, dst, 5) }},
		{"records one at a time", func(tb testing.TB, src, dst *Journal) { shipRecords(tb, src, dst, 1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			primary, pfs := primaryJournal(t)
			replica, rfs := primaryJournal(t)
			want := epochTxns(t, primary, "a", 40)
			tt.ship(t, primary, replica)
			want = append(want, epochTxns(t, primary, "b", 40)...)
			tt.ship(t, primary, replica)

			if n := len(primary.Segments()); n < 10 {
				t.Fatalf("only %d segments: the test does not exercise rolls", n)
			}
			sameCopies(t, primary, pfs, replica, rfs, true)
			checkRecords(t, readAll(t, replica), want)
			last := want[len(want)-1]
			if replica.Epoch() != last.Pos.Epoch || replica.DurableEnd() != primary.DurableEnd() {
				t.Fatalf("replica at epoch %d, end %s; primary at epoch %d, end %s",
					replica.Epoch(), replica.DurableEnd(), last.Pos.Epoch, primary.DurableEnd())
			}

			// The replica goes on as a primary: positions, epochs and
			// transaction ids continue.
			if err := replica.SetEpoch(replica.Epoch() + 1); err != nil {
				t.Fatal(err)
			}
			end := replica.DurableEnd()
			next := []Record{setRecord("db", "promoted", "v")}
			commit(t, replica, next...)
			if p := next[0].Pos; p.Epoch != end.Epoch+1 || (p.Offset != end.Offset && p.Offset != HeaderSize) || next[0].TxnID <= last.TxnID {
				t.Fatalf("first local record at %s with id %d after %s and id %d", p, next[0].TxnID, end, last.TxnID)
			}
			if err := replica.Close(); err != nil {
				t.Fatal(err)
			}
			report, err := Check(rfs, testDir)
			if err != nil || report.Records != len(want)+1 || report.TornTail != nil {
				t.Fatalf("check of the replica: %+v, %v", report, err)
			}
		})
	}
}

// TestStreamWithNotify ships records while they are committed, waiting on
// DurableNotify whenever the sender has caught up.
func TestStreamWithNotify(t *testing.T) {
	primary, pfs := primaryJournal(t)
	replica, rfs := primaryJournal(t)
	finished := make(chan []Record, 1)
	go func() {
		var recs []Record
		for i := range 150 {
			r := []Record{setRecord("db", fmt.Sprint(i), "streamed value")}
			if _, err := primary.Commit(context.Background(), r); err != nil {
				break
			}
			recs = append(recs, r[0])
		}
		finished <- recs
	}()

	var want []Record
	done := false
	for pos := replica.AppendedEnd(); ; {
		notify := primary.DurableNotify()
		frames, next, err := primary.ReadEncoded(pos, 700)
		if err != nil {
			t.Fatal(err)
		}
		if len(frames) > 0 {
			end, _, err := replica.AppendEncoded(frames)
			if err != nil {
				t.Fatal(err)
			}
			if err := replica.WaitDurable(context.Background(), end); err != nil {
				t.Fatal(err)
			}
		}
		if len(frames) == 0 && next == pos {
			if done {
				break
			}
			select {
			case <-notify:
			case want = <-finished:
				done = true
			}
		}
		pos = next
	}
	if len(want) != 150 {
		t.Fatalf("committed %d records", len(want))
	}
	checkRecords(t, readAll(t, replica), want)
	sameCopies(t, primary, pfs, replica, rfs, true)
}

func TestDurableNotify(t *testing.T) {
	j := openTest(t, testDir, testOptions(t, vfs.NewMem()))
	ch := j.DurableNotify()
	if _, err := j.Append([]Record{setRecord("db", "k", "v")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("closed before anything became durable")
	default:
	}
	synced := make(chan error, 1)
	go func() { synced <- j.Sync() }()
	<-ch
	if err := <-synced; err != nil {
		t.Fatal(err)
	}

	ch = j.DurableNotify()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	<-ch
	<-j.DurableNotify()
}

// receivedRecords lays out records from pos on, as another member would have
// written them; a record whose Pos.Segment is set goes to the start of that
// segment.
func receivedRecords(pos Position, recs ...Record) []Record {
	out := make([]Record, len(recs))
	for i, r := range recs {
		if r.Pos.Segment != 0 {
			pos = Position{Epoch: pos.Epoch, Segment: r.Pos.Segment, Offset: HeaderSize}
		}
		if r.Pos.Epoch != 0 {
			pos.Epoch = r.Pos.Epoch
		}
		r.Pos = pos
		if r.TxnID == 0 {
			r.TxnID = 100 + uint64(i)
		}
		out[i] = r
		pos.Offset += uint64(r.Size())
	}
	return out
}

func encodeAll(recs []Record) []byte {
	var b []byte
	for i := range recs {
		b = AppendRecord(b, &recs[i])
	}
	return b
}

func TestAppendReceivedRefuses(t *testing.T) {
	rec := func(key string) Record { return setRecord("db", key, "value") }
	tests := []struct {
		name    string
		batch   func(end Position) []Record
		frames  func(b []byte) []byte // damage for AppendEncoded only; nil: both calls are tried
		wantErr error
		names   []string // in the error, given the end of the replica
	}{
		{
			name: "gap",
			batch: func(end Position) []Record {
				end.Offset += 10
				return receivedRecords(end, rec("a"))
			},
			wantErr: ErrBadPosition,
		},
		{
			name: "overlap",
			batch: func(end Position) []Record {
				end.Offset -= 10
				return receivedRecords(end, rec("a"))
			},
			wantErr: ErrBadPosition,
		},
		{
			name: "hole inside the batch",
			batch: func(end Position) []Record {
				recs := receivedRecords(end, rec("a"), rec("b"), rec("c"))
				recs[2].Pos.Offset += 4
				return recs
			},
			wantErr: ErrBadPosition,
		},
		{
			name: "segment after next",
			batch: func(end Position) []Record {
				r := rec("a")
				r.Pos.Segment = end.Segment + 2
				return receivedRecords(end, r)
			},
			wantErr: ErrBadPosition,
		},
		{
			name: "next segment not at its start",
			batch: func(end Position) []Record {
				return receivedRecords(Position{Epoch: end.Epoch, Segment: end.Segment + 1, Offset: HeaderSize + 8}, rec("a"))
			},
			wantErr: ErrBadPosition,
		},
		{
			name: "epoch lower than the last record's",
			batch: func(end Position) []Record {
				end.Epoch--
				return receivedRecords(end, rec("a"))
			},
			wantErr: ErrBadPosition,
		},
		{
			name: "epoch decreasing inside the batch",
			batch: func(end Position) []Record {
				a, b := rec("a"), rec("b")
				a.Pos.Epoch, b.Pos.Epoch = end.Epoch+2, end.Epoch+1
				return receivedRecords(end, a, b)
			},
			wantErr: ErrBadPosition,
		},
		{
			name:    "bad checksum in a frame",
			batch:   func(end Position) []Record { return receivedRecords(end, rec("a"), rec("b")) },
			frames:  func(b []byte) []byte { b[len(b)-2] ^= 1; return b },
			wantErr: ErrCorrupt,
		},
		{
			name:    "incomplete last frame",
			batch:   func(end Position) []Record { return receivedRecords(end, rec("a"), rec("b")) },
			frames:  func(b []byte) []byte { return b[:len(b)-3] },
			wantErr: ErrCorrupt,
		},
		{
			name:    "garbage after the frames",
			batch:   func(end Position) []Record { return receivedRecords(end, rec("a")) },
			frames:  func(b []byte) []byte { return append(b, 1, 2, 3) },
			wantErr: ErrCorrupt,
		},
	}
	for _, tt := range tests {
		for _, encoded := range []bool{false, true} {
			if tt.frames != nil && !encoded {
				continue
			}
			t.Run(fmt.Sprintf("%s/encoded=%v", tt.name, encoded), func(t *testing.T) {
				opts := testOptions(t, vfs.NewMem())
				opts.Epoch, opts.SegmentSize = 3, 4096
				replica := openTest(t, testDir, opts)
				var kept []Record
				for _, key := range []string{"x", "y"} {
					batch := receivedRecords(replica.AppendedEnd(), rec(key))
					if _, err := replica.AppendReceived(batch); err != nil {
						t.Fatal(err)
					}
					kept = append(kept, batch...)
				}
				if err := replica.Sync(); err != nil {
					t.Fatal(err)
				}
				end, stats := replica.AppendedEnd(), replica.Stats()

				batch := tt.batch(end)
				var err error
				if encoded {
					frames := encodeAll(batch)
					if tt.frames != nil {
						frames = tt.frames(frames)
					}
					_, _, err = replica.AppendEncoded(frames)
				} else {
					_, err = replica.AppendReceived(batch)
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				if tt.wantErr == ErrBadPosition && !strings.Contains(err.Error(), end.String()) {
					t.Fatalf("%q does not name the journal end %s", err, end)
				}
				t.Logf("refused: %v", err)
				if replica.AppendedEnd() != end || replica.Stats() != stats {
					t.Fatalf("refused batch changed the journal: end %s, stats %+v", replica.AppendedEnd(), replica.Stats())
				}
				if err := replica.Sync(); err != nil {
					t.Fatal(err)
				}
				checkRecords(t, readAll(t, replica), kept)

				// The journal still takes the right continuation.
				good := receivedRecords(end, rec("z"))
				if _, err := replica.AppendReceived(good); err != nil {
					t.Fatal(err)
				}
				if err := replica.Sync(); err != nil {
					t.Fatal(err)
				}
				checkRecords(t, readAll(t, replica), append(kept, good...))
			})
		}
	}
}

func TestAppendReceivedRollsAndKeepsFields(t *testing.T) {
	clock := newFakeClock()
	opts := testOptions(t, vfs.NewMem())
	opts.Now = clock.Now
	replica := openTest(t, testDir, opts)
	a := Record{Type: RecordSet, TxnID: 70, DB: "db", Key: []byte("a"), Value: []byte("1"), HasValue: true, Time: 12345, Pos: Position{Epoch: 4}}
	b := Record{Type: RecordMarker, TxnID: 70, TxnEnd: true, Pos: Position{Epoch: 5, Segment: 2}}
	c := Record{Type: RecordNoop, TxnID: 71, TxnEnd: true, Pos: Position{Segment: 3}}
	batch := receivedRecords(replica.AppendedEnd(), a, b, c)
	end, err := replica.AppendReceived(batch)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Position{Epoch: 5, Segment: 3, Offset: HeaderSize + uint64(batch[2].Size())}); end != want {
		t.Fatalf("end %s, want %s", end, want)
	}
	if err := replica.Sync(); err != nil {
		t.Fatal(err)
	}
	checkRecords(t, readAll(t, replica), batch)
	segs := replica.Segments()
	if len(segs) != 3 || segs[1].First.Epoch != 5 || segs[2].First.Epoch != 5 || !replica.SegmentEnd(segs[1].End) {
		t.Fatalf("segments %+v", segs)
	}
	local := []Record{setRecord("db", "local", "v")}
	commit(t, replica, local...)
	if local[0].TxnID != 72 || local[0].Pos.Epoch != 5 || local[0].Pos.Offset != end.Offset {
		t.Fatalf("local record after the received ones: %+v", local[0])
	}
}

// TestReplicaCrashMidBatch crashes a replica at every sync of a received
// batch that spans several segments, keeping a random part of what was not
// synced, and checks that the replica recovers a prefix of the primary's
// journal from which shipping resumes to an identical copy.
func TestReplicaCrashMidBatch(t *testing.T) {
	primary, pfs := primaryJournal(t)
	epochTxns(t, primary, "a", 20)
	replicaOptions := func(fs vfs.FS) Options {
		o := testOptions(t, fs)
		o.SegmentSize = 512
		return o
	}
	base := vfs.NewCrashableMem()
	replica, err := Open(testDir, replicaOptions(base))
	if err != nil {
		t.Fatal(err)
	}
	shipEncoded(t, primary, replica, 1<<20)
	synced := len(readAll(t, replica))
	if err := replica.Close(); err != nil {
		t.Fatal(err)
	}
	start := replica.DurableEnd()
	epochTxns(t, primary, "b", 30)
	// One batch of everything the primary has after start, across segments.
	var rest []byte
	for pos := start; ; {
		frames, next, err := primary.ReadEncoded(pos, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(frames) == 0 && next == pos {
			break
		}
		rest = append(rest, frames...)
		pos = next
	}
	want := readAll(t, primary)
	for failAt := 1; ; failAt++ {
		fs := base.CrashClone(vfs.CrashCloneCfg{})
		var syncs atomic.Int64
		var armed atomic.Bool
		inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
			if armed.Load() && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) && syncs.Add(1) == int64(failAt) {
				return errInjected
			}
			return nil
		})
		r, err := Open(testDir, replicaOptions(errorfs.Wrap(fs, inj)))
		if err != nil {
			t.Fatal(err)
		}
		armed.Store(true)
		if _, _, err := r.AppendEncoded(rest); err != nil {
			t.Fatal(err)
		}
		err = r.Sync()
		_ = r.Close()
		if err == nil {
			if failAt < 4 {
				t.Fatalf("batch synced after %d syncs; expected a roll and a sync per segment", failAt-1)
			}
			return
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("crash at sync %d: %v", failAt, err)
		}
		for seed := range 3 {
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(failAt)))
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rng})
			r, err := Open(testDir, replicaOptions(crashed))
			if err != nil {
				t.Fatalf("open after a crash at sync %d (seed %d): %v", failAt, seed, err)
			}
			got := readAll(t, r)
			if len(got) < synced {
				t.Fatalf("crash at sync %d (seed %d): %d records recovered, %d were synced", failAt, seed, len(got), synced)
			}
			checkRecords(t, got, want[:len(got)])
			shipEncoded(t, primary, r, 700)
			checkRecords(t, readAll(t, r), want)
			sameCopies(t, primary, pfs, r, crashed, false)
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
