package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/mirrorkit/mirrorkit/internal/miniotest"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
)

// Three databases with data join a three-member mirror, one by each method, while a client writes to all of them: every
// copy ends with the primary's logical hash, dejournaling, with every acknowledged write.
func TestAddDBByEachMethod(t *testing.T) {
	c, A, B, C := newMirror(t)
	s3 := miniotest.Shared(t)
	s3.Bucket(t, "adddb")
	env := s3Env(s3)
	state := t.TempDir()
	for _, db := range []string{"VIABACKUP", "VIACOPY", "VIADOWNLOAD"} {
		fill(t, A, db, 2000, 200)
	}
	w := startWriter(t, []string{A.Addr, B.Addr, C.Addr}, "VIABACKUP", "VIACOPY", "VIADOWNLOAD")
	w.WaitAcks(t, c, 300)

	// A dry run shows the plan with live pre-checks and changes nothing.
	dry := mustMigrate(t, env, "add-db", "--mirror", A.Addr, "--db", "VIABACKUP", "--method", "backup", "--stage", "s3://adddb/stage",
		"--state-dir", state, "--dry-run")
	for _, want := range []string{"add VIABACKUP, with its data", "back up VIABACKUP from A", "onto B", "onto C", "dry run: every pre-check passes"} {
		if !strings.Contains(dry.stdout, want) {
			t.Fatalf("dry run output lacks %q:\n%s", want, dry.stdout)
		}
	}
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Fatalf("the dry run wrote %d files into the state dir", len(entries))
	}
	if got := dbStatus(t, A, "VIABACKUP"); got != "" {
		t.Fatalf("after the dry run VIABACKUP is %q in the mirror on A", got)
	}
	if objs := listS3(t, s3, "adddb"); len(objs) != 0 {
		t.Fatalf("the dry run stored %d objects: %v", len(objs), objs)
	}
	// Without --yes and without a terminal, nothing runs.
	failMigrate(t, env, "--yes", "add-db", "--mirror", A.Addr, "--db", "VIACOPY", "--method", "copy", "--state-dir", state)

	mustMigrate(t, env, "add-db", "--mirror", A.Addr, "--db", "VIABACKUP", "--method", "backup", "--stage", "s3://adddb/stage",
		"--state-dir", state, "--yes")
	mustMigrate(t, env, "add-db", "--mirror", A.Addr, "--db", "VIACOPY", "--method", "copy", "--state-dir", state, "--yes")
	mustMigrate(t, env, "add-db", "--mirror", A.Addr, "--db", "VIADOWNLOAD", "--method", "download", "--state-dir", state, "--yes", "--json")
	w.WaitAcks(t, c, 300)
	acked := w.Finish(t)
	for db, a := range acked {
		checkCopies(t, c, db, a)
	}
	list := mustMigrate(t, env, "list", "--stage", "s3://adddb/stage", "--mirror", A.Addr)
	if !strings.Contains(list.stdout, "VIABACKUP") || !strings.Contains(list.stdout, "yes") {
		t.Fatalf("migrate list:\n%s", list.stdout)
	}
	if _, err := os.Stat(filepath.Join(state, "add-db-MIR-VIABACKUP.plan.json.state")); err != nil {
		t.Fatalf("plan state: %v", err)
	}

	// Running a finished plan's command again makes a new plan whose steps find nothing left to do.
	again := mustMigrate(t, env, "add-db", "--mirror", A.Addr, "--db", "VIACOPY", "--method", "copy", "--state-dir", state, "--yes")
	if !strings.Contains(again.stdout, "already has a current copy") || !strings.Contains(again.stdout, "already in mirror MIR") {
		t.Fatalf("second add-db of VIACOPY:\n%s", again.stdout)
	}

	// Undo walks the copy plan back: the copies go, and the database is a local database of the primary again.
	mustMigrate(t, env, "add-db", "--mirror", A.Addr, "--db", "VIACOPY", "--method", "copy", "--state-dir", state, "--yes", "--undo")
	for _, n := range []*testcluster.Node{B, C} {
		if r := n.CLI(t, "db", "list", "--json"); strings.Contains(r.Stdout, "VIACOPY") {
			t.Fatalf("VIACOPY still on %s after the undo:\n%s", n.Name, r.Stdout)
		}
	}
	if got := dbStatus(t, A, "VIACOPY"); got != "" {
		t.Fatalf("VIACOPY is %q in the mirror on A after the undo", got)
	}
	if r := A.CLI(t, "kv", "get", "--db", "VIACOPY", "^Old(7)"); r.ExitCode != 0 {
		t.Fatalf("VIACOPY's data on A after the undo: %s", r.Stderr)
	}
}

func listS3(t *testing.T, s *miniotest.Server, bucket string) []string {
	t.Helper()
	var keys []string
	for obj := range s.Client(t).ListObjects(t.Context(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	return keys
}
