package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/internal/memberproc"
)

// waitServing waits until the member's data port answers a handshake.
func waitServing(tb testing.TB, addr string) {
	tb.Helper()
	waitFor(tb, "member serving on "+addr, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := client.Dial(ctx, addr, client.Options{Conns: 1, Name: "agent-test"})
		if err != nil {
			return false, err
		}
		return true, c.Close()
	})
}

func mustCLI(tb testing.TB, args ...string) {
	tb.Helper()
	if r := memberproc.CLI(tb, args...); r.ExitCode != 0 {
		tb.Fatalf("member %s: exit %d\n%s%s", strings.Join(args, " "), r.ExitCode, r.Stdout, r.Stderr)
	}
}

// TestMemberAgentCommand runs the real binaries: `member agent` supervising a real member, through which the member is
// killed, its mirror journal read while it is down, and started again.
func TestMemberAgentCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the member binary")
	}
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "A")
	memberAddr, adminAddr := memberproc.FreeAddr(t, "127.0.0.1"), memberproc.FreeAddr(t, "127.0.0.1")
	agentAddr := memberproc.FreeAddr(t, "127.0.0.1")
	memberLog := filepath.Join(dir, "A.log")
	config := filepath.Join(dir, "agent.toml")
	writeFile(t, dir, "agent.toml", fmt.Appendf(nil, `listen = %q
token = %q

[[member]]
name = "A"
binary = %q
args = ["run", "--name", "A", "--data-dir", %q, "--listen", %q, "--admin-listen", %q, "--log-format", "json"]
data_dir = %q
log = %q
autostart = true
`, agentAddr, testToken, memberproc.Build(t, "member"), dataDir, memberAddr, adminAddr, dataDir, memberLog))

	p := memberproc.StartProcess(t, "agent serving", "agent", "--config", config, "--log-format", "json")
	c := NewClient(agentAddr, nil, testToken)
	ctx := testContext(t)
	status := func(t *testing.T) MemberStatus {
		t.Helper()
		st, err := c.Member(ctx, "A")
		if err != nil {
			t.Fatalf("status through the agent: %v\n%s", err, p.Log())
		}
		return st
	}
	// The member outlives the agent by design; the test ends it through handles on its processes (pidfds), taken while
	// the agent still held them, never by pid: the first run is long gone by then and its pid may belong to another test.
	var pids []int
	var procs []*os.Process
	track := func(pid int) {
		pids = append(pids, pid)
		p, _ := os.FindProcess(pid)
		procs = append(procs, p)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.Kill()
		}
	})

	st := status(t)
	if !st.Running || st.PID == 0 {
		t.Fatalf("autostarted member: %+v", st)
	}
	track(st.PID)
	waitServing(t, memberAddr)

	mustCLI(t, "mirror", "create", "MIR", "--member", memberAddr)
	mustCLI(t, "db", "create", "APP", "--mirror", "MIR", "--member", memberAddr)
	written := map[string]string{`^A(1)`: "one", `^A(2)`: "two", `^B("x")`: "three"}
	for ref, value := range written {
		mustCLI(t, "kv", "set", ref, value, "--db", "APP", "--member", memberAddr)
	}
	st = status(t)
	if len(st.Mirrors) != 1 || st.Mirrors[0] != (MirrorRole{Mirror: "MIR", Epoch: 1, Primary: "A", Role: "primary"}) {
		t.Fatalf("mirrors of the member: %+v", st.Mirrors)
	}

	if err := c.Kill(ctx, "A"); err != nil {
		t.Fatalf("kill through the agent: %v", err)
	}
	if st := status(t); st.Running || !st.StoppedByAgent || st.ExitStatus != "signal: killed" || alive(pids[0]) {
		t.Fatalf("after kill: %+v (pid %d alive: %v)", st, pids[0], alive(pids[0]))
	}

	// The member is down: its journal comes from the files.
	frames, end, err := c.Journal(ctx, "A", "MIR", journal.Position{})
	if err != nil {
		t.Fatalf("journal through the agent: %v", err)
	}
	recs := decodeFrames(t, frames)
	if len(recs) == 0 || endOf(recs[len(recs)-1]) != end {
		t.Fatalf("journal: %d records, end %s", len(recs), end)
	}
	for ref, value := range written {
		key, err := globals.Encode(globals.MustParse(ref))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range recs {
			found = found || (r.Type == journal.RecordSet && r.DB == "APP" && bytes.Equal(r.Key, key) && bytes.Equal(r.Value, []byte(value)))
		}
		if !found {
			t.Fatalf("journal has no set of %s to %q in APP: %+v", ref, value, recs)
		}
	}

	if err := c.Start(ctx, "A"); err != nil {
		t.Fatalf("start through the agent: %v", err)
	}
	st = status(t)
	if !st.Running || st.StoppedByAgent || st.PID == 0 || st.PID == pids[0] {
		t.Fatalf("after start: %+v", st)
	}
	track(st.PID)
	waitServing(t, memberAddr)
	if r := memberproc.CLI(t, "kv", "get", `^A(1)`, "--db", "APP", "--member", memberAddr); r.ExitCode != 0 || !strings.Contains(r.Stdout, "one") {
		t.Fatalf("kv get after restart: exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
	}

	// Stopping the agent leaves the member running.
	if err := p.Terminate(t); err != nil {
		t.Fatalf("member agent after SIGTERM: %v, want exit 0\n%s", err, p.Log())
	}
	if !alive(st.PID) {
		logData, _ := os.ReadFile(memberLog)
		t.Fatalf("member pid %d gone with the agent\n%s", st.PID, logData)
	}
	waitServing(t, memberAddr)
}

func TestMemberAgentUsage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the member binary")
	}
	dir := t.TempDir()
	member := "[[member]]\nname = \"A\"\nbinary = \"/bin/true\"\ndata_dir = \"/tmp\"\n"
	writeFile(t, dir, "noauth.toml", []byte(member))
	writeFile(t, dir, "typo.toml", []byte("tokn = \"x\"\n"+member))
	tests := []struct {
		name    string
		args    []string
		message string
	}{
		{"no config", []string{"agent"}, "--config"},
		{"missing config", []string{"agent", "--config", filepath.Join(dir, "none.toml")}, "none.toml"},
		{"no authentication", []string{"agent", "--config", filepath.Join(dir, "noauth.toml")}, "token"},
		{"unknown key", []string{"agent", "--config", filepath.Join(dir, "typo.toml")}, "tokn"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := memberproc.CLI(t, tc.args...)
			if r.ExitCode != 2 || !strings.Contains(r.Stderr, tc.message) {
				t.Fatalf("member %s: exit %d, stderr %q; want exit 2 mentioning %q", strings.Join(tc.args, " "), r.ExitCode, r.Stderr, tc.message)
			}
		})
	}
}
