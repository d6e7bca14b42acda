package backup_test

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

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/backup/backuptest"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/version"
)

func TestRunRoundTrip(t *testing.T) {
	fx := small.Fixture(t)
	created := time.Date(2026, 11, 26, 17, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		opts backup.Options
	}{
		{"plain level 1 tiny chunks", backup.Options{Level: 1, ChunkSize: 4 << 10, Parallel: 3}},
		{"plain level 19", backup.Options{Level: 19}},
		{"encrypted tiny chunks", backup.Options{ChunkSize: 4 << 10, Parallel: 8, Key: backuptest.Key(7)}},
		{"defaults", backup.Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tgt := backuptest.NewMemTarget()
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
			m := backuptest.Run(t, fx, tgt, tc.opts)
			wantChunk := tc.opts.ChunkSize
			if wantChunk == 0 {
				wantChunk = backup.DefaultChunkSize
			}
			if m.Database != fx.DB || m.Position != fx.Applied || m.DatabaseFormat != store.FormatVersion || m.ChunkSize != wantChunk ||
				m.ToolVersion != version.Software || !m.Created.Equal(created) || !strings.HasPrefix(m.ID, "20261126T173000Z-") {
				t.Fatalf("manifest header %+v", m)
			}
			if m.LogicalHash.Nodes != fx.Hash.Nodes || m.LogicalHash.SHA256 != fx.Hash.SHA256 {
				t.Fatalf("logical hash %+v, store says %+v", m.LogicalHash, fx.Hash)
			}
			if m.Encrypted() != (tc.opts.Key != nil) {
				t.Fatalf("encrypted = %v", m.Encrypted())
			}
			if last != m.Bytes || total != m.Bytes {
				t.Fatalf("progress ended at %d of %d, backup has %d bytes", last, total, m.Bytes)
			}
			got := reassemble(t, tgt, m, tc.opts.Key)
			if files := backuptest.ReadFiles(t, fx.Dir); !maps.EqualFunc(got, files, bytes.Equal) {
				t.Fatalf("reassembled %d files, source has %d, or contents differ", len(got), len(files))
			}
			// The stored manifest is what Run returned; progress.json is gone and no chunk object is unreferenced.
			loaded, err := backup.LoadManifest(context.Background(), tgt, strings.ToLower(fx.DB), m.ID)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := json.Marshal(loaded)
			b, _ := json.Marshal(m)
			if !bytes.Equal(a, b) {
				t.Fatal("stored manifest differs from the returned one")
			}
			if keys := tgt.Keys(t, backup.ProgressKey(m.Database, m.ID)); len(keys) != 0 {
				t.Fatalf("progress record left: %v", keys)
			}
			if n, want := len(tgt.Keys(t, backup.ChunkPrefix(m.Database, m.ID))), len(backup.DistinctChunks(m)); n != want {
				t.Fatalf("%d chunk objects stored, manifest references %d", n, want)
			}
			if err := backup.VerifyChunks(context.Background(), tgt, m, tc.opts.Key, 2); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestEncryptedChunksNeedTheKey(t *testing.T) {
	fx := small.Fixture(t)
	tgt := backuptest.NewMemTarget()
	key := backuptest.Key(1)
	m := backuptest.Run(t, fx, tgt, backup.Options{ChunkSize: 16 << 10, Key: key})
	if m.Encryption.KeyID != backup.KeyID(key) || len(m.Encryption.WrappedKey) != backup.WrappedKeyLen {
		t.Fatalf("encryption %+v", m.Encryption)
	}
	if _, err := backup.NewChunkReader(tgt, m, nil, 1); !errors.Is(err, backup.ErrKeyRequired) {
		t.Fatalf("no key: %v", err)
	}
	if _, err := backup.NewChunkReader(tgt, m, backuptest.Key(2), 1); !errors.Is(err, backup.ErrWrongKey) || !strings.Contains(err.Error(), m.Name()) {
		t.Fatalf("wrong key: %v", err)
	}
	// A stored object is sealed: it is not a zstd frame anyone can decompress.
	ref := backup.DistinctChunks(m)[0]
	data, err := backup.GetAll(context.Background(), tgt, m.ChunkKey(ref.Chunk.SHA256))
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
	if _, err := backup.NewChunkReader(tgt, &altered, key, 1); !errors.Is(err, backup.ErrWrongKey) {
		t.Fatalf("altered wrapped key: %v", err)
	}
}

// interrupt runs a backup against a target that fails after okPuts puts and returns the ID of the incomplete backup it
// leaves.
func interrupt(t *testing.T, fx backuptest.Fixture, mem *backuptest.MemTarget, okPuts int64, opts backup.Options) string {
	t.Helper()
	states := func() map[string]bool {
		entries, err := backup.List(context.Background(), mem, fx.DB)
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
	faulty := backuptest.FailAfterPuts(mem, okPuts)
	_, err := backup.Run(context.Background(), backup.DirSource(fx.Dir), faulty, opts)
	if !errors.Is(err, backuptest.ErrUnreachable) || !strings.Contains(err.Error(), "put "+fx.DB+"/") {
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

func recordedChunks(t *testing.T, mem *backuptest.MemTarget, db, id string) int {
	t.Helper()
	p, err := backup.LoadProgress(context.Background(), mem, db, id)
	if err != nil || p == nil {
		t.Fatalf("progress of %s/%s: %v", db, id, err)
	}
	return len(p.Chunks)
}

func TestResumeUploadsOnlyMissingChunks(t *testing.T) {
	fx := small.Fixture(t)
	mem := backuptest.NewMemTarget()
	opts := backup.Options{ChunkSize: 4 << 10, Parallel: 3, Level: 1}
	id := interrupt(t, fx, mem, 30, opts)
	recorded := recordedChunks(t, mem, fx.DB, id)
	if recorded == 0 {
		t.Fatal("no chunk recorded before the failure")
	}

	mem.ResetPuts()
	// Different settings are ignored on resume: the backup keeps the chunking it started with.
	m := backuptest.Run(t, fx, mem, backup.Options{ChunkSize: 1 << 20, Parallel: 2, Level: 9})
	if m.ID != id || m.ChunkSize != opts.ChunkSize || m.Compression.Level != opts.Level {
		t.Fatalf("resumed %s (chunk size %d, level %d), want %s", m.ID, m.ChunkSize, m.Compression.Level, id)
	}
	distinct := len(backup.DistinctChunks(m))
	if got, want := mem.ChunkPuts(), distinct-recorded; got != want || got >= distinct {
		t.Fatalf("resume stored %d chunks, want %d (of %d, %d recorded)", got, want, distinct, recorded)
	}
	if got := reassemble(t, mem, m, nil); !maps.EqualFunc(got, backuptest.ReadFiles(t, fx.Dir), bytes.Equal) {
		t.Fatal("resumed backup does not reassemble to the source")
	}

	// A resumed backup whose recorded chunk object went missing or shrank uploads it again.
	mem2 := backuptest.NewMemTarget()
	id2 := interrupt(t, fx, mem2, 30, opts)
	p, err := backup.LoadProgress(context.Background(), mem2, fx.DB, id2)
	if err != nil || len(p.Chunks) < 2 {
		t.Fatalf("progress %+v, %v", p, err)
	}
	mem2.Delete(context.Background(), backup.ChunkKey(fx.DB, id2, p.Chunks[0].SHA256))
	mem2.Edit(t, backup.ChunkKey(fx.DB, id2, p.Chunks[1].SHA256), func(b []byte) []byte { return b[:len(b)-1] })
	recorded = len(p.Chunks)
	mem2.ResetPuts()
	m2 := backuptest.Run(t, fx, mem2, backup.Options{})
	if got, want := mem2.ChunkPuts(), len(backup.DistinctChunks(m2))-recorded+2; got != want {
		t.Fatalf("resume stored %d chunks, want %d", got, want)
	}
	if err := backup.VerifyChunks(context.Background(), mem2, m2, nil, 2); err != nil {
		t.Fatal(err)
	}
}

func TestResumeEncrypted(t *testing.T) {
	fx := small.Fixture(t)
	mem := backuptest.NewMemTarget()
	key := backuptest.Key(3)
	id := interrupt(t, fx, mem, 20, backup.Options{ChunkSize: 4 << 10, Key: key})
	p, err := backup.LoadProgress(context.Background(), mem, fx.DB, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  []byte
		want error
	}{
		{"no key", nil, backup.ErrKeyRequired},
		{"other key", backuptest.Key(4), backup.ErrWrongKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem.ResetPuts()
			_, err := backup.Run(context.Background(), backup.DirSource(fx.Dir), mem, backup.Options{Key: tc.key})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), id) {
				t.Fatalf("resume: %v, want %v naming %s", err, tc.want, id)
			}
			if len(mem.Puts()) != 0 {
				t.Fatalf("a refused resume wrote %v", mem.Puts())
			}
		})
	}
	mem.ResetPuts()
	m := backuptest.Run(t, fx, mem, backup.Options{Key: key})
	if m.ID != id || !bytes.Equal(m.Encryption.WrappedKey, p.Encryption.WrappedKey) {
		t.Fatalf("resumed %s with wrapped key %x, want %s with %x", m.ID, m.Encryption.WrappedKey, id, p.Encryption.WrappedKey)
	}
	if got, want := mem.ChunkPuts(), len(backup.DistinctChunks(m))-len(p.Chunks); got != want {
		t.Fatalf("resume stored %d chunks, want %d", got, want)
	}
	if err := backup.VerifyChunks(context.Background(), mem, m, key, 3); err != nil {
		t.Fatal(err)
	}
}

func TestRunRefusals(t *testing.T) {
	fx := small.Fixture(t)
	mem := backuptest.NewMemTarget()
	m := backuptest.Run(t, fx, mem, backup.Options{})
	for _, tc := range []struct {
		name string
		opts backup.Options
		want string
	}{
		{"complete ID", backup.Options{ID: m.ID}, "already complete"},
		{"bad ID", backup.Options{ID: "../x"}, "backup id"},
		{"level", backup.Options{Level: 23}, "level"},
		{"chunk size", backup.Options{ChunkSize: 10}, "chunk size"},
		{"short key", backup.Options{Key: []byte("short")}, "key of 5 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem.ResetPuts()
			_, err := backup.Run(context.Background(), backup.DirSource(fx.Dir), mem, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want %q", err, tc.want)
			}
			if len(mem.Puts()) != 0 {
				t.Fatalf("a refused run wrote %v", mem.Puts())
			}
		})
	}
	if _, err := backup.Run(context.Background(), backup.DirSource(t.TempDir()), mem, backup.Options{}); !errors.Is(err, store.ErrNotDatabase) {
		t.Fatalf("backup of an empty directory: %v", err)
	}
}

// A new run after a complete backup starts a new backup instead of touching the complete one.
func TestRunAfterCompleteStartsNew(t *testing.T) {
	fx := small.Fixture(t)
	mem := backuptest.NewMemTarget()
	first := backuptest.Run(t, fx, mem, backup.Options{Now: fixedClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))})
	second := backuptest.Run(t, fx, mem, backup.Options{Now: fixedClock(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))})
	if first.ID == second.ID {
		t.Fatal("second backup reused the first one's ID")
	}
	if _, err := backup.LoadManifest(context.Background(), mem, fx.DB, first.ID); err != nil {
		t.Fatal(err)
	}
}
