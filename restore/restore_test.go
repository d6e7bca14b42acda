package restore

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/backup/backuptest"
	"github.com/mirrorkit/mirrorkit/engine/store"
)

// shared is a checkpoint of about 300 KiB in several table files, made once for the tests that only read it.
var shared = backuptest.Shared{DB: "Orders", Size: 300 << 10, Options: backuptest.CheckpointOptions{ValuesPerTable: 100}}

// checkRestored asserts that dir holds the fixture's database, byte for byte, at its position and hash.
func checkRestored(t *testing.T, fx backuptest.Fixture, dir string) {
	t.Helper()
	info, err := store.InspectDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != fx.DB || info.Applied != fx.Applied {
		t.Fatalf("restored %+v, want %s at %s", info, fx.DB, fx.Applied)
	}
	h, err := store.HashDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if h != fx.Hash {
		t.Fatalf("restored hash %+v, want %+v", h, fx.Hash)
	}
	// LOCK files aside: opening a database creates one.
	if got, want := backuptest.ReadFiles(t, dir, "LOCK"), backuptest.ReadFiles(t, fx.Dir, "LOCK"); !maps.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("restored %d files, checkpoint has %d, or contents differ", len(got), len(want))
	}
	for _, leftover := range []string{dir + ".restore", dir + ".old"} {
		if exists(leftover) {
			t.Fatalf("%s left behind", leftover)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	fx := shared.Fixture(t)
	for _, tc := range []struct {
		name string
		opts backup.Options
	}{
		{"plain level 1 tiny chunks", backup.Options{Level: 1, ChunkSize: 4 << 10}},
		{"plain level 19", backup.Options{Level: 19}},
		{"encrypted tiny chunks", backup.Options{ChunkSize: 4 << 10, Key: backuptest.Key(1)}},
		{"encrypted level 19", backup.Options{Level: 19, Key: backuptest.Key(2)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tgt, m := backuptest.Backup(t, fx, tc.opts)
			final := filepath.Join(t.TempDir(), "db", "ORDERS")
			sink, err := NewDirSink(final, false)
			if err != nil {
				t.Fatal(err)
			}
			var last int64
			err = Run(context.Background(), tgt, m, sink, Options{Key: tc.opts.Key, Parallel: 3, Progress: func(done, total int64) {
				if done < last || total != m.Bytes {
					t.Errorf("progress %d of %d after %d", done, total, last)
				}
				last = done
			}})
			if err != nil {
				t.Fatal(err)
			}
			if last != m.Bytes {
				t.Fatalf("progress ended at %d of %d", last, m.Bytes)
			}
			checkRestored(t, fx, final)
		})
	}
}

// An existing directory is replaced by the restored one.
func TestRestoreReplaces(t *testing.T) {
	fx := shared.Fixture(t)
	tgt, m := backuptest.Backup(t, fx, backup.Options{})
	final := filepath.Join(t.TempDir(), "ORDERS")
	if err := os.MkdirAll(final, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(final, "stale"), []byte("old"), 0o644)
	sink, err := NewDirSink(final, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), tgt, m, sink, Options{}); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, fx, final)
}

func TestResumeInterruptedRestore(t *testing.T) {
	fx := shared.Fixture(t)
	tgt, m := backuptest.Backup(t, fx, backup.Options{ChunkSize: 4 << 10})
	final := filepath.Join(t.TempDir(), "ORDERS")
	dir, err := NewDirSink(final, false)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, f := range m.Files {
		total += len(f.Chunks)
	}
	first := newRecordingSink(dir, total*2/3)
	// One worker writes files in manifest order, so the failure leaves some files complete and one half-written.
	if err := Run(context.Background(), tgt, m, first, Options{Parallel: 1}); !errors.Is(err, errInjected) || !strings.Contains(err.Error(), m.Name()) {
		t.Fatalf("interrupted restore: %v", err)
	}
	if exists(final) {
		t.Fatal("an interrupted restore left something at the final path")
	}
	complete := map[string]bool{}
	for _, f := range m.Files {
		if len(f.Chunks) > 0 && first.writes[f.Name] == len(f.Chunks) {
			complete[f.Name] = true
		}
	}
	if len(complete) == 0 {
		t.Fatal("the first run completed no file; the test proves nothing")
	}

	sink2, err := NewDirSink(final, false)
	if err != nil {
		t.Fatal(err)
	}
	second := newRecordingSink(sink2, -1)
	if err := Run(context.Background(), tgt, m, second, Options{Parallel: 3}); err != nil {
		t.Fatal(err)
	}
	for name := range complete {
		if second.writes[name] != 0 {
			t.Errorf("file %s was complete after the first run and written again %d times", name, second.writes[name])
		}
	}
	if len(second.writes) == 0 {
		t.Fatal("the second run wrote nothing")
	}
	checkRestored(t, fx, final)
}

