package testcluster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/server"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/memberproc"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
)

func TestMain(m *testing.M) {
	code := m.Run()
	memberproc.RemoveBuilds()
	os.Exit(code)
}

// mustCLI runs a member command and fails the test unless it exits 0.
func mustCLI(tb testing.TB, n *testcluster.Node, args ...string) string {
	tb.Helper()
	r := n.CLI(tb, args...)
	if r.ExitCode != 0 {
		tb.Fatalf("member %v on %s: exit %d: %s", args, n.Name, r.ExitCode, r.Stderr)
	}
	return r.Stdout
}

func TestMembersServeOnTheirOwnIPs(t *testing.T) {
	c := testcluster.New(t)
	c.Add("alpha")
	c.Add("beta", "--log-level", "debug")
	c.Start()
	for i, n := range c.Nodes() {
		wantIP := fmt.Sprintf("127.0.0.%d", 11+i)
		for _, addr := range []string{n.Addr, n.AdminAddr} {
			if host, _, _ := net.SplitHostPort(addr); n.IP != wantIP || host != wantIP {
				t.Errorf("member %s: IP %s, address %s; want both on %s", n.Name, n.IP, addr, wantIP)
			}
		}
		var st server.Status
		if code := n.AdminGet(t, "/api/v1/status", &st); code != http.StatusOK {
			t.Fatalf("member %s status: HTTP %d", n.Name, code)
		}
		if st.Member != n.Name || st.DataAddr != n.Addr || st.AdminAddr != n.AdminAddr {
			t.Errorf("member %s status = %+v; want name %s, data %s, admin %s", n.Name, st, n.Name, n.Addr, n.AdminAddr)
		}
	}

	alpha, beta := c.Node("alpha"), c.Node("beta")
	mustCLI(t, alpha, "db", "create", "APP")
	mustCLI(t, alpha, "kv", "set", "--db", "APP", "^K(1)", "one")
	if got := mustCLI(t, alpha, "kv", "get", "--db", "APP", "^K(1)"); strings.TrimSpace(got) != "one" {
		t.Errorf("kv get on alpha = %q; want one", got)
	}
	var dbs []store.Info
	if code := beta.AdminGet(t, "/api/v1/databases", &dbs); code != http.StatusOK || len(dbs) != 0 {
		t.Errorf("beta databases: HTTP %d, %+v; want none", code, dbs)
	}
}

func TestKillAndRestartKeepData(t *testing.T) {
	c := testcluster.New(t)
	n := c.Add("crashy")
	c.Start("crashy")
	mustCLI(t, n, "db", "create", "APP")
	mustCLI(t, n, "kv", "set", "--db", "APP", "^K", "kept")

	n.Kill()
	if n.Running() {
		t.Fatal("member still running after Kill")
	}
	n.Restart()
	if got := mustCLI(t, n, "kv", "get", "--db", "APP", "^K"); strings.TrimSpace(got) != "kept" {
		t.Errorf("after kill and restart, kv get = %q; want kept", got)
	}

	if err := n.Terminate(); err != nil {
		t.Fatalf("terminate: %v\n%s", err, n.LogTail(20))
	}
	n.Restart()
	var st server.Status
	c.WaitFor(t, "status after restart", 30*time.Second, func() (bool, error) {
		code, err := n.TryAdminGet("/api/v1/status", &st)
		return code == http.StatusOK, err
	})
}

func TestPauseAndResume(t *testing.T) {
	c := testcluster.New(t)
	n := c.Add("sleepy")
	c.Start()
	mustCLI(t, n, "db", "create", "APP")
	pauseAndResume(t, c, n)
}

// pauseAndResume checks that a paused member stops answering but still runs, and answers again once resumed.
func pauseAndResume(t *testing.T, c *testcluster.Cluster, n *testcluster.Node) {
	t.Helper()
	cl := n.Client(t, 1)
	get := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, _, err := cl.Get(ctx, "APP", "^K")
		return err
	}
	if err := get(10 * time.Second); err != nil {
		t.Fatalf("get before pause: %v", err)
	}
	n.Pause()
	c.WaitFor(t, "paused member to stop answering", 10*time.Second, func() (bool, error) {
		err := get(100 * time.Millisecond)
		return errors.Is(err, context.DeadlineExceeded), err
	})
	if !n.Running() {
		t.Fatal("paused member is not running")
	}
	n.Resume()
	c.WaitFor(t, "resumed member to answer", 30*time.Second, func() (bool, error) {
		err := get(time.Second)
		return err == nil, err
	})
}

func TestPausedMemberTerminates(t *testing.T) {
	c := testcluster.New(t)
	n := c.Add("stopped")
	c.Start()
	n.Pause()
	if err := n.Terminate(); err != nil {
		t.Fatalf("terminate a paused member: %v\n%s", err, n.LogTail(20))
	}
}

// fatalRecorder stands in for a test so that a failing WaitFor can be inspected.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestWaitFor(t *testing.T) {
	c := testcluster.New(t)
	n := c.Add("waiter")
	c.Start()

	calls := 0
	c.WaitFor(t, "third call", 10*time.Second, func() (bool, error) {
		calls++
		return calls == 3, nil
	})

	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.WaitFor(rec, "the impossible", 100*time.Millisecond, func() (bool, error) {
			return false, errors.New("still impossible")
		})
	}()
	<-done
	tail := n.LogTail(1)
	if tail == "" {
		t.Fatal("member waiter has an empty log")
	}
	for _, want := range []string{"the impossible", "still impossible", "member waiter", tail} {
		if !strings.Contains(rec.msg, want) {
			t.Errorf("WaitFor failure message lacks %q:\n%s", want, rec.msg)
		}
	}
}

// supportsPeer reports whether `member run` accepts --peer, which Link relies on.
func supportsPeer(tb testing.TB) bool {
	tb.Helper()
	r := memberproc.CLI(tb, "run", "--help")
	return strings.Contains(r.Stdout+r.Stderr, "--peer")
}

func TestLinkRoutesThroughProxy(t *testing.T) {
	if !supportsPeer(t) {
		t.Skip("member run --help does not list --peer, which Link needs")
	}
	c := testcluster.New(t)
	c.Add("from")
	c.Add("to")
	p := c.Link("from", "to")
	if again := c.Link("from", "to"); again != p {
		t.Error("linking the same pair twice made a second proxy")
	}
	if c.Node("from").Link("to") != p {
		t.Error("Node.Link does not return the cluster's proxy")
	}
	c.Start()

	dial := func() (*client.Client, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return client.Dial(ctx, p.Addr(), client.Options{Conns: 1, Name: t.Name()})
	}
	cl, err := dial()
	if err != nil {
		t.Fatalf("dial to through the proxy: %v", err)
	}
	if got := cl.Welcome().Member; got != "to" {
		t.Errorf("proxy from->to reaches member %q", got)
	}
	cl.Close()

	p.Cut()
	if cl, err := dial(); err == nil {
		cl.Close()
		t.Fatal("dial through a cut proxy succeeded")
	}
	p.Heal()
	cl, err = dial()
	if err != nil {
		t.Fatalf("dial after heal: %v", err)
	}
	cl.Close()
}
