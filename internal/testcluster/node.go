package testcluster

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/faultproxy"
	"github.com/mirrorkit/mirrorkit/internal/memberproc"
)

// adminTimeout bounds one admin request, so that polling a paused member fails instead of hanging.
const adminTimeout = 5 * time.Second

var adminClient = &http.Client{Timeout: adminTimeout}

// Node is one member of a cluster. Its addresses are fixed when it is declared and kept across restarts. A member given
// an agent (Cluster.AddAgent) runs as that agent's child; its methods then act on the process the agent runs.
type Node struct {
	Name      string
	Addr      string // data address host:port
	AdminAddr string // admin HTTP address host:port
	IP        string // the member's own loopback IP
	DataDir   string
	TLS       wire.TLSFiles // certificate files when the member speaks TLS

	cluster    *Cluster
	host       int // last byte of IP
	args       []string
	configFile string

	mu          sync.Mutex
	links       map[string]*faultproxy.Proxy // by the name of the member they lead to
	arbiterLink *faultproxy.Proxy
	agentLinks  map[string]*faultproxy.Proxy // to other members' agents, by member name
	peers       []string                     // --peer flags for links
	member      *memberproc.Member
	agent       *Agent // the agent supervising the member, if any
	paused      bool
}

func (n *Node) start(tb testing.TB) {
	tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.startedLocked() {
		tb.Fatalf("testcluster: member %s already started; use Restart", n.Name)
	}
	var clientTLS *tls.Config
	if n.TLS.Enabled() {
		var err error
		if clientTLS, err = n.TLS.ClientConfig(); err != nil {
			tb.Fatalf("testcluster: member %s TLS: %v", n.Name, err)
		}
	}
	args := append(append([]string(nil), n.args...), n.peers...)
	if n.agent != nil {
		n.agent.startMember(tb, args, clientTLS)
		return
	}
	n.member = memberproc.Start(tb, memberproc.Config{
		ClientTLS:  clientTLS,
		Name:       n.Name,
		DataDir:    n.DataDir,
		Host:       n.IP,
		Args:       args,
		ConfigFile: n.configFile,
		Addr:       n.Addr,
		AdminAddr:  n.AdminAddr,
	})
}

// Member is the member's process, or nil before it is started. It is always nil for a member supervised by an agent,
// whose process is the agent's child (see Agent).
func (n *Node) Member() *memberproc.Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.member
}

// isStarted reports whether the member has been started, by the cluster or by its agent.
func (n *Node) isStarted() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.startedLocked()
}

// startedLocked is isStarted with n.mu held.
func (n *Node) startedLocked() bool {
	return n.member != nil || (n.agent != nil && n.agent.process() != nil)
}

// started returns the member's process, failing the test if it was never started.
func (n *Node) started() *memberproc.Member {
	m := n.Member()
	if m == nil {
		n.cluster.tb.Fatalf("testcluster: member %s has not been started", n.Name)
	}
	return m
}

// Link returns the proxy on the way from this member to the member called to, or nil if there is none.
func (n *Node) Link(to string) *faultproxy.Proxy {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.links[to]
}

// Running reports whether the member's process is alive (false before it is started). For a member supervised by an
// agent, the agent says so, and a member process that outlived its killed agent counts too.
func (n *Node) Running() bool {
	if a := n.Agent(); a != nil {
		return a.memberRunning()
	}
	m := n.Member()
	return m != nil && m.Running()
}

// Kill sends SIGKILL and waits for the process to be gone. A member supervised by an agent is killed directly, not
// through the agent, as a crash would: the agent starts it again after its restart delay (KillHost or StopByAgent keep it
// down).
func (n *Node) Kill() {
	if a := n.startedAgent(); a != nil {
		a.killMember()
	} else {
		n.started().Kill()
	}
	n.setPaused(false)
}

// Terminate sends SIGTERM and returns the exit status. A paused member is resumed so that it can shut down. A member
// supervised by an agent gets the signal directly, not through the agent, which starts it again after its restart delay;
// its exit status is then the one the agent reports (unknown, so nil, for a member whose agent is down).
func (n *Node) Terminate() error {
	if a := n.startedAgent(); a != nil {
		return a.terminateMember(n.setPaused(false))
	}
	m := n.started()
	m.Signal(syscall.SIGTERM)
	if n.setPaused(false) {
		m.Signal(syscall.SIGCONT)
	}
	return m.Wait(time.Minute)
}