func TestDeltaKeepsMatchingFiles(t *testing.T) {
	fx := shared.Fixture(t)
	tgt, m := backuptest.Backup(t, fx, backup.Options{ChunkSize: 8 << 10})
	final := filepath.Join(t.TempDir(), "ORDERS")
	sink, err := NewDirSink(final, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), tgt, m, sink, Options{}); err != nil {
		t.Fatal(err)
	}
	// Damage one table file of the existing copy and add a file the backup does not have.
	var damaged string
	for _, f := range m.Files {
		if strings.HasSuffix(f.Name, ".sst") {
			damaged = f.Name
			break
		}
	}
	before := map[string]os.FileInfo{}
	for _, f := range m.Files {
		st, err := os.Stat(filepath.Join(final, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		before[f.Name] = st
	}
	p := filepath.Join(final, damaged)
	data, _ := os.ReadFile(p)
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(final, "junk"), []byte("x"), 0o644)

	delta, err := NewDirSink(final, true)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecordingSink(delta, -1)
	if err := Run(context.Background(), tgt, m, rec, Options{}); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 1 || rec.writes[damaged] == 0 {
		t.Fatalf("delta restore wrote %v, want only %s", rec.writes, damaged)
	}
	checkRestored(t, fx, final)
	if exists(filepath.Join(final, "junk")) {
		t.Fatal("a file the backup does not have survived the restore")
	}
	for _, f := range m.Files {
		st, err := os.Stat(filepath.Join(final, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if same := os.SameFile(st, before[f.Name]); same == (f.Name == damaged) && f.Size > 0 {
			t.Errorf("file %s: reused = %v", f.Name, same)
		}
	}
}

func TestRestoreRefusesBadInput(t *testing.T) {
	fx := shared.Fixture(t)
	ctx := context.Background()
	type setup struct {
		tgt backup.Target
		m   *backup.Manifest
		key []byte
	}
	chunkOf := func(m *backup.Manifest) (backup.File, string) {
		for _, f := range m.Files {
			if len(f.Chunks) > 1 {
				return f, m.ChunkKey(f.Chunks[1].SHA256)
			}
		}
		t.Fatal("no file with two chunks")
		return backup.File{}, ""
	}
	for _, tc := range []struct {
		name     string
		encrypt  bool
		prepare  func(tgt *backuptest.MemTarget, m *backup.Manifest) setup
		sentinel error
		names    bool // the error names the file and chunk object
	}{
		{"corrupted chunk", false, func(tgt *backuptest.MemTarget, m *backup.Manifest) setup {
			_, k := chunkOf(m)
			tgt.Edit(t, k, func(b []byte) []byte { b[len(b)/2] ^= 1; return b })
			return setup{tgt, m, nil}
		}, backup.ErrCorruptChunk, true},
		{"corrupted encrypted chunk", true, func(tgt *backuptest.MemTarget, m *backup.Manifest) setup {
			_, k := chunkOf(m)
			tgt.Edit(t, k, func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
			return setup{tgt, m, backuptest.Key(3)}
		}, backup.ErrCorruptChunk, true},
		{"truncated object", false, func(tgt *backuptest.MemTarget, m *backup.Manifest) setup {
			_, k := chunkOf(m)
			tgt.Edit(t, k, func(b []byte) []byte { return b[:len(b)/2] })
			return setup{tgt, m, nil}
		}, backup.ErrCorruptChunk, true},
		{"missing chunk", false, func(tgt *backuptest.MemTarget, m *backup.Manifest) setup {
			_, k := chunkOf(m)
			tgt.Delete(ctx, k)
			return setup{tgt, m, nil}
		}, backup.ErrMissingChunk, true},
		{"wrong key", true, func(tgt *backuptest.MemTarget, m *backup.Manifest) setup { return setup{tgt, m, backuptest.Key(4)} }, backup.ErrWrongKey, false},
		{"missing key", true, func(tgt *backuptest.MemTarget, m *backup.Manifest) setup { return setup{tgt, m, nil} }, backup.ErrKeyRequired, false},
		{"target lost mid-restore", false, func(tgt *backuptest.MemTarget, m *backup.Manifest) setup {
			return setup{backuptest.FailAfterGets(tgt, 5), m, nil}
		}, backuptest.ErrUnreachable, false},
		{"manifest position differs from the data", false, func(tgt *backuptest.MemTarget, m *backup.Manifest) setup {
			m.Position.Offset++
			return setup{tgt, m, nil}
		}, ErrMismatch, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := backup.Options{ChunkSize: 4 << 10}
			if tc.encrypt {
				opts.Key = backuptest.Key(3)
			}
			tgt, m := backuptest.Backup(t, fx, opts)
			s := tc.prepare(tgt, m)
			final := filepath.Join(t.TempDir(), "ORDERS")
			sink, err := NewDirSink(final, false)
			if err != nil {
				t.Fatal(err)
			}
			err = Run(ctx, s.tgt, s.m, sink, Options{Key: s.key})
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), m.Name()) {
				t.Fatalf("restore: %v, want %v naming %s", err, tc.sentinel, m.Name())
			}
			if tc.names {
				f, k := chunkOf(m)
				if !strings.Contains(err.Error(), f.Name) || !strings.Contains(err.Error(), k) {
					t.Fatalf("error does not name file %s and object %s: %v", f.Name, k, err)
				}
			}
			if exists(final) {
				t.Fatal("a failed restore left something at the final path")
			}
			if errors.Is(err, backup.ErrWrongKey) || errors.Is(err, backup.ErrKeyRequired) {
				if entries, _ := os.ReadDir(sink.Temp()); len(entries) != 0 {
					t.Fatalf("a restore refused for its key wrote %d files", len(entries))
				}
			}
		})
	}
}

