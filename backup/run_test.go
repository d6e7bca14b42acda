package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/version"
)

var (
	smallOnce    sync.Once
	smallFixture fixture
)

// small is a checkpoint of a few hundred KiB shared by the tests that only read it.
func small(tb testing.TB) fixture {
	tb.Helper()
	smallOnce.Do(func() { smallFixture = makeCheckpoint(&onceTB{TB: tb}, "Orders", 400<<10) })
	if smallFixture.dir == "" {
		tb.Fatal("fixture checkpoint failed")
	}
	return smallFixture
}

// onceTB lets a fixture shared by several tests outlive the test that made it: its temporary directories are removed at
// process exit instead of at that test's end.
type onceTB struct{ testing.TB }

func (o *onceTB) TempDir() string { return sharedTempDir(o.TB) }
func (o *onceTB) Cleanup(func())  {}

func testKey(tb testing.TB, b byte) []byte {
	tb.Helper()
	return bytes.Repeat([]byte{b}, KeySize)
}

func TestRunRoundTrip(t *testing.T) {
	fx := small(t)
	created := time.Date(2026, 11, 26, 17, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"plain level 1 tiny chunks", Options{Level: 1, ChunkSize: 4 << 10, Parallel: 3}},
		{"plain level 19", Options{Level: 19}},
		{"encrypted tiny chunks", Options{ChunkSize: 4 << 10, Parallel: 8, Key: testKey(t, 7)}},
		{"defaults", Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tgt := newMemTarget()
			var mu sync.Mutex
			var last, total int64
			tc.opts.Now = fixedClock(created)
			tc.opts.Progress = func(done, all int64) {
				mu.Lock()
				defer mu.Unlock()
				if done < last || done > all {
					t.Errorf("progress went from %d to %d of %d", last, done, all)
				}
				last, total = done, all
			}
			m := mustRun(t, fx, tgt, tc.opts)
			wantChunk := tc.opts.ChunkSize
			if wantChunk == 0 {
				wantChunk = DefaultChunkSize
			}
			if m.Database != fx.db || m.Position != fx.applied || m.DatabaseFormat != store.FormatVersion || m.ChunkSize != wantChunk ||
				m.ToolVersion != version.Software || !m.Created.Equal(created) || !strings.HasPrefix(m.ID, "20261126T173000Z-") {
				t.Fatalf("manifest header %+v", m)
			}
			if m.LogicalHash.Nodes != fx.hash.Nodes || m.LogicalHash.SHA256 != fx.hash.SHA256 {
				t.Fatalf("logical hash %+v, store says %+v", m.LogicalHash, fx.hash)
			}
			if m.Encrypted() != (tc.opts.Key != nil) {
				t.Fatalf("encrypted = %v", m.Encrypted())
			}
			if last != m.Bytes || total != m.Bytes {
				t.Fatalf("progress ended at %d of %d, backup has %d bytes", last, total, m.Bytes)
			}
			got := reassemble(t, tgt, m, tc.opts.Key)
			if files := readDir(t, fx.dir); !maps.EqualFunc(got, files, bytes.Equal) {
				t.Fatalf("reassembled %d files, source has %d, or contents differ", len(got), len(files))
			}
			// The stored manifest is what Run returned; progress.json is gone and no chunk object is unreferenced.
			loaded, err := LoadManifest(context.Background(), tgt, strings.ToLower(fx.db), m.ID)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := json.Marshal(loaded)
			b, _ := json.Marshal(m)
			if !bytes.Equal(a, b) {
				t.Fatal("stored manifest differs from the returned one")
			}
			if keys := tgt.keys(t, progressKey(m.Database, m.ID)); len(keys) != 0 {
				t.Fatalf("progress record left: %v", keys)
			}
			if n, want := len(tgt.keys(t, chunkPrefix(m.Database, m.ID))), len(distinctChunks(m)); n != want {
				t.Fatalf("%d chunk objects stored, manifest references %d", n, want)
			}
			if err := VerifyChunks(context.Background(), tgt, m, tc.opts.Key, 2); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestEncryptedChunksNeedTheKey(t *testing.T) {
	fx := small(t)
	tgt := newMemTarget()
	key := testKey(t, 1)
	m := mustRun(t, fx, tgt, Options{ChunkSize: 16 << 10, Key: key})
	if m.Encryption.KeyID != KeyID(key) || len(m.Encryption.WrappedKey) != wrappedKeyLen {
		t.Fatalf("encryption %+v", m.Encryption)
	}
	if _, err := NewChunkReader(tgt, m, nil, 1); !errors.Is(err, ErrKeyRequired) {
		t.Fatalf("no key: %v", err)
	}
	if _, err := NewChunkReader(tgt, m, testKey(t, 2), 1); !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), m.Name()) {
		t.Fatalf("wrong key: %v", err)
	}
	// A stored object is sealed: it is not a zstd frame anyone can decompress.
	ref := distinctChunks(m)[0]
	data, err := getAll(context.Background(), tgt, m.ChunkKey(ref.chunk.SHA256))
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	if _, err := dec.DecodeAll(data, nil); err == nil {
		t.Fatal("an encrypted chunk object decompresses without the key")
	}
	// A wrapped key altered in the manifest fails as a wrong key, not as garbage output.
	altered := *m
	enc := *m.Encryption
	enc.WrappedKey = bytes.Clone(enc.WrappedKey)
	enc.WrappedKey[20] ^= 1
	altered.Encryption = &enc
	if _, err := NewChunkReader(tgt, &altered, key, 1); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("altered wrapped key: %v", err)
	}
}

