package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/memberproc"
	"github.com/mirrorkit/mirrorkit/internal/miniotest"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
)

// result is one run of the migrate binary.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// migrate runs the migrate binary with args and env (KEY=VALUE) added to the environment.
func migrate(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := memberproc.Run(t, "migrate", env, args...)
	return result{stdout: r.Stdout, stderr: r.Stderr, code: r.ExitCode}
}

func mustMigrate(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := migrate(t, env, args...)
	if r.code != 0 {
		t.Fatalf("migrate %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// failMigrate runs migrate expecting a failure whose message contains want.
func failMigrate(t *testing.T, env []string, want string, args ...string) result {
	t.Helper()
	r := migrate(t, env, args...)
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("migrate %s: want a failure mentioning %q, got %s", strings.Join(args, " "), want, r)
	}
	return r
}

// startMigrate starts migrate with --json and returns once a progress event with bytes > 0 was printed; kill it with
// SIGKILL through the returned command.
func startMigrateUntilProgress(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(memberproc.Build(t, "migrate"), args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	progressed := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		var once sync.Once
		for sc.Scan() {
			var ev struct {
				Phase string `json:"phase"`
				Bytes int64  `json:"bytes"`
				Total int64  `json:"total"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Phase == "progress" && ev.Bytes > 0 && ev.Bytes < ev.Total {
				once.Do(func() { close(progressed) })
			}
		}
	}()
	select {
	case <-progressed:
	case <-time.After(2 * time.Minute):
		t.Fatalf("migrate %v: no progress: %s", args, errb.String())
	}
	return cmd
}

// newMirror starts members A (primary), B (failover) and C (DR async) in mirror MIR.
func newMirror(t *testing.T) (*testcluster.Cluster, *testcluster.Node, *testcluster.Node, *testcluster.Node) {
	t.Helper()
	c := testcluster.New(t)
	for _, n := range []string{"A", "B", "C"} {
		c.Add(n)
	}
	c.Start()
	A, B, C := c.Node("A"), c.Node("B"), c.Node("C")
	mustNode(t, A, "mirror", "create", "MIR", "--qos", "2s")
	mustNode(t, B, "mirror", "join", "MIR", "--primary", A.Addr, "--as", "failover")
	mustNode(t, C, "mirror", "join", "MIR", "--primary", A.Addr, "--as", "dr")
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes() {
				// How a member that died ended (a signal from outside leaves no trace in its log).
				t.Logf("log of %s (running: %v, exit: %v):\n%s", n.Name, n.Running(), n.Member().ExitErr(), n.LogTail(60))
			}
		}
	})
	return c, A, B, C
}

func mustNode(t *testing.T, n *testcluster.Node, args ...string) string {
	t.Helper()
	r := n.CLI(t, args...)
	if r.ExitCode != 0 {
		t.Fatalf("member %s on %s: exit %d: %s", strings.Join(args, " "), n.Name, r.ExitCode, r.Stderr)
	}
	return r.Stdout
}

// fill creates a local database db on n and writes count keys of size bytes each, in transactions of 50.
func fill(t *testing.T, n *testcluster.Node, db string, count, size int) {
	t.Helper()
	mustNode(t, n, "db", "create", db)
	c := n.Client(t, 2)
	val := bytes.Repeat([]byte("mirrorkit "), size/10+1)[:size]
	for i := 0; i < count; i += 50 {
		tx := c.Txn(db)
		for j := i; j < i+50 && j < count; j++ {
			tx.Set(fmt.Sprintf(`^Old(%d)`, j), append([]byte(fmt.Sprint(j)), val...))
		}
		if _, err := tx.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// startWriter keeps writing Sets to the databases through the mirror-aware client, one writer each.
func startWriter(t *testing.T, addrs []string, dbs ...string) *testcluster.Load {
	t.Helper()
	return testcluster.StartLoad(t, addrs, testcluster.LoadOptions{Client: client.Options{Conns: 2, RetryTimeout: 20 * time.Second},
		DBs: dbs, Writers: 1, SetsOnly: true, Prefix: "New"})
}

// checkCopies waits until every member's copy of db has the primary's logical hash and is Dejournaling (Normal on the
// primary), and checks that every acknowledged write is there.
func checkCopies(t *testing.T, c *testcluster.Cluster, db string, acked map[string]string) {
	t.Helper()
	nodes := c.Nodes()
	c.WaitFor(t, "copies of "+db+" converge", 90*time.Second, func() (bool, error) {
		var first store.LogicalHash
		for i, n := range nodes {
			var h store.LogicalHash
			if status, err := n.TryAdminGet("/api/v1/databases/"+db+"/hash", &h); err != nil || status != 200 {
				return false, fmt.Errorf("hash of %s on %s: %d %v", db, n.Name, status, err)
			}
			if i == 0 {
				first = h
			} else if h != first {
				return false, fmt.Errorf("%s on %s has %d nodes, on %s %d", db, nodes[0].Name, first.Nodes, n.Name, h.Nodes)
			}
		}
		return true, nil
	})
	for _, n := range nodes {
		want := mirror.DBDejournaling
		if n.Name == "A" {
			want = mirror.DBNormal
		}
		if got := dbStatus(t, n, db); got != want {
			t.Fatalf("%s on %s is %q, want %q", db, n.Name, got, want)
		}
	}
	cl := c.Node("B").Client(t, 1)
	for ref, val := range acked {
		v, ok, err := cl.Get(context.Background(), db, ref)
		if err != nil || !ok || string(v) != val {
			t.Fatalf("acknowledged %s %s=%s: got %q %v %v", db, ref, val, v, ok, err)
		}
	}
}

func dbStatus(t *testing.T, n *testcluster.Node, db string) string {
	t.Helper()
	var sts []mirror.Status
	if _, err := n.TryAdminGet("/api/v1/mirror/local", &sts); err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		for _, d := range st.Databases {
			if d.Name == db {
				return d.Status
			}
		}
	}
	return ""
}

// s3Env is the environment that points migrate at a MinIO server.
func s3Env(s *miniotest.Server) []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey, "AWS_ENDPOINT_URL=http://" + s.Endpoint, "AWS_REGION=us-east-1"}
}

// lastLine is the last line of a command's output: with --json, its result.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}
