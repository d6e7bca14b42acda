package backup

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
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// memTarget is an in-memory Target that records the keys it was asked to store.
type memTarget struct {
	mu      sync.Mutex
	objects map[string][]byte
	puts    []string
}

var _ Target = (*memTarget)(nil)

func newMemTarget() *memTarget { return &memTarget{objects: map[string][]byte{}} }

func (t *memTarget) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	var buf bytes.Buffer
	buf.Grow(int(max(size, 0)))
	if _, err := buf.ReadFrom(r); err != nil {
		return err
	}
	data := buf.Bytes()
	if size >= 0 && int64(len(data)) != size {
		return fmt.Errorf("put %s: got %d bytes, announced %d", key, len(data), size)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.objects[key] = data
	t.puts = append(t.puts, key)
	return nil
}

func (t *memTarget) Get(_ context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	data, ok := t.objects[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	data = data[min(offset, int64(len(data))):]
	if length >= 0 && length < int64(len(data)) {
		data = data[:length]
	}
	return io.NopCloser(bytes.NewReader(slices.Clone(data))), nil
}

func (t *memTarget) List(_ context.Context, prefix string) ([]Object, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Object
	for k, v := range t.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, Object{Key: k, Size: int64(len(v))})
		}
	}
	slices.SortFunc(out, func(a, b Object) int { return strings.Compare(a.Key, b.Key) })
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

// chunkPuts counts the chunk objects stored since the last reset.
func (t *memTarget) chunkPuts() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, k := range t.puts {
		if strings.Contains(k, "/chunks/") {
			n++
		}
	}
	return n
}

func (t *memTarget) resetPuts() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.puts = nil
}

func (t *memTarget) keys(tb testing.TB, prefix string) []string {
	tb.Helper()
	keys, err := listKeys(context.Background(), t, prefix)
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}

// edit changes a stored object in place.
func (t *memTarget) edit(tb testing.TB, key string, fn func([]byte) []byte) {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	data, ok := t.objects[key]
	if !ok {
		tb.Fatalf("no object %s to edit", key)
	}
	t.objects[key] = fn(slices.Clone(data))
}

// errUnreachable is what faultyTarget returns once it has failed.
var errUnreachable = errors.New("target unreachable")

// faultyTarget passes calls through until okPuts puts have succeeded, then fails every call: a target that became
// unreachable mid-upload.
type faultyTarget struct {
	Target
	okPuts int64
	puts   atomic.Int64
}

func (t *faultyTarget) failed() bool { return t.puts.Load() > t.okPuts }

func (t *faultyTarget) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if t.puts.Add(1) > t.okPuts {
		return errUnreachable
	}
	return t.Target.Put(ctx, key, r, size)
}

func (t *faultyTarget) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if t.failed() {
		return nil, errUnreachable
	}
	return t.Target.Get(ctx, key, offset, length)
}

func (t *faultyTarget) List(ctx context.Context, prefix string) ([]Object, error) {
	if t.failed() {
		return nil, errUnreachable
	}
	return t.Target.List(ctx, prefix)
}

func (t *faultyTarget) Delete(ctx context.Context, keys ...string) error {
	if t.failed() {
		return errUnreachable
	}
	return t.Target.Delete(ctx, keys...)
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
	rng := rand.New(rand.NewPCG(1, uint64(size)))
	const valueSize, batch = 2000, 200
	for n := 0; n*valueSize < size; n += batch {
		ops := make([]wire.Op, batch)
		for i := range ops {
			key, err := globals.Encode(globals.MustParse(fmt.Sprintf(`^Data(%d,"k")`, n+i)))
			if err != nil {
				tb.Fatal(err)
			}
			var v strings.Builder
			for v.Len() < valueSize {
				fmt.Fprintf(&v, "word%d ", rng.IntN(500))
			}
			ops[i] = wire.Op{Kind: wire.OpSet, Key: key, Value: []byte(v.String())}
		}
		if _, _, err := s.Exec(context.Background(), db, ops); err != nil {
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

// readDir returns every regular file under dir by slash name.
func readDir(tb testing.TB, dir string) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
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

// reassemble reads every file of the backup back through a ChunkReader.
func reassemble(tb testing.TB, tgt Target, m *Manifest, key []byte) map[string][]byte {
	tb.Helper()
	r, err := NewChunkReader(tgt, m, key, 2)
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	out := map[string][]byte{}
	for i := range m.Files {
		f := &m.Files[i]
		data := []byte{}
		for j := range f.Chunks {
			plain, err := r.Read(context.Background(), f, &f.Chunks[j], nil)
			if err != nil {
				tb.Fatal(err)
			}
			data = append(data, plain...)
		}
		out[f.Name] = data
	}
	return out
}

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// mustRun backs the fixture up and fails the test on error.
func mustRun(tb testing.TB, fx fixture, tgt Target, opts Options) *Manifest {
	tb.Helper()
	m, err := Run(context.Background(), DirSource(fx.dir), tgt, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// sharedRoot holds fixtures shared by several tests; TestMain removes it.
var sharedRoot string

func TestMain(m *testing.M) {
	var err error
	if sharedRoot, err = os.MkdirTemp("", "backup-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(sharedRoot)
	os.Exit(code)
}

func sharedTempDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp(sharedRoot, "fixture-")
	if err != nil {
		tb.Fatal(err)
	}
	return dir
}