// interrupt runs a backup against a target that fails after okPuts puts and returns the ID of the incomplete backup it
// leaves.
func interrupt(t *testing.T, fx fixture, mem *memTarget, okPuts int64, opts Options) string {
	t.Helper()
	states := func() map[string]bool {
		entries, err := List(context.Background(), mem, fx.db)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, e := range entries {
			out[e.ID] = e.Complete
		}
		return out
	}
	before := states()
	faulty := &faultyTarget{Target: mem, okPuts: okPuts}
	_, err := Run(context.Background(), DirSource(fx.dir), faulty, opts)
	if !errors.Is(err, errUnreachable) || !strings.Contains(err.Error(), "put "+fx.db+"/") {
		t.Fatalf("backup against a failing target: %v", err)
	}
	var id string
	for e, complete := range states() {
		if _, seen := before[e]; seen && before[e] == complete {
			continue
		}
		if complete || id != "" {
			t.Fatalf("a failed backup changed more than one incomplete backup: %v then %v", before, states())
		}
		id = e
	}
	if id == "" {
		t.Fatal("the failed backup left no progress record")
	}
	return id
}

func recordedChunks(t *testing.T, mem *memTarget, db, id string) int {
	t.Helper()
	p, err := loadProgress(context.Background(), mem, db, id)
	if err != nil || p == nil {
		t.Fatalf("progress of %s/%s: %v", db, id, err)
	}
	return len(p.Chunks)
}

func TestResumeUploadsOnlyMissingChunks(t *testing.T) {
	fx := small(t)
	mem := newMemTarget()
	opts := Options{ChunkSize: 4 << 10, Parallel: 3, Level: 1}
	id := interrupt(t, fx, mem, 30, opts)
	recorded := recordedChunks(t, mem, fx.db, id)
	if recorded == 0 {
		t.Fatal("no chunk recorded before the failure")
	}

	mem.resetPuts()
	// Different settings are ignored on resume: the backup keeps the chunking it started with.
	m := mustRun(t, fx, mem, Options{ChunkSize: 1 << 20, Parallel: 2, Level: 9})
	if m.ID != id || m.ChunkSize != opts.ChunkSize || m.Compression.Level != opts.Level {
		t.Fatalf("resumed %s (chunk size %d, level %d), want %s", m.ID, m.ChunkSize, m.Compression.Level, id)
	}
	distinct := len(distinctChunks(m))
	if got, want := mem.chunkPuts(), distinct-recorded; got != want || got >= distinct {
		t.Fatalf("resume stored %d chunks, want %d (of %d, %d recorded)", got, want, distinct, recorded)
	}
	if got := reassemble(t, mem, m, nil); !maps.EqualFunc(got, readDir(t, fx.dir), bytes.Equal) {
		t.Fatal("resumed backup does not reassemble to the source")
	}

	// A resumed backup whose recorded chunk object went missing or shrank uploads it again.
	mem2 := newMemTarget()
	id2 := interrupt(t, fx, mem2, 30, opts)
	p, err := loadProgress(context.Background(), mem2, fx.db, id2)
	if err != nil || len(p.Chunks) < 2 {
		t.Fatalf("progress %+v, %v", p, err)
	}
	mem2.Delete(context.Background(), chunkKey(fx.db, id2, p.Chunks[0].SHA256))
	mem2.edit(t, chunkKey(fx.db, id2, p.Chunks[1].SHA256), func(b []byte) []byte { return b[:len(b)-1] })
	recorded = len(p.Chunks)
	mem2.resetPuts()
	m2 := mustRun(t, fx, mem2, Options{})
	if got, want := mem2.chunkPuts(), len(distinctChunks(m2))-recorded+2; got != want {
		t.Fatalf("resume stored %d chunks, want %d", got, want)
	}
	if err := VerifyChunks(context.Background(), mem2, m2, nil, 2); err != nil {
		t.Fatal(err)
	}
}

