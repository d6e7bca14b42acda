package journal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/rs/zerolog"
)

const testDir = "j"

// testOptions logs to the test and uses fs.
func testOptions(tb testing.TB, fs vfs.FS) Options {
	tb.Helper()
	return Options{FS: fs, Logger: zerolog.New(zerolog.NewTestWriter(tb))}
}

// openTest opens a journal that is closed when the test ends.
func openTest(tb testing.TB, dir string, opts Options) *Journal {
	tb.Helper()
	j, err := Open(dir, opts)
	if err != nil {
		tb.Fatalf("open journal: %v", err)
	}
	tb.Cleanup(func() { _ = j.Close() })
	return j
}

// setRecord is a one-record transaction setting db/key to value.
func setRecord(db, key, value string) Record {
	return Record{Type: RecordSet, DB: db, Key: []byte(key), Value: []byte(value), HasValue: true, TxnEnd: true}
}

// commit commits recs or fails the test.
func commit(tb testing.TB, j *Journal, recs ...Record) Position {
	tb.Helper()
	end, err := j.Commit(context.Background(), recs)
	if err != nil {
		tb.Fatalf("commit: %v", err)
	}
	return end
}

// readAll reads every durable record through a reader.
func readAll(tb testing.TB, j *Journal) []Record {
	tb.Helper()
	r, err := j.NewReader(Position{})
	if err != nil {
		tb.Fatalf("new reader: %v", err)
	}
	defer r.Close()
	// With a done context, Next returns what is durable and then ctx.Err().
	done, cancel := context.WithCancel(context.Background())
	cancel()
	var out []Record
	for {
		rec, err := r.Next(done)
		if errors.Is(err, context.Canceled) {
			break
		}
		if err != nil {
			tb.Fatalf("read after %d records at %s: %v", len(out), r.Position(), err)
		}
		out = append(out, rec)
	}
	if end := j.DurableEnd(); r.Position() != end && (r.Position().Offset != HeaderSize || r.Position().Segment != end.Segment) {
		tb.Fatalf("read stopped at %s, durable end %s", r.Position(), end)
	}
	return out
}

// dumpAll returns every record Dump yields.
func dumpAll(tb testing.TB, fs vfs.FS, dir string) []Record {
	tb.Helper()
	var out []Record
	if err := Dump(fs, dir, Position{}, func(r Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		tb.Fatalf("dump: %v", err)
	}
	return out
}

// fakeClock is an injectable clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var errInjected = errors.New("injected I/O error")

// faultInjector counts syncs, can slow them down (to stand in for a disk's
// sync latency) and can make syncs, writes or creates fail.
type faultInjector struct {
	syncDelay  time.Duration
	syncs      atomic.Int64
	failSync   atomic.Bool
	failWrite  atomic.Bool
	failCreate atomic.Bool
}

func (f *faultInjector) MaybeError(op errorfs.Op) error {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData:
		f.syncs.Add(1)
		if f.syncDelay > 0 {
			time.Sleep(f.syncDelay)
		}
		if f.failSync.Load() {
			return errInjected
		}
	case errorfs.OpFileWriteAt, errorfs.OpFileWrite:
		if f.failWrite.Load() {
			return errInjected
		}
	case errorfs.OpCreate:
		if f.failCreate.Load() {
			return errInjected
		}
	}
	return nil
}

func (f *faultInjector) String() string { return "faultInjector" }

// readFile returns the contents of a file in fs.
func readFile(tb testing.TB, fs vfs.FS, path string) []byte {
	tb.Helper()
	f, err := fs.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// writeFile replaces a file in fs.
func writeFile(tb testing.TB, fs vfs.FS, path string, data []byte) {
	tb.Helper()
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// segPath is the path of segment num in testDir.
func segPath(fs vfs.FS, num uint64) string { return fs.PathJoin(testDir, segmentName(num)) }

// recordKey identifies a test record by its key.
func recordKey(rec Record) string { return fmt.Sprintf("%s/%s", rec.DB, rec.Key) }

// syncHold is a memory file system whose next data sync, once armed, blocks until released: a test holds the group
// commit inside its sync.
type syncHold struct {
	fs      vfs.FS
	entered chan struct{} // receives when the armed sync starts
	release chan struct{} // close to let it finish
	armed   atomic.Bool
}

func newSyncHold() *syncHold {
	h := &syncHold{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h.fs = errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSyncData && h.armed.CompareAndSwap(true, false) {
			h.entered <- struct{}{}
			<-h.release
		}
		return nil
	}))
	return h
}
