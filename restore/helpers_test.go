package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// memTarget is an in-memory backup.Target.
type memTarget struct {
	mu      sync.Mutex
	objects map[string][]byte
}

var _ backup.Target = (*memTarget)(nil)

func newMemTarget() *memTarget { return &memTarget{objects: map[string][]byte{}} }

func (t *memTarget) Put(_ context.Context, key string, r io.Reader, _ int64) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.objects[key] = data
	return nil
}

func (t *memTarget) Get(_ context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	data, ok := t.objects[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, backup.ErrNotFound)
	}
	data = data[min(offset, int64(len(data))):]
	if length >= 0 && length < int64(len(data)) {
		data = data[:length]
	}
	return io.NopCloser(bytes.NewReader(slices.Clone(data))), nil
}

func (t *memTarget) List(_ context.Context, prefix string) ([]backup.Object, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []backup.Object
	for k, v := range t.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, backup.Object{Key: k, Size: int64(len(v))})
		}
	}
	slices.SortFunc(out, func(a, b backup.Object) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (t *memTarget) Delete(_ context.Context, keys ...string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		delete(t.objects, k)
	}
	return nil
}

func (t *memTarget) edit(tb testing.TB, key string, fn func([]byte) []byte) {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	data, ok := t.objects[key]
	if !ok {
		tb.Fatalf("no object %s", key)
	}
	t.objects[key] = fn(slices.Clone(data))
}

var errInjected = errors.New("injected failure")

// failingGets serves okGets gets, then fails: a target lost mid-restore.
type failingGets struct {
	backup.Target
	okGets int64
	gets   atomic.Int64
}

func (t *failingGets) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if t.gets.Add(1) > t.okGets {
		return nil, errInjected
	}
	return t.Target.Get(ctx, key, offset, length)
}

// recordingSink counts the writes per file passed to the wrapped sink and fails every write after okWrites (< 0: never).
type recordingSink struct {
	Sink
	okWrites int
	mu       sync.Mutex
	calls    int
	writes   map[string]int
}

func newRecordingSink(s Sink, okWrites int) *recordingSink {
	return &recordingSink{Sink: s, okWrites: okWrites, writes: map[string]int{}}
}

func (s *recordingSink) WriteAt(ctx context.Context, name string, offset int64, data []byte) error {
	s.mu.Lock()
	s.calls++
	fail := s.okWrites >= 0 && s.calls > s.okWrites
	s.mu.Unlock()
	if fail {
		return errInjected
	}
	if err := s.Sink.WriteAt(ctx, name, offset, data); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes[name]++
	return nil
}

// fixture is a checkpoint of a real database and what the store said about it.
type fixture struct {
	dir     string
	db      string
	applied journal.Position
	hash    store.LogicalHash
}

// makeCheckpoint writes about size bytes of partly compressible values into a new database and checkpoints it.
func makeCheckpoint(tb testing.TB, db string, size int) fixture {
	tb.Helper()
	dir := tb.TempDir()
	log := zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel)
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	defer j.Close()
	s, err := store.Open(store.Options{Dir: dir, Journal: j, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(db); err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2, uint64(size)))
	const valueSize, batch = 2000, 100
	for n := 0; n*valueSize < size; n += batch {
		ops := make([]wire.Op, batch)
		for i := range ops {
			key, err := globals.Encode(globals.MustParse(fmt.Sprintf(`^T(%d)`, n+i)))
			if err != nil {
				tb.Fatal(err)
			}
			var v strings.Builder
			for v.Len() < valueSize {
				fmt.Fprintf(&v, "w%d ", rng.IntN(300))
			}
			ops[i] = wire.Op{Kind: wire.OpSet, Key: key, Value: []byte(v.String())}
		}
		if _, _, err := s.Exec(context.Background(), db, ops); err != nil {
			tb.Fatal(err)
		}
		// Several flushes give several table files, so a restore has files to skip and files to fetch.
		if _, err := s.PurgeFloor("", j.AppendedEnd()); err != nil {
			tb.Fatal(err)
		}
	}
	cp, err := s.Checkpoint(db, filepath.Join(dir, "checkpoint"))
	if err != nil {
		tb.Fatal(err)
	}
	h, err := s.Hash(db)
	if err != nil {
		tb.Fatal(err)
	}
	return fixture{dir: cp.Dir, db: strings.ToUpper(db), applied: cp.Applied, hash: h}
}

// backupOf backs the fixture up into a new in-memory target.
func backupOf(tb testing.TB, fx fixture, opts backup.Options) (*memTarget, *backup.Manifest) {
	tb.Helper()
	tgt := newMemTarget()
	m, err := backup.Run(context.Background(), backup.DirSource(fx.dir), tgt, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return tgt, m
}

// files returns the content of every regular file under dir, LOCK files aside (opening a database creates one).
func files(tb testing.TB, dir string) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || d.Name() == "LOCK" {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
