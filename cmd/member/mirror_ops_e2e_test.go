package main_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
)

func writeN(t *testing.T, n *testcluster.Node, prefix string, count int) {
	t.Helper()
	c := n.Client(t, 2)
	for i := 0; i < count; i++ {
		if err := c.Set(context.Background(), "APP", fmt.Sprintf(`^%s(%d)`, prefix, i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
}

func dbStatusOn(n *testcluster.Node) (string, error) {
	var sts []mirror.Status
	if _, err := n.TryAdminGet("/api/v1/mirror/local", &sts); err != nil {
		return "", err
	}
	if len(sts) == 0 || len(sts[0].Databases) == 0 {
		return "", fmt.Errorf("no mirrored database on %s", n.Name)
	}
	return sts[0].Databases[0].Status, nil
}

func TestOperatorActions(t *testing.T) {
	c := testcluster.New(t)
	for _, n := range []string{"A", "B", "C", "D", "E"} {
		c.Add(n)
	}
	defer dumpLogs(t, c)
	newMirror(t, c, []member{{"A", ""}, {"B", "failover"}, {"C", "dr"}, {"D", "reporting-ro"}})
	A, B, C, D, E := c.Node("A"), c.Node("B"), c.Node("C"), c.Node("D"), c.Node("E")
	waitTransfer(t, c, "A", "B", mirror.TransferActive)

	// Membership rules: two failover members at most; a failover or DR member belongs to one mirror only.
	for _, tc := range []struct {
		n    *testcluster.Node
		args []string
		want string
	}{
		{E, []string{"mirror", "join", "MIR", "--primary", A.Addr, "--as", "failover"}, "at most 2"},
		{B, []string{"mirror", "create", "OTHER"}, "one mirror only"},
		{C, []string{"mirror", "join", "OTHER", "--primary", A.Addr, "--as", "dr"}, "one mirror only"},
		{E, []string{"mirror", "join", "bad-name", "--primary", A.Addr, "--as", "dr"}, "not a letter or digit"},
	} {
		if r := tc.n.CLI(t, tc.args...); r.ExitCode == 0 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("%s on %s: exit %d %q, want an error about %q", strings.Join(tc.args, " "), tc.n.Name, r.ExitCode, r.Stderr, tc.want)
		}
	}

	// A reporting async may belong to several mirrors, with one mirror journal each.
	mustNode(t, E, "mirror", "create", "OTHER", "--qos", "2s")
	mustNode(t, D, "mirror", "join", "OTHER", "--primary", E.Addr, "--as", "reporting-ro")
	mustNode(t, E, "db", "create", "SALES", "--mirror", "OTHER")
	mustNode(t, D, "db", "create", "SALES", "--mirror", "OTHER")
	mustNode(t, E, "kv", "set", "^S(1)", "sold", "--db", "SALES")
	c.WaitFor(t, "SALES reaches D", 30*time.Second, func() (bool, error) {
		r := D.CLI(t, "kv", "get", "^S(1)", "--db", "SALES")
		return r.Stdout == "sold\n", fmt.Errorf("%q %q", r.Stdout, r.Stderr)
	})

	// Pause dejournaling of one database on the DR async: journal transfer goes on, the database stays behind.
	mustNode(t, C, "mirror", "pause", "MIR", "--db", "app")
	writeN(t, A, "P", 50)
	c.WaitFor(t, "APP on C shows Dejournaling Stopped", 30*time.Second, func() (bool, error) {
		s, err := dbStatusOn(C)
		return s == mirror.DBStopped, fmt.Errorf("status %q (%v)", s, err)
	})
	waitTransfer(t, c, "A", "C", mirror.CaughtUp)
	if hc, _ := hashOf(C); hc.Nodes >= 50 {
		t.Fatalf("paused database applied %d nodes", hc.Nodes)
	}
	mustNode(t, C, "db", "catchup", "APP")

	// A dismounted copy shows so; mounted again it needs a catch-up, which brings it level.
	mustNode(t, B, "db", "dismount", "APP")
	c.WaitFor(t, "APP on B shows Database Dismounted", 30*time.Second, func() (bool, error) {
		s, err := dbStatusOn(B)
		return s == mirror.DBDismounted, fmt.Errorf("status %q (%v)", s, err)
	})
	writeN(t, A, "M", 30)
	mustNode(t, B, "db", "mount", "APP")
	if s, _ := dbStatusOn(B); s != mirror.DBNeedsCatchup {
		t.Fatalf("APP on B after mount: %q, want %q", s, mirror.DBNeedsCatchup)
	}
	mustNode(t, B, "db", "catchup", "APP")

	// Stop mirroring on the reporting async; it stays stopped across a restart, then starts again.
	mustNode(t, D, "mirror", "stop", "MIR")
	D.Terminate()
	D.Restart()
	c.WaitFor(t, "D shows Stopped", 30*time.Second, func() (bool, error) {
		st, err := monitor(A)
		return row(st, "D").Status == mirror.StatusStopped, fmt.Errorf("D is %+v (%v)", row(st, "D"), err)
	})
	writeN(t, A, "Q", 20)
	mustNode(t, D, "mirror", "start", "MIR")
	waitConverged(t, c, A, B, C, D)

	// Promote the DR async to failover member: it becomes the backup and the old backup a DR async.
	mustNode(t, C, "mirror", "promote", "MIR")
	waitTransfer(t, c, "A", "C", mirror.TransferActive)
	st, _ := monitor(A)
	if row(st, "B").Type != mirror.DR.Label() || row(st, "C").Type != mirror.Failover.Label() {
		t.Fatalf("after promote: B is %s, C is %s", row(st, "B").Type, row(st, "C").Type)
	}
	mustNode(t, A, "mirror", "failover", "MIR")
	waitTransfer(t, c, "C", "A", mirror.TransferActive)
	// Demote the backup (A) to DR: the primary C then has no backup to wait for.
	mustNode(t, A, "mirror", "demote", "MIR")
	c.WaitFor(t, "A is a DR async", 30*time.Second, func() (bool, error) {
		st, err := monitor(C)
		return row(st, "A").Type == mirror.DR.Label() && row(st, "A").JournalTransfer == mirror.CaughtUp, fmt.Errorf("A is %+v (%v)", row(st, "A"), err)
	})
	if r := C.CLI(t, "mirror", "failover", "MIR"); r.ExitCode != 1 || !strings.Contains(r.Stderr, "Active backup") {
		t.Fatalf("failover without a backup: exit %d %q", r.ExitCode, r.Stderr)
	}

	// Removing the database from the mirror on the primary makes the other copies Obsolete.
	mustNode(t, C, "db", "remove", "APP")
	c.WaitFor(t, "APP is Obsolete on B", 30*time.Second, func() (bool, error) {
		s, err := dbStatusOn(B)
		return s == mirror.DBObsolete, fmt.Errorf("status %q (%v)", s, err)
	})
	mustNode(t, C, "kv", "set", "^Local", "mine", "--db", "APP")

	// A member leaves: its copy becomes a local, writable database. Then the whole mirror is removed from the primary.
	mustNode(t, D, "mirror", "remove-member", "MIR")
	mustNode(t, D, "kv", "set", "^Local", "mine", "--db", "APP")
	mustNode(t, C, "mirror", "remove", "MIR")
	for _, n := range []*testcluster.Node{A, B} {
		var sts []mirror.Status
		n.AdminGet(t, "/api/v1/mirror/local", &sts)
		if len(sts) != 0 {
			t.Errorf("%s still in a mirror after remove: %+v", n.Name, sts)
		}
		mustNode(t, n, "kv", "set", "^Local", "mine", "--db", "APP")
	}
}

// TestPurgeHoldback checks that the primary keeps the mirror journal a disconnected async still needs, and stops holding it
// once the async has been gone longer than the mirror's async holdback.
func TestPurgeHoldback(t *testing.T) {
	c := testcluster.New(t)
	args := []string{"--segment-size", "1048576", "--keep-segments", "1", "--max-age", "1ms", "--purge-interval", "100ms"}
	for _, n := range []string{"A", "C", "E"} {
		c.Add(n, args...)
	}
	defer dumpLogs(t, c)
	// The holdback must outlast the writes below even on a loaded machine.
	newMirror(t, c, []member{{"A", ""}, {"C", "dr"}, {"E", "dr"}}, "--async-holdback", "15s")
	A, C, E := c.Node("A"), c.Node("C"), c.Node("E")
	waitTransfer(t, c, "A", "C", mirror.CaughtUp)
	C.Kill()
	E.Kill()
	big := strings.Repeat("x", 64<<10)
	cl := A.Client(t, 2)
	// segments returns the number of the oldest mirror journal segment the primary still has.
	segments := func() int {
		var sts []mirror.Status
		A.AdminGet(t, "/api/v1/mirror/local", &sts)
		first, err := journal.ParsePosition(sts[0].JournalFirst)
		if err != nil {
			t.Fatal(err)
		}
		return int(first.Segment)
	}
	for i := 0; i < 60; i++ { // about 4 MiB: several segments
		if err := cl.Set(context.Background(), "APP", fmt.Sprintf(`^Big(%d)`, i), []byte(big)); err != nil {
			t.Fatal(err)
		}
	}
	// Within the holdback, the primary still starts at segment 1 however often it purges.
	for i := 0; i < 5; i++ {
		if first := segments(); first != 1 {
			t.Fatalf("primary purged up to segment %d while asyncs that need segment 1 are disconnected for less than the holdback", first)
		}
		time.Sleep(100 * time.Millisecond)
	}
	C.Restart()
	waitTransfer(t, c, "A", "C", mirror.CaughtUp)
	// E stays away past the holdback: the primary purges what only E needed, and E is told to rebuild.
	c.WaitFor(t, "the primary purges past E's position", 60*time.Second, func() (bool, error) {
		first := segments()
		return first > 1, fmt.Errorf("first segment %d", first)
	})
	E.Restart()
	c.WaitFor(t, "E reports the purged journal", 30*time.Second, func() (bool, error) {
		var sts []mirror.Status
		if _, err := E.TryAdminGet("/api/v1/mirror/local", &sts); err != nil {
			return false, err
		}
		msg := row(sts[0], "E").Error
		return strings.Contains(msg, "purged") && strings.Contains(msg, "newer backup"), fmt.Errorf("E's stream error: %q", msg)
	})
	if !strings.Contains(E.LogTail(50), "refused the journal stream") {
		t.Fatalf("E does not log the refusal:\n%s", E.LogTail(20))
	}
}

// TestReadWriteReportingAsyncWritesLocally writes to a mirrored database on a read-write reporting async: the write stays
// local (the primary never sees it), survives a SIGKILL, and dejournaling from the primary goes on around it.
func TestReadWriteReportingAsyncWritesLocally(t *testing.T) {
	c := testcluster.New(t)
	for _, n := range []string{"A", "B", "R"} {
		c.Add(n)
	}
	defer dumpLogs(t, c)
	newMirror(t, c, []member{{"A", ""}, {"B", "failover"}, {"R", "reporting-rw"}})
	A, R := c.Node("A"), c.Node("R")
	writeN(t, A, "P", 20)
	mustNode(t, R, "kv", "set", "^Local(1)", "report", "--db", "APP")
	if r := A.CLI(t, "kv", "get", "^Local(1)", "--db", "APP"); r.ExitCode != 1 {
		t.Fatalf("a local write on the reporting async reached the primary: %q", r.Stdout)
	}
	R.Kill()
	R.Restart()
	if got := mustNode(t, R, "kv", "get", "^Local(1)", "--db", "APP"); got != "report\n" {
		t.Fatalf("local write after SIGKILL: %q", got)
	}
	writeN(t, A, "Q", 20)
	c.WaitFor(t, "R dejournals the primary's writes", 30*time.Second, func() (bool, error) {
		r := R.CLI(t, "kv", "get", "^Q(19)", "--db", "APP")
		return r.ExitCode == 0, fmt.Errorf("%s", r.Stderr)
	})
}

// TestActivateCopiedDatabase gives a DR async its copy of a mirrored database by copying the files of the backup's copy
// (taken while dismounted there) and activating it: it catches up from the position the copy had.
func TestActivateCopiedDatabase(t *testing.T) {
	c := testcluster.New(t)
	for _, n := range []string{"A", "B", "C"} {
		c.Add(n)
	}
	defer dumpLogs(t, c)
	c.Start()
	A, B, C := c.Node("A"), c.Node("B"), c.Node("C")
	mustNode(t, A, "mirror", "create", "MIR", "--qos", "2s")
	mustNode(t, B, "mirror", "join", "MIR", "--primary", A.Addr, "--as", "failover")
	mustNode(t, C, "mirror", "join", "MIR", "--primary", A.Addr, "--as", "dr")
	mustNode(t, A, "db", "create", "APP", "--mirror", "MIR")
	mustNode(t, B, "db", "create", "APP", "--mirror", "MIR")
	writeN(t, A, "Before", 200)

	if r := C.CLI(t, "db", "activate", "APP", "--mirror", "MIR"); r.ExitCode != 1 || !strings.Contains(r.Stderr, "no database copy") {
		t.Fatalf("activate without files: exit %d %q", r.ExitCode, r.Stderr)
	}
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	mustNode(t, B, "db", "dismount", "APP")
	if err := os.CopyFS(filepath.Join(C.DataDir, "db", "APP"), os.DirFS(filepath.Join(B.DataDir, "db", "APP"))); err != nil {
		t.Fatal(err)
	}
	mustNode(t, B, "db", "mount", "APP")
	mustNode(t, B, "db", "catchup", "APP")
	writeN(t, A, "After", 200) // the copy is behind these: it catches up from its own position

	if s, err := dbStatusOn(C); err != nil || s != mirror.DBNeedsActivation {
		t.Fatalf("APP copied onto C before activation: %q %v", s, err)
	}
	mustNode(t, C, "db", "activate", "APP", "--mirror", "MIR")
	waitConverged(t, c)
	if s, err := dbStatusOn(C); err != nil || s != mirror.DBDejournaling {
		t.Fatalf("APP on C after activation: %q %v", s, err)
	}
	if r := C.CLI(t, "db", "activate", "APP", "--mirror", "MIR"); r.ExitCode != 1 || !strings.Contains(r.Stderr, "already exists") {
		t.Fatalf("second activation: exit %d %q", r.ExitCode, r.Stderr)
	}
}