func TestTamperedManifestIsNotRestored(t *testing.T) {
	fx := shared.Fixture(t)
	tgt, m := backuptest.Backup(t, fx, backup.Options{})
	key := m.Database + "/" + m.ID + "/manifest.json"
	tgt.Edit(t, key, func(b []byte) []byte {
		return bytes.Replace(b, []byte(`"nodes": `), []byte(`"nodes": 1`), 1)
	})
	_, err := backup.LoadManifest(context.Background(), tgt, m.Database, m.ID)
	if !errors.Is(err, backup.ErrManifestTampered) || !strings.Contains(err.Error(), "do not restore it") {
		t.Fatalf("tampered manifest: %v", err)
	}
}

// A restored directory that does not open at the manifest's position is removed and the previous directory put back.
func TestFailedCheckPutsOldDirectoryBack(t *testing.T) {
	fx := shared.Fixture(t)
	tgt, m := backuptest.Backup(t, fx, backup.Options{})
	final := filepath.Join(t.TempDir(), "ORDERS")
	os.MkdirAll(final, 0o755)
	os.WriteFile(filepath.Join(final, "previous"), []byte("keep me"), 0o644)
	m.Position.Segment++
	sink, err := NewDirSink(final, false)
	if err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), tgt, m, sink, Options{})
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "previous directory is back") {
		t.Fatalf("restore with a wrong position: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(final, "previous")); err != nil || string(data) != "keep me" {
		t.Fatalf("previous directory not back: %q, %v", data, err)
	}
	if exists(final+".old") || exists(final+".restore") {
		t.Fatal("leftovers after a rolled-back restore")
	}
}

