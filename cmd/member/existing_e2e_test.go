package main_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
)

// waitDBStatus waits until member n shows APP with the wanted status.
func waitDBStatus(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, want string) {
	t.Helper()
	c.WaitFor(t, fmt.Sprintf("APP %q on %s", want, n.Name), 90*time.Second, func() (bool, error) {
		s, err := dbStatusOn(n)
		return err == nil && s == want, fmt.Errorf("APP on %s is %q (%v)", n.Name, s, err)
	})
}

// An existing database with data joins a mirror on the primary while a client writes; the backup fetches a copy by
// automatic download (creating it with the mirror name) and the DR async by an explicit download from the backup. Every
// copy ends identical, dejournaling, with every acknowledged write.
func TestExistingDatabaseJoinsByDownload(t *testing.T) {
	c := testcluster.New(t)
	for _, n := range []string{"A", "B", "C"} {
		c.Add(n)
	}
	defer dumpLogs(t, c)
	c.Start()
	A, B, C := c.Node("A"), c.Node("B"), c.Node("C")
	mustNode(t, A, "db", "create", "APP")
	writeN(t, A, "Old", 3000)
	mustNode(t, A, "mirror", "create", "MIR", "--qos", "2s")
	mustNode(t, B, "mirror", "join", "MIR", "--primary", A.Addr, "--as", "failover")
	mustNode(t, C, "mirror", "join", "MIR", "--primary", A.Addr, "--as", "dr")

	if r := B.CLI(t, "db", "add-to-mirror", "APP", "--mirror", "MIR"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "not the primary") {
		t.Fatalf("add-to-mirror on the backup: exit %d %q", r.ExitCode, r.Stderr)
	}
	l := startLoad(t, []string{A.Addr, B.Addr, C.Addr}, 2)
	l.waitAcks(t, c, 200)
	mustNode(t, A, "db", "add-to-mirror", "APP", "--mirror", "MIR")
	mustNode(t, A, "db", "add-to-mirror", "APP", "--mirror", "MIR") // repeating it is harmless
	l.waitAcks(t, c, 200)

	out := mustNode(t, B, "db", "create", "APP", "--mirror", "MIR")
	if !strings.Contains(out, mirror.DBNeedsDownload) && !strings.Contains(out, mirror.DBDownloading) {
		t.Fatalf("creating APP on the backup should start a download: %q", out)
	}
	mustNode(t, C, "db", "download", "APP", "--mirror", "MIR", "--from", "B")
	waitDBStatus(t, c, B, mirror.DBDejournaling)
	waitDBStatus(t, c, C, mirror.DBDejournaling)
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	l.waitAcks(t, c, 200)
	acked := l.finish(t)
	waitConverged(t, c)
	checkAcked(t, B, acked)
	if r := B.CLI(t, "db", "download", "APP", "--mirror", "MIR"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "already exists") {
		t.Fatalf("second download: exit %d %q", r.ExitCode, r.Stderr)
	}
	if r := A.CLI(t, "db", "download", "APP", "--mirror", "MIR"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "primary") {
		t.Fatalf("download on the primary: exit %d %q", r.ExitCode, r.Stderr)
	}

	// The copies survive a restart of every member, and the primary keeps its journal switch.
	for _, n := range []*testcluster.Node{B, C, A} {
		n.Kill()
		n.Restart()
	}
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	writeN(t, A, "After", 100)
	waitConverged(t, c)
}