// Restart starts the stopped member again with the same addresses, data directory and arguments, and waits until it serves.
// A member supervised by an agent is started through the agent (nothing if the agent runs it already).
func (n *Node) Restart() {
	n.cluster.tb.Helper()
	if a := n.startedAgent(); a != nil {
		a.restartMember()
		return
	}
	n.started().Restart()
}

// Signal sends sig to the member's process.
func (n *Node) Signal(sig syscall.Signal) {
	if a := n.startedAgent(); a != nil {
		a.signalMember(sig)
		return
	}
	n.started().Signal(sig)
}

// Pause stops the process with SIGSTOP: its sockets stay open but it answers nothing, as a hung host would.
func (n *Node) Pause() {
	if a := n.startedAgent(); a != nil {
		n.setPaused(true)
		waitStopped(n.cluster.tb, n.Name, a.signalMember(syscall.SIGSTOP))
		return
	}
	m := n.started()
	n.setPaused(true)
	m.Signal(syscall.SIGSTOP)
	waitStopped(n.cluster.tb, n.Name, m.Pid())
}

// waitStopped returns once every thread of process pid is stopped: kill(2) only queues SIGSTOP, and a thread running on
// another core goes on until it next enters the kernel, so a paused member could still answer a request just sent.
func waitStopped(tb testing.TB, name string, pid int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		if err != nil {
			return // not Linux, or the process is gone: nothing to wait for
		}
		stopped := true
		for _, task := range tasks {
			tid, _ := strconv.Atoi(task.Name())
			if state, _, ok := procStat(tid); ok && state != 'T' && state != 't' {
				stopped = false
				break
			}
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testcluster: member %s (pid %d) is not stopped 10s after SIGSTOP", name, pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume() {
	if a := n.startedAgent(); a != nil {
		n.setPaused(false)
		a.signalMember(syscall.SIGCONT)
		return
	}
	m := n.started()
	n.setPaused(false)
	m.Signal(syscall.SIGCONT)
}

// setPaused records whether the process is stopped and returns what it was.
func (n *Node) setPaused(paused bool) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	was := n.paused
	n.paused = paused
	return was
}

// LogTail returns the last lines of the member's log (empty before it is started).
func (n *Node) LogTail(lines int) string {
	if a := n.Agent(); a != nil {
		return memberproc.TailFile(a.memberLog, lines)
	}
	m := n.Member()
	if m == nil {
		return ""
	}
	return m.LogTail(lines)
}

// Client dials the member's data port directly (not through any proxy); the client is closed at cleanup.
func (n *Node) Client(tb testing.TB, conns int) *client.Client {
	tb.Helper()
	if a := n.startedAgent(); a != nil {
		return memberproc.Dial(tb, n.Name, n.Addr, a.clientTLS(), conns)
	}
	return n.started().Client(tb, conns)
}

// CLI runs `member ARGS... --member n.Addr`.
func (n *Node) CLI(tb testing.TB, args ...string) memberproc.Result {
	tb.Helper()
	args = append(append([]string(nil), args...), "--member", n.Addr)
	if n.TLS.Enabled() {
		args = append(args, "--tls-cert", n.TLS.Cert, "--tls-key", n.TLS.Key, "--tls-ca", n.TLS.CA)
	}
	return memberproc.CLI(tb, args...)
}

// AdminGet GETs http://AdminAddr+path, decodes the JSON body into out (if out is not nil) and returns the HTTP status.
// It fails tb if the member cannot be reached or the body is not JSON.
func (n *Node) AdminGet(tb testing.TB, path string, out any) int {
	tb.Helper()
	status, err := n.TryAdminGet(path, out)
	if err != nil {
		tb.Fatal(err)
	}
	return status
}

// TryAdminGet is AdminGet returning its error instead of failing the test, for use inside WaitFor conditions.
func (n *Node) TryAdminGet(path string, out any) (int, error) {
	hc, scheme := adminClient, "http://"
	if n.TLS.Enabled() {
		cfg, err := n.TLS.ClientConfig()
		if err != nil {
			return 0, err
		}
		hc = &http.Client{Timeout: adminTimeout, Transport: &http.Transport{TLSClientConfig: cfg}}
		scheme = "https://"
	}
	resp, err := hc.Get(scheme + n.AdminAddr + path)
	if err != nil {
		return 0, fmt.Errorf("member %s admin GET %s: %w", n.Name, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("member %s admin GET %s: read body: %w", n.Name, path, err)
	}
	if out != nil && len(body) > 0 {
		if err := json.Unmarshal(body, out); err != nil {
			return resp.StatusCode, fmt.Errorf("member %s admin GET %s: status %d, body %q: %w", n.Name, path, resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode, nil
}