func TestVerifyLevels(t *testing.T) {
	fx := shared.Fixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		damage func(tgt *backuptest.MemTarget, m *backup.Manifest)
		fail   [4]bool // by level
	}{
		{"intact", func(*backuptest.MemTarget, *backup.Manifest) {}, [4]bool{}},
		{"same-size corruption", func(tgt *backuptest.MemTarget, m *backup.Manifest) {
			tgt.Edit(t, firstChunk(t, m), func(b []byte) []byte { b[3] ^= 0x40; return b })
		}, [4]bool{2: true, 3: true}},
		{"missing chunk", func(tgt *backuptest.MemTarget, m *backup.Manifest) {
			tgt.Delete(ctx, firstChunk(t, m))
		}, [4]bool{1: true, 2: true, 3: true}},
		{"logical hash differs", func(tgt *backuptest.MemTarget, m *backup.Manifest) { m.LogicalHash.Nodes++ }, [4]bool{3: true}},
	} {
		for level := 1; level <= 3; level++ {
			t.Run(tc.name, func(t *testing.T) {
				k := backuptest.Key(5)
				tgt, m := backuptest.Backup(t, fx, backup.Options{ChunkSize: 16 << 10, Key: k})
				tc.damage(tgt, m)
				scratch := t.TempDir()
				rep, err := Verify(ctx, tgt, m, level, k, scratch)
				if (err != nil) != tc.fail[level] {
					t.Fatalf("level %d: %v, want failure %v", level, err, tc.fail[level])
				}
				if entries, _ := os.ReadDir(scratch); len(entries) != 0 {
					t.Fatalf("level %d left %d entries in scratch", level, len(entries))
				}
				if err != nil {
					return
				}
				if rep.Level != level || rep.Objects == 0 || rep.StoredBytes != m.StoredBytes ||
					(rep.Chunks != 0) != (level >= 2) || rep.HashChecked != (level == 3) || (rep.Bytes == m.Bytes) != (level == 3) {
					t.Fatalf("level %d report %+v", level, rep)
				}
			})
		}
	}
	tgt, m := backuptest.Backup(t, fx, backup.Options{Key: backuptest.Key(6)})
	if _, err := Verify(ctx, tgt, m, 2, nil, ""); !errors.Is(err, backup.ErrKeyRequired) {
		t.Fatalf("level 2 without a key: %v", err)
	}
	if _, err := Verify(ctx, tgt, m, 4, nil, ""); err == nil {
		t.Fatal("level 4 accepted")
	}
}

// firstChunk is the object key of the first chunk of the backup.
func firstChunk(tb testing.TB, m *backup.Manifest) string {
	tb.Helper()
	for _, f := range m.Files {
		if len(f.Chunks) > 0 {
			return m.ChunkKey(f.Chunks[0].SHA256)
		}
	}
	tb.Fatal("backup without chunks")
	return ""
}

// lyingSink flips a byte of the first chunk it passes on: data that was verified on download but was damaged on its way
// to the directory (the hop to a member, in a real restore).
type lyingSink struct {
	Sink
	once sync.Once
}

func (s *lyingSink) WriteAt(ctx context.Context, name string, offset int64, data []byte, sum string) error {
	if len(data) > 0 {
		s.once.Do(func() { data = bytes.Clone(data); data[0] ^= 1 })
	}
	return s.Sink.WriteAt(ctx, name, offset, data, sum)
}

func TestPieceDamagedOnTheWayIsRefused(t *testing.T) {
	fx := shared.Fixture(t)
	tgt, m := backuptest.Backup(t, fx, backup.Options{})
	final := filepath.Join(t.TempDir(), "ORDERS")
	sink, err := NewDirSink(final, false)
	if err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), tgt, m, &lyingSink{Sink: sink.CheckArrivals()}, Options{Parallel: 1})
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "does not have the checksum it was sent with") {
		t.Fatalf("restore through a sink that passed on wrong bytes: %v", err)
	}
	if exists(final) {
		t.Fatal("a restore with a wrong file left something at the final path")
	}
	// Running it again repairs the file: the damaged piece does not match and is fetched again.
	if err := Run(context.Background(), tgt, m, sink, Options{}); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, fx, final)
}

// noCommitSink receives a whole restore but does not commit it: what an interrupted restore leaves behind.
type noCommitSink struct{ Sink }

func (noCommitSink) Commit(context.Context, *backup.Manifest) error { return errors.New("not now") }

// A sink that did not write a file itself, nor hash it in Existing (a member restarted between the pieces and the commit),
// reads it back at Commit: a file damaged in between is found.
func TestCommitChecksFilesItCannotVouchFor(t *testing.T) {
	fx := shared.Fixture(t)
	tgt, m := backuptest.Backup(t, fx, backup.Options{})
	final := filepath.Join(t.TempDir(), "ORDERS")
	first, err := NewDirSink(final, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), tgt, m, noCommitSink{first}, Options{}); err == nil {
		t.Fatal("the restore committed through a sink that refuses to")
	}
	f := m.Files[0]
	for _, candidate := range m.Files {
		if candidate.Size > f.Size {
			f = candidate
		}
	}
	p := filepath.Join(first.Temp(), filepath.FromSlash(f.Name))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	second, err := NewDirSink(final, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Commit(context.Background(), m); !errors.Is(err, ErrMismatch) {
		t.Fatalf("commit of a damaged file by a sink that did not write it: %v", err)
	}
	if exists(final) {
		t.Fatal("a commit with a damaged file left something at the final path")
	}
}
