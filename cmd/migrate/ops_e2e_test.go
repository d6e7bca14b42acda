package main_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
)

// The single operations on real members: list shows each backup, prune is a dry run unless confirmed and never takes the
// newest, copy gives a member a current copy with no staging, and a delta restore replaces a dismounted older copy.
func TestListPruneCopyAndDeltaRestore(t *testing.T) {
	c, A, B, C := newMirror(t)
	fillRandom(t, A, "APP", 4)
	mustNode(t, A, "db", "add-to-mirror", "APP", "--mirror", "MIR")
	stage := t.TempDir()
	var ids []string
	for range 3 {
		id, _ := backupDir(t, A, stage, "APP")
		ids = append(ids, id)
	}
	if got := listBackups(t, nil, stage, "APP"); len(got) != 3 {
		t.Fatalf("list: %+v", got)
	}
	dry := mustMigrate(t, nil, "prune", "--stage", stage, "--keep", "1")
	if strings.Count(dry.stdout, "would delete") != 2 || !strings.Contains(dry.stdout, ids[0]) || strings.Contains(dry.stdout, ids[2]) {
		t.Fatalf("prune dry run:\n%s", dry.stdout)
	}
	if got := listBackups(t, nil, stage, "APP"); len(got) != 3 {
		t.Fatalf("the prune dry run deleted backups: %+v", got)
	}
	failMigrate(t, nil, "--keep", "prune", "--stage", stage)
	mustMigrate(t, nil, "prune", "--stage", stage, "--keep", "1", "--confirm")
	if got := listBackups(t, nil, stage, "APP"); len(got) != 1 || got[0].ID != ids[2] {
		t.Fatalf("after pruning to one: %+v, want only %s", got, ids[2])
	}

	// copy: C gets its copy straight from A.
	r := mustMigrate(t, nil, "copy", "--mirror", A.Addr, "--db", "APP", "--from", "A", "--to", "C", "--json")
	var done map[string]any
	if err := json.Unmarshal([]byte(lastLine(r.stdout)), &done); err != nil || done["to"] != "C" {
		t.Fatalf("copy result %v: %s", err, r.stdout)
	}
	if s := dbStatus(t, C, "APP"); s != mirror.DBDejournaling {
		t.Fatalf("APP on C after the copy: %q", s)
	}
	failMigrate(t, nil, "already exists", "copy", "--mirror", A.Addr, "--db", "APP", "--from", "A", "--to", "C")
	failMigrate(t, nil, "primary", "copy", "--mirror", A.Addr, "--db", "APP", "--from", "C", "--to", "A")

	// restore onto B, then a newer backup restored with --delta over B's dismounted copy.
	mustMigrate(t, nil, "restore", "--mirror", A.Addr, "--db", "APP", "--stage", stage, "--to", "B")
	failMigrate(t, nil, "mounted", "restore", "--mirror", A.Addr, "--db", "APP", "--stage", stage, "--to", "B")
	mustNode(t, B, "db", "dismount", "APP")
	fill(t, A, "OTHER", 10, 10) // some traffic between the two backups
	newID, _ := backupDir(t, A, stage, "APP")
	mustMigrate(t, nil, "restore", "--mirror", A.Addr, "--db", "APP", "--stage", stage, "--backup", newID, "--to", "B", "--delta")
	checkCopies(t, c, "APP", nil)
}