func TestResumeEncrypted(t *testing.T) {
	fx := small(t)
	mem := newMemTarget()
	key := testKey(t, 3)
	id := interrupt(t, fx, mem, 20, Options{ChunkSize: 4 << 10, Key: key})
	p, err := loadProgress(context.Background(), mem, fx.db, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  []byte
		want error
	}{
		{"no key", nil, ErrKeyRequired},
		{"other key", testKey(t, 4), ErrWrongKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem.resetPuts()
			_, err := Run(context.Background(), DirSource(fx.dir), mem, Options{Key: tc.key})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), id) {
				t.Fatalf("resume: %v, want %v naming %s", err, tc.want, id)
			}
			if len(mem.puts) != 0 {
				t.Fatalf("a refused resume wrote %v", mem.puts)
			}
		})
	}
	mem.resetPuts()
	m := mustRun(t, fx, mem, Options{Key: key})
	if m.ID != id || !bytes.Equal(m.Encryption.WrappedKey, p.Encryption.WrappedKey) {
		t.Fatalf("resumed %s with wrapped key %x, want %s with %x", m.ID, m.Encryption.WrappedKey, id, p.Encryption.WrappedKey)
	}
	if got, want := mem.chunkPuts(), len(distinctChunks(m))-len(p.Chunks); got != want {
		t.Fatalf("resume stored %d chunks, want %d", got, want)
	}
	if err := VerifyChunks(context.Background(), mem, m, key, 3); err != nil {
		t.Fatal(err)
	}
}

func TestRunRefusals(t *testing.T) {
	fx := small(t)
	mem := newMemTarget()
	m := mustRun(t, fx, mem, Options{})
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"complete ID", Options{ID: m.ID}, "already complete"},
		{"bad ID", Options{ID: "../x"}, "backup id"},
		{"level", Options{Level: 23}, "level"},
		{"chunk size", Options{ChunkSize: 10}, "chunk size"},
		{"short key", Options{Key: []byte("short")}, "key of 5 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem.resetPuts()
			_, err := Run(context.Background(), DirSource(fx.dir), mem, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want %q", err, tc.want)
			}
			if len(mem.puts) != 0 {
				t.Fatalf("a refused run wrote %v", mem.puts)
			}
		})
	}
	if _, err := Run(context.Background(), DirSource(t.TempDir()), mem, Options{}); !errors.Is(err, store.ErrNotDatabase) {
		t.Fatalf("backup of an empty directory: %v", err)
	}
}

// A new run after a complete backup starts a new backup instead of touching the complete one.
func TestRunAfterCompleteStartsNew(t *testing.T) {
	fx := small(t)
	mem := newMemTarget()
	first := mustRun(t, fx, mem, Options{Now: fixedClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))})
	second := mustRun(t, fx, mem, Options{Now: fixedClock(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))})
	if first.ID == second.ID {
		t.Fatal("second backup reused the first one's ID")
	}
	if _, err := LoadManifest(context.Background(), mem, fx.db, first.ID); err != nil {
		t.Fatal(err)
	}
}
