package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mirrorkit/mirrorkit/internal/miniotest"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
)

// backupDir takes a backup of db into the directory stage and returns its ID and the directory holding its objects.
func backupDir(t *testing.T, A *testcluster.Node, stage, db string, extra ...string) (string, string) {
	t.Helper()
	r := mustMigrate(t, nil, append([]string{"backup", "--mirror", A.Addr, "--db", db, "--stage", stage, "--chunk-size", "64KiB", "--json"}, extra...)...)
	var done struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(lastLine(r.stdout)), &done); err != nil || done.ID == "" {
		t.Fatalf("backup result: %v\n%s", err, r.stdout)
	}
	return done.ID, filepath.Join(stage, db, done.ID)
}

// firstChunk is the path of one chunk object of a backup in a directory stage.
func firstChunk(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "chunks"))
	if err != nil || len(entries) == 0 {
		t.Fatalf("chunks of %s: %v", dir, err)
	}
	return filepath.Join(dir, "chunks", entries[0].Name())
}

// Each kind of bad backup or bad key ends with a clear error, never a success, and leaves no copy on the member.
func TestBadBackupsAreRefused(t *testing.T) {
	_, A, B, _ := newMirror(t)
	fillRandom(t, A, "APP", 4)
	mustNode(t, A, "db", "add-to-mirror", "APP", "--mirror", "MIR")
	stage := t.TempDir()
	keys := t.TempDir()
	k1, k2 := filepath.Join(keys, "k1"), filepath.Join(keys, "k2")
	mustMigrate(t, nil, "keygen", k1)
	mustMigrate(t, nil, "keygen", k2)
	failMigrate(t, nil, "already exists", "keygen", k1)
	noCopyOnB := func() {
		t.Helper()
		if s := dbStatus(t, B, "APP"); s != "" {
			t.Fatalf("APP on B is %q after a refused restore", s)
		}
	}
	restoreTo := func(id string, extra ...string) []string {
		return append([]string{"restore", "--mirror", A.Addr, "--db", "APP", "--stage", stage, "--backup", id, "--to", "B"}, extra...)
	}

	// Encrypted backup: no key, the wrong key and a missing key file are refused before anything is written.
	encID, _ := backupDir(t, A, stage, "APP", "--key-file", k1)
	failMigrate(t, nil, "key file is required", restoreTo(encID)...)
	failMigrate(t, nil, "wrong key", restoreTo(encID, "--key-file", k2)...)
	failMigrate(t, nil, "does not exist", restoreTo(encID, "--key-file", filepath.Join(keys, "missing"))...)
	failMigrate(t, nil, "wrong key", "verify", "--stage", stage, "--db", "APP", "--backup", encID, "--level", "2", "--key-file", k2)
	noCopyOnB()
	mustMigrate(t, nil, "verify", "--stage", stage, "--db", "APP", "--backup", encID, "--level", "3", "--key-file", k1)

	// A chunk altered in place (same size): level 1 cannot see it, level 2 and a restore do.
	altID, altDir := backupDir(t, A, stage, "APP")
	chunk := firstChunk(t, altDir)
	data, err := os.ReadFile(chunk)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(chunk, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mustMigrate(t, nil, "verify", "--stage", stage, "--db", "APP", "--backup", altID, "--level", "1")
	failMigrate(t, nil, "chunk object corrupt", "verify", "--stage", stage, "--db", "APP", "--backup", altID, "--level", "2")
	failMigrate(t, nil, "chunk object corrupt", restoreTo(altID)...)
	noCopyOnB()

	// A truncated chunk: even level 1 sees it.
	truncID, truncDir := backupDir(t, A, stage, "APP")
	if err := os.Truncate(firstChunk(t, truncDir), 10); err != nil {
		t.Fatal(err)
	}
	failMigrate(t, nil, "FAILED verification at level 1", "verify", "--stage", stage, "--db", "APP", "--backup", truncID, "--level", "1")
	failMigrate(t, nil, "chunk", restoreTo(truncID)...)
	noCopyOnB()

	// A tampered manifest: listed as damaged, never restored.
	tamperID, tamperDir := backupDir(t, A, stage, "APP")
	manifest := filepath.Join(tamperDir, "manifest.json")
	m, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, []byte(strings.Replace(string(m), `"level": 3`, `"level": 4`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	failMigrate(t, nil, "checksum mismatch", restoreTo(tamperID)...)
	if r := mustMigrate(t, nil, "list", "--stage", stage, "--db", "APP"); !strings.Contains(r.stdout, "DAMAGED") {
		t.Fatalf("list does not show the tampered backup as damaged:\n%s", r.stdout)
	}
	noCopyOnB()

	// Bad names and unknown members are usage errors.
	if r := migrate(t, nil, restoreTo(encID, "--key-file", k1, "--to", "NOSUCH")...); r.code != 2 || !strings.Contains(r.stderr, "unknown member") {
		t.Fatalf("restore to an unknown member: %s", r)
	}
	if r := migrate(t, nil, "backup", "--mirror", A.Addr, "--db", "bad name!", "--stage", stage); r.code != 2 {
		t.Fatalf("backup of a bad name: %s", r)
	}

	// A good backup still restores, after all that.
	goodID, _ := backupDir(t, A, stage, "APP")
	mustMigrate(t, nil, restoreTo(goodID)...)
}

// A stage that goes away in the middle of an upload fails the backup with an error that names it; no backup is complete.
func TestBackupFailsWhenTheStageGoesAway(t *testing.T) {
	_, A, _, _ := newMirror(t)
	s3 := miniotest.Start(t)
	s3.Bucket(t, "gone")
	env := s3Env(s3)
	fillRandom(t, A, "APP", 16)
	mustNode(t, A, "db", "add-to-mirror", "APP", "--mirror", "MIR")
	args := []string{"backup", "--mirror", A.Addr, "--db", "APP", "--stage", "s3://gone/x", "--chunk-size", "64KiB", "--parallel", "1", "--json"}
	cmd := startMigrateUntilProgress(t, env, args...)
	s3.Kill()
	err := cmd.Wait()
	if err == nil {
		t.Fatal("the backup reported success after its stage went away")
	}
	r := failMigrate(t, env, "s3", args...)
	if !strings.Contains(r.stderr, "gone") {
		t.Fatalf("the error does not name the bucket: %s", r.stderr)
	}
}

// A backup whose position the primary has purged from its mirror journal is listed as not restorable, and restoring it is
// refused with an error that says to take a newer backup; a newer backup restores.
func TestRestoreRefusedWhenJournalPurged(t *testing.T) {
	c := testcluster.New(t)
	args := []string{"--segment-size", "1048576", "--keep-segments", "1", "--max-age", "1ms", "--purge-interval", "100ms"}
	for _, n := range []string{"A", "B"} {
		c.Add(n, args...)
	}
	c.Start()
	A, B := c.Node("A"), c.Node("B")
	mustNode(t, A, "mirror", "create", "MIR", "--qos", "2s")
	mustNode(t, B, "mirror", "join", "MIR", "--primary", A.Addr, "--as", "failover")
	fill(t, A, "APP", 100, 100)
	mustNode(t, A, "db", "add-to-mirror", "APP", "--mirror", "MIR")
	stage := t.TempDir()
	oldID, _ := backupDir(t, A, stage, "APP")
	fillRandom(t, A, "MORE", 0)
	mustNode(t, A, "db", "add-to-mirror", "MORE", "--mirror", "MIR")
	cl := A.Client(t, 1)
	big := strings.Repeat("x", 64<<10)
	c.WaitFor(t, "the primary purges past the old backup", 60e9, func() (bool, error) {
		for i := 0; i < 20; i++ {
			if err := cl.Set(t.Context(), "MORE", fmt.Sprintf("^Pad(%d)", i), []byte(big)); err != nil {
				return false, err
			}
		}
		r := migrate(t, nil, "list", "--stage", stage, "--mirror", A.Addr)
		return strings.Contains(r.stdout, "no: the mirror journal from the copy's position is purged"), fmt.Errorf("list:\n%s", r.stdout)
	})
	failMigrate(t, nil, "take a newer backup", "restore", "--mirror", A.Addr, "--db", "APP", "--stage", stage, "--backup", oldID, "--to", "B")
	if s := dbStatus(t, B, "APP"); s != "" {
		t.Fatalf("APP on B is %q after a refused restore", s)
	}
	newID, _ := backupDir(t, A, stage, "APP")
	mustMigrate(t, nil, "restore", "--mirror", A.Addr, "--db", "APP", "--stage", stage, "--backup", newID, "--to", "B")
	mustMigrate(t, nil, "restore", "--stage", stage, "--db", "APP", "--backup", newID, "--dir", filepath.Join(t.TempDir(), "APP"))
}
