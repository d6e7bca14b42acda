package mirror

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A snapshot released while a reader has its database open keeps its files until that reader is done: deleting a
// checkpoint's tables under an open store stops the process.
func TestDropSnapshotWaitsForReaders(t *testing.T) {
	m := &Manager{opts: Options{DataDir: t.TempDir(), Self: "A"}}
	take := func(id string) string {
		dir := filepath.Join(m.snapshotRoot(), id, "db")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		m.snaps.byID = map[string]*snapshot{id: {dir: dir, info: SnapshotInfo{ID: id}}}
		return dir
	}
	exists := func(dir string) bool { _, err := os.Stat(dir); return err == nil }

	dir := take("s1")
	s, err := m.acquireSnapshot("s1")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.DropSnapshot("s1"); err != nil {
		t.Fatal(err)
	}
	if !exists(dir) {
		t.Fatal("a snapshot in use was deleted when it was dropped")
	}
	if _, err := m.acquireSnapshot("s1"); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("a dropped snapshot can still be acquired: %v", err)
	}
	m.releaseSnapshot(s)
	if exists(filepath.Dir(dir)) {
		t.Fatal("the last reader of a dropped snapshot did not delete it")
	}

	// Not in use: dropped at once; a reader that finishes without a drop deletes nothing.
	dir = take("s2")
	s, _ = m.acquireSnapshot("s2")
	m.releaseSnapshot(s)
	if !exists(dir) {
		t.Fatal("releasing a snapshot that was not dropped deleted it")
	}
	if err := m.DropSnapshot("s2"); err != nil || exists(filepath.Dir(dir)) {
		t.Fatalf("drop of an unused snapshot: %v, still there: %v", err, exists(dir))
	}
}
