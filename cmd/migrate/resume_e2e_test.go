package main_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/miniotest"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
)

// fillRandom adds about mib MiB of poorly compressible data to a local database db on n.
func fillRandom(t *testing.T, n *testcluster.Node, db string, mib int) {
	t.Helper()
	mustNode(t, n, "db", "create", db)
	c := n.Client(t, 2)
	raw := make([]byte, 8<<10)
	for i := 0; i < mib*64; i += 8 { // 16 KiB values, 8 per transaction
		tx := c.Txn(db)
		for j := i; j < i+8; j++ {
			rand.Read(raw)
			tx.Set(fmt.Sprintf(`^Big(%d)`, j), []byte(hex.EncodeToString(raw)))
		}
		if _, err := tx.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

type listedBackup struct {
	ID       string `json:"id"`
	Complete bool   `json:"complete"`
}

func listBackups(t *testing.T, env []string, stage, db string) []listedBackup {
	t.Helper()
	r := mustMigrate(t, env, "list", "--stage", stage, "--db", db, "--json")
	var out []listedBackup
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("migrate list --json: %v\n%s", err, r.stdout)
	}
	return out
}

// kill -9 of migrate in the middle of an upload to S3 and in the middle of a restore onto a member: the same command run
// again resumes (the backup keeps its ID and is complete; the restore finishes from the pieces already on the member) and
// completes, and the restored copy catches up to the primary's content.
func TestBackupAndRestoreResumeAfterKill(t *testing.T) {
	c, A, B, _ := newMirror(t)
	s3 := miniotest.Shared(t)
	s3.Bucket(t, "resume")
	env := s3Env(s3)
	const stage = "s3://resume/p"
	fillRandom(t, A, "BIG", 64)
	mustNode(t, A, "db", "add-to-mirror", "BIG", "--mirror", "MIR")

	backupArgs := []string{"backup", "--mirror", A.Addr, "--db", "BIG", "--stage", stage, "--chunk-size", "64KiB", "--parallel", "1", "--json"}
	cmd := startMigrateUntilProgress(t, env, backupArgs...)
	cmd.Process.Kill()
	cmd.Wait()
	before := listBackups(t, env, stage, "BIG")
	if len(before) != 1 || before[0].Complete {
		t.Fatalf("after killing the backup mid-upload: %+v, want one incomplete backup", before)
	}
	mustMigrate(t, env, backupArgs...)
	after := listBackups(t, env, stage, "BIG")
	if len(after) != 1 || !after[0].Complete || after[0].ID != before[0].ID {
		t.Fatalf("after re-running the backup: %+v, want backup %s complete", after, before[0].ID)
	}
	mustMigrate(t, env, "verify", "--stage", stage, "--db", "BIG", "--level", "3")

	restoreArgs := []string{"restore", "--mirror", A.Addr, "--db", "BIG", "--stage", stage, "--to", "B", "--parallel", "1", "--json"}
	cmd = startMigrateUntilProgress(t, env, restoreArgs...)
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(B.DataDir, "db", "BIG.restore")); err != nil {
		t.Fatalf("no restore in progress on B after the kill: %v", err)
	}
	if s := dbStatus(t, B, "BIG"); s != "" {
		t.Fatalf("BIG on B is %q after an interrupted restore", s)
	}
	mustMigrate(t, env, restoreArgs...)
	c.WaitFor(t, "BIG dejournaling on B", 60e9, func() (bool, error) {
		s := dbStatus(t, B, "BIG")
		return s == mirror.DBDejournaling, fmt.Errorf("BIG on B is %q", s)
	})
	var ha, hb store.LogicalHash
	A.AdminGet(t, "/api/v1/databases/BIG/hash", &ha)
	B.AdminGet(t, "/api/v1/databases/BIG/hash", &hb)
	if ha != hb || ha.Nodes == 0 {
		t.Fatalf("BIG on A %+v, on B %+v", ha, hb)
	}
}

// kill -9 of `migrate add-db` in the middle of its backup step, then the same command again: it resumes the plan (the
// add step is not repeated, the backup continues) and completes with a current copy on every member.
func TestAddDBResumesAfterKill(t *testing.T) {
	c, A, _, _ := newMirror(t)
	fillRandom(t, A, "BIG", 32)
	stage, state := t.TempDir(), t.TempDir()
	args := []string{"add-db", "--mirror", A.Addr, "--db", "BIG", "--method", "backup", "--stage", stage, "--state-dir", state,
		"--chunk-size", "64KiB", "--parallel", "1", "--yes", "--json"}
	cmd := startMigrateUntilProgress(t, nil, args...)
	cmd.Process.Kill()
	cmd.Wait()
	if s := dbStatus(t, A, "BIG"); s != mirror.DBNormal {
		t.Fatalf("after the kill BIG on A is %q: the add step should be done", s)
	}
	r := mustMigrate(t, nil, args...)
	var st struct {
		State struct {
			Steps []struct {
				N        int    `json:"n"`
				Status   string `json:"status"`
				Attempts int    `json:"attempts"`
			} `json:"steps"`
		} `json:"state"`
	}
	if err := json.Unmarshal([]byte(lastLine(r.stdout)), &st); err != nil {
		t.Fatalf("add-db result: %v\n%s", err, r.stdout)
	}
	if len(st.State.Steps) != 4 || st.State.Steps[0].Attempts != 1 || st.State.Steps[1].Attempts != 2 {
		t.Fatalf("steps after the resumed run: %+v (want the add done once and the backup attempted twice)", st.State.Steps)
	}
	checkCopies(t, c, "BIG", nil)
}
