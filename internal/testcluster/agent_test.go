package testcluster_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/agent"
	"github.com/mirrorkit/mirrorkit/engine/server"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
)

// startHosted starts one member supervised by its own agent.
func startHosted(t *testing.T, name string) (*testcluster.Cluster, *testcluster.Node, *testcluster.Agent) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts member and agent processes")
	}
	c := testcluster.New(t)
	n := c.Add(name)
	a := c.AddAgent(name)
	c.Start()
	return c, n, a
}

// agentStatus asks the node's agent for the member's status.
func agentStatus(tb testing.TB, n *testcluster.Node) (agent.MemberStatus, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return n.Agent().Client().Member(ctx, n.Name)
}

func mustAgentStatus(tb testing.TB, n *testcluster.Node) agent.MemberStatus {
	tb.Helper()
	st, err := agentStatus(tb, n)
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// waitRunsAgain waits until the agent runs the member in a process other than oldPID and the member serves.
func waitRunsAgain(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, oldPID int) agent.MemberStatus {
	t.Helper()
	var st agent.MemberStatus
	c.WaitFor(t, "the agent to run member "+n.Name+" again", time.Minute, func() (bool, error) {
		var err error
		st, err = agentStatus(t, n)
		if err != nil || !st.Running || st.PID == oldPID {
			return false, err
		}
		code, err := n.TryAdminGet("/api/v1/status", nil)
		return code == http.StatusOK, err
	})
	return st
}

func TestAgentSupervisesItsMember(t *testing.T) {
	c, n, a := startHosted(t, "hosted")
	if n.Agent() != a {
		t.Fatal("Node.Agent does not return the agent AddAgent made")
	}
	if n.Member() != nil {
		t.Error("a member supervised by an agent has a memberproc process of the cluster's")
	}
	if !n.Running() {
		t.Fatal("the agent-supervised member is not running after Start")
	}
	var st server.Status
	if code := n.AdminGet(t, "/api/v1/status", &st); code != http.StatusOK || st.Member != n.Name || st.DataAddr != n.Addr {
		t.Fatalf("member status: HTTP %d, %+v; want member %s on %s", code, st, n.Name, n.Addr)
	}
	mustCLI(t, n, "db", "create", "APP")

	ast := mustAgentStatus(t, n)
	if !ast.Running || ast.PID <= 0 {
		t.Fatalf("agent status = %+v; want the member running with its pid", ast)
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(ast.PID) + "/cmdline")
	if err != nil {
		t.Fatalf("command line of the pid the agent reports: %v", err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if got := strings.Join(args[1:], " "); !strings.HasPrefix(got, "run --config ") || !strings.HasSuffix(got, "--agent-addr "+a.Addr) {
		t.Errorf("pid %d the agent reports runs %q; want `member run --config … --agent-addr %s`", ast.PID, got, a.Addr)
	}
	if !strings.Contains(a.Log(), "agent serving") {
		t.Errorf("agent log lacks its start:\n%s", a.Log())
	}
	if n.LogTail(5) == "" {
		t.Error("the member's log, written by the agent, is empty")
	}
	if logs := c.Logs(5); !strings.Contains(logs, "agent of member hosted") {
		t.Errorf("cluster logs lack the agent's log:\n%s", logs)
	}

	bad := agent.NewClient(a.Addr, nil, "wrong-token")
	if _, err := bad.Members(context.Background()); !errors.Is(err, agent.ErrUnauthorized) {
		t.Errorf("agent call with a wrong token: %v; want ErrUnauthorized", err)
	}
}

func TestAgentRestartsKilledMember(t *testing.T) {
	c, n, _ := startHosted(t, "phoenix")
	mustCLI(t, n, "db", "create", "APP")
	mustCLI(t, n, "kv", "set", "--db", "APP", "^K", "kept")
	before := mustAgentStatus(t, n)

	n.Kill()
	after := waitRunsAgain(t, c, n, before.PID)
	if after.ExitStatus != "signal: killed" || after.StoppedByAgent {
		t.Errorf("agent status after the crash = %+v; want the last run killed by a signal, not stopped by the agent", after)
	}
	if got := mustCLI(t, n, "kv", "get", "--db", "APP", "^K"); strings.TrimSpace(got) != "kept" {
		t.Errorf("after a crash and the agent's restart, kv get = %q; want kept", got)
	}

	if err := n.Terminate(); err != nil {
		t.Fatalf("terminate: %v\n%s", err, n.LogTail(20))
	}
	n.Restart()
	if st := mustAgentStatus(t, n); !st.Running || st.PID == after.PID {
		t.Errorf("agent status after Terminate and Restart = %+v; want a new run", st)
	}
}

func TestKillHostAndRestartHost(t *testing.T) {
	_, n, a := startHosted(t, "lost")
	mustCLI(t, n, "db", "create", "APP")
	mustCLI(t, n, "kv", "set", "--db", "APP", "^K", "kept")
	before := mustAgentStatus(t, n)

	n.KillHost()
	if n.Running() {
		t.Fatal("member still running after KillHost")
	}
	if _, err := a.Client().Members(context.Background()); !errors.Is(err, agent.ErrUnavailable) {
		t.Fatalf("agent call after KillHost: %v; want ErrUnavailable", err)
	}
	if _, err := n.TryAdminGet("/api/v1/status", nil); err == nil {
		t.Fatal("member admin port answers after KillHost")
	}

	n.RestartHost()
	if st := mustAgentStatus(t, n); !st.Running || st.PID == before.PID {
		t.Errorf("agent status after RestartHost = %+v; want the member running in a new process", st)
	}
	if got := mustCLI(t, n, "kv", "get", "--db", "APP", "^K"); strings.TrimSpace(got) != "kept" {
		t.Errorf("after the host came back, kv get = %q; want kept", got)
	}
}

func TestStoppedByAgentStaysDownAcrossHostRestart(t *testing.T) {
	_, n, _ := startHosted(t, "fenced")
	n.StopByAgent()
	if st := mustAgentStatus(t, n); st.Running || !st.StoppedByAgent {
		t.Fatalf("agent status after StopByAgent = %+v; want stopped by the agent", st)
	}
	n.KillHost()
	n.RestartHost()
	if st := mustAgentStatus(t, n); st.Running {
		t.Fatalf("agent status after RestartHost = %+v; want the member left down", st)
	}
	n.Restart()
	if st := mustAgentStatus(t, n); !st.Running || st.StoppedByAgent {
		t.Errorf("agent status after Restart = %+v; want running", st)
	}
}

func TestAgentKilledAloneLeavesMemberRunning(t *testing.T) {
	c, n, a := startHosted(t, "orphan")
	before := mustAgentStatus(t, n)
	a.Kill()
	if !n.Running() {
		t.Fatal("member stopped running when its agent alone was killed")
	}
	if code, err := n.TryAdminGet("/api/v1/status", nil); code != http.StatusOK {
		t.Fatalf("member without its agent: HTTP %d, %v", code, err)
	}
	a.Restart()
	if st := mustAgentStatus(t, n); st.Running {
		t.Errorf("restarted agent status = %+v; want it not to run a second member", st)
	}
	n.Kill()
	n.Restart()
	waitRunsAgain(t, c, n, before.PID)
}

func TestAgentMemberPauseAndResume(t *testing.T) {
	c, n, _ := startHosted(t, "sleepy")
	mustCLI(t, n, "db", "create", "APP")
	before := mustAgentStatus(t, n)
	pauseAndResume(t, c, n)
	if st := mustAgentStatus(t, n); st.PID != before.PID {
		t.Errorf("member pid %d after pause and resume; want %d", st.PID, before.PID)
	}
}

func TestLinkAgentRoutesThroughProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts member and agent processes")
	}
	c := testcluster.New(t)
	c.Add("from")
	c.Add("to")
	a := c.AddAgent("to")
	p := c.LinkAgent("from", "to")
	if again := c.LinkAgent("from", "to"); again != p {
		t.Error("linking the same pair twice made a second proxy")
	}
	if c.Node("from").AgentLink("to") != p {
		t.Error("Node.AgentLink does not return the cluster's proxy")
	}
	if p.Target() != a.Addr {
		t.Errorf("proxy leads to %s; want the agent at %s", p.Target(), a.Addr)
	}
	c.Start()

	members := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := agent.NewClient(p.Addr(), nil, testcluster.AgentToken).Members(ctx)
		return err
	}
	if err := members(); err != nil {
		t.Fatalf("agent through the proxy: %v", err)
	}
	p.Cut()
	if err := members(); err == nil {
		t.Fatal("agent call through a cut proxy succeeded")
	}
	p.Heal()
	if err := members(); err != nil {
		t.Fatalf("agent through the healed proxy: %v", err)
	}
}
