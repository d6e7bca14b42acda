package testcluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/agent"
	"github.com/mirrorkit/mirrorkit/internal/faultproxy"
	"github.com/mirrorkit/mirrorkit/internal/memberproc"
)

// AgentToken is the token every agent of the cluster requires and every member presents to agents.
const AgentToken = "testcluster-agent-token"

// agentCallTimeout bounds one call to an agent's API.
const agentCallTimeout = 30 * time.Second

// Agent is the host agent of one member: the member runs as the agent's child, one agent per member, as on a host of
// its own. The agent autostarts the member and starts it again when it exits by itself.
type Agent struct {
	// Addr is the agent's API address, on its member's IP.
	Addr string

	node      *Node
	client    *agent.Client
	memberLog string // the file the agent appends the member's output to

	mu         sync.Mutex
	configFile string   // the agent's configuration, written at each start of the agent
	binary     string   // the member binary the agent is configured with ("": this module's member)
	args       []string // the member's `member run` arguments, fixed when the member first starts
	tlsConf    *tls.Config
	proc       *memberproc.Process // the current (or last) agent process; nil before the member starts
	pastLogs   []string            // logs of the earlier agent processes
	// stoppedByAgent is what the agent last reported: the member was stopped or killed through it. A restarted agent
	// then does not autostart it.
	stoppedByAgent bool
	// orphans are member processes that outlived their killed agent, held by handles (pidfds) taken while the agent was
	// stopped, so that no signal meant for them can reach a later process that reuses a pid.
	orphans []*os.Process
}

// AddAgent gives the member called node, which must not have started, a host agent of its own that will supervise it.
// The agent listens on a free port of the member's IP and requires AgentToken; the member is run by the agent with
// `--agent-addr` set to the agent's address, so that its mirrors record it. Starting the member (Cluster.Start) starts its
// agent, which autostarts it.
func (c *Cluster) AddAgent(node string) *Agent {
	c.tb.Helper()
	n := c.Node(node)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.agent != nil {
		c.tb.Fatalf("testcluster: member %s already has an agent", node)
	}
	if n.startedLocked() {
		c.tb.Fatalf("testcluster: add an agent to member %s: it has already started", node)
	}
	addr := memberproc.FreeAddr(c.tb, n.IP)
	for addr == n.Addr || addr == n.AdminAddr {
		addr = memberproc.FreeAddr(c.tb, n.IP)
	}
	dir := c.tb.TempDir()
	n.agent = &Agent{
		Addr:       addr,
		node:       n,
		client:     agent.NewClient(addr, nil, AgentToken),
		memberLog:  filepath.Join(dir, n.Name+".log"),
		configFile: filepath.Join(dir, "agent-"+n.Name+".toml"),
	}
	return n.agent
}

// UseBinary configures the agent to run the member with the binary at path (another build of member, for upgrades) from
// its next start; a binary installed through the agent takes precedence, as it does on a real host.
func (a *Agent) UseBinary(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.binary = path
}

// Agent returns the agent supervising the member, or nil if it has none.
func (n *Node) Agent() *Agent {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.agent
}

// startedAgent returns the member's agent, or nil if it has none; it fails the test if the member has an agent but has
// not been started.
func (n *Node) startedAgent() *Agent {
	a := n.Agent()
	if a != nil && a.process() == nil {
		n.cluster.tb.Fatalf("testcluster: member %s has not been started", n.Name)
	}
	return a
}

// KillHost kills the member and its agent with SIGKILL, as a lost host: nothing runs them again until RestartHost.
func (n *Node) KillHost() {
	n.cluster.tb.Helper()
	a := n.requireAgent("KillHost")
	a.refresh()
	a.kill(true)
	n.setPaused(false)
}

// RestartHost starts the agent of a member whose host was killed (KillHost) and, if the agent autostarts the member,
// waits until it serves. The agent autostarts it unless, when its host was killed, the agent reported the member stopped
// or killed through it (StopByAgent, or a fence by another member): the member then stays down until Restart, as that
// agent left it.
func (n *Node) RestartHost() {
	n.cluster.tb.Helper()
	n.requireAgent("RestartHost").restart(true)
}

// StopByAgent has the member's agent stop it (SIGTERM, waiting until it has exited): the agent leaves it down, and so
// does RestartHost, until Restart.
func (n *Node) StopByAgent() {
	n.cluster.tb.Helper()
	a := n.requireAgent("StopByAgent")
	if n.setPaused(false) {
		a.signalMember(syscall.SIGCONT)
	}
	a.call("stop", a.client.Stop)
	a.mu.Lock()
	a.stoppedByAgent = true
	a.mu.Unlock()
}

// requireAgent returns the agent of the started member, failing the test (method names the caller) if it has none.
func (n *Node) requireAgent(method string) *Agent {
	n.cluster.tb.Helper()
	a := n.startedAgent()
	if a == nil {
		n.cluster.tb.Fatalf("testcluster: %s: member %s has no agent (AddAgent)", method, n.Name)
	}
	return a
}

// LinkAgent puts a fault proxy on the way from member `from` to the agent of member `to` (which must have one) and
// returns it; linking the same pair again returns the same proxy. It passes `--agent-via TO=PROXYADDR` to from's
// `member run`, so it must be called before from starts.
func (c *Cluster) LinkAgent(from, to string) *faultproxy.Proxy {
	c.tb.Helper()
	src, dst := c.Node(from), c.Node(to)
	a := dst.Agent()
	if a == nil {
		c.tb.Fatalf("testcluster: link %s to the agent of %s: member %s has no agent (AddAgent)", from, to, to)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if p, ok := src.agentLinks[to]; ok {
		return p
	}
	if src.startedLocked() {
		c.tb.Fatalf("testcluster: link %s to the agent of %s: member %s has already started", from, to, from)
	}
	p := c.newProxy(src, a.Addr, "link "+from+" to the agent of "+to)
	if src.agentLinks == nil {
		src.agentLinks = map[string]*faultproxy.Proxy{}
	}
	src.agentLinks[to] = p
	src.peers = append(src.peers, "--agent-via", to+"="+p.Addr())
	return p
}

// AgentLink returns the proxy on the way from this member to the agent of the member called to, or nil.
func (n *Node) AgentLink(to string) *faultproxy.Proxy {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.agentLinks[to]
}

// Client returns a client of the agent's API, presenting AgentToken.
func (a *Agent) Client() *agent.Client { return a.client }

// Kill kills the agent process alone (SIGKILL): its member runs on without it, as after an agent crash.
func (a *Agent) Kill() {
	a.tb().Helper()
	a.requireStarted()
	a.refresh()
	a.kill(false)
}

// Restart starts the killed agent again and, if it autostarts the member, waits until the member serves. An agent does
// not adopt a member that outlived its predecessor: while one runs, the restarted agent does not autostart it (its
// status shows the member not running), nor does it after the member was stopped or killed through the agent.
func (a *Agent) Restart() {
	a.tb().Helper()
	a.requireStarted()
	a.restart(false)
}

// Log returns what the agent processes have logged so far, the earlier ones (before a restart) first.
func (a *Agent) Log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	logs := append([]string(nil), a.pastLogs...)
	if a.proc != nil {
		logs = append(logs, a.proc.Log())
	}
	return strings.Join(logs, "\n")
}

func (a *Agent) tb() testing.TB { return a.node.cluster.tb }

func (a *Agent) process() *memberproc.Process {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proc
}

func (a *Agent) clientTLS() *tls.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tlsConf
}

// requireStarted fails the test if the agent has never been started.
func (a *Agent) requireStarted() {
	a.tb().Helper()
	if a.process() == nil {
		a.tb().Fatalf("testcluster: the agent of member %s has not been started (it starts with its member)", a.node.Name)
	}
}

// agentUp reports whether the agent process runs.
func (a *Agent) agentUp() bool {
	p := a.process()
	return p != nil && !p.Exited()
}

// startMember fixes the member's arguments and starts the agent, which autostarts the member; it is called by the
// member's first start, with n.mu held.
func (a *Agent) startMember(tb testing.TB, args []string, clientTLS *tls.Config) {
	tb.Helper()
	a.mu.Lock()
	a.args = append([]string{"run", "--config", a.node.configFile}, append(args, "--agent-addr", a.Addr)...)
	a.tlsConf = clientTLS
	a.mu.Unlock()
	a.launch(tb, true)
}

// restart starts the killed agent again, autostarting the member unless it still runs without the agent or was stopped
// through it; host demands that the member be down, as after KillHost.
func (a *Agent) restart(host bool) {
	tb := a.tb()
	tb.Helper()
	if a.agentUp() {
		tb.Fatalf("testcluster: restart the agent of member %s: it still runs", a.node.Name)
	}
	orphan := a.orphan()
	if host && orphan != 0 {
		tb.Fatalf("testcluster: restart the host of member %s: the member still runs (pid %d); KillHost takes it down with its agent",
			a.node.Name, orphan)
	}
	a.mu.Lock()
	autostart := orphan == 0 && !a.stoppedByAgent
	a.mu.Unlock()
	a.launch(tb, autostart)
}

// launch writes the agent's configuration, starts the agent and, if it autostarts the member, waits until the member
// serves. The agent and the member it runs are killed at cleanup: the member outlives its agent otherwise.
func (a *Agent) launch(tb testing.TB, autostart bool) {
	tb.Helper()
	a.mu.Lock()
	bin := a.binary
	if bin == "" {
		bin = memberproc.Build(tb, "member")
	}
	cfg := agent.Config{Listen: a.Addr, Token: AgentToken, Members: []agent.MemberConfig{{
		Name:      a.node.Name,
		Binary:    bin,
		Args:      a.args,
		DataDir:   a.node.DataDir,
		Log:       a.memberLog,
		Autostart: autostart,
	}}}
	a.mu.Unlock()
	writeTOML(tb, a.configFile, cfg)
	p := memberproc.StartProcess(tb, "agent serving", "agent", "--config", a.configFile, "--log-format", "json")
	// Registered after StartProcess's own cleanup, so it runs first and finds the agent's children.
	tb.Cleanup(func() { a.killProcs(append(a.stopAgent(p), a.takeOrphans()...)) })
	a.mu.Lock()
	if a.proc != nil {
		a.pastLogs = append(a.pastLogs, a.proc.Log())
	}
	a.proc = p
	a.mu.Unlock()
	if autostart {
		a.waitServing()
	}
}

// waitServing waits until the member's data port serves, failing the test if the agent exits first or it takes too long.
func (a *Agent) waitServing() {
	tb := a.tb()
	tb.Helper()
	p := a.process()
	err := memberproc.WaitServing(a.node.Addr, a.clientTLS(), p.Done())
	if errors.Is(err, memberproc.ErrExitedFirst) {
		err = fmt.Errorf("its agent exited")
	}
	if err != nil {
		tb.Fatalf("testcluster: member %s under its agent on %s: %v\n--- member log tail:\n%s\n--- agent log tail:\n%s",
			a.node.Name, a.Addr, err, memberproc.TailFile(a.memberLog, logLines), memberproc.Tail(p.Log(), logLines))
	}
}

// status asks the agent for its member's status and records whether the member was stopped or killed through it.
func (a *Agent) status() (agent.MemberStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), agentCallTimeout)
	defer cancel()
	st, err := a.client.Member(ctx, a.node.Name)
	if err != nil {
		return st, err
	}
	a.mu.Lock()
	a.stoppedByAgent = st.StoppedByAgent
	a.mu.Unlock()
	return st, nil
}

// mustStatus is status for a running agent, failing the test if the agent is down or does not answer.
func (a *Agent) mustStatus() agent.MemberStatus {
	tb := a.tb()
	tb.Helper()
	if !a.agentUp() {
		tb.Fatalf("testcluster: member %s: its agent is down (RestartHost or Agent().Restart bring it back)", a.node.Name)
	}
	st, err := a.status()
	if err != nil {
		tb.Fatalf("testcluster: %v", err)
	}
	return st
}

// refresh records, if the agent runs, whether its member was stopped or killed through it, before the agent is killed.
func (a *Agent) refresh() {
	a.tb().Helper()
	if a.agentUp() {
		a.mustStatus()
	}
}

// call makes one call to the agent about its member (action names it), failing the test on an error.
func (a *Agent) call(action string, do func(ctx context.Context, name string) error) {
	tb := a.tb()
	tb.Helper()
	if !a.agentUp() {
		tb.Fatalf("testcluster: %s member %s: its agent is down", action, a.node.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), agentCallTimeout)
	defer cancel()
	if err := do(ctx, a.node.Name); err != nil {
		tb.Fatalf("testcluster: %v\n%s", err, a.node.cluster.Logs(logLines))
	}
}

// memberPID returns the pid of the running member process: one that outlived its killed agent, or else the one the
// agent runs. supervised says it is the agent's. It fails the test if the member is not running.
func (a *Agent) memberPID() (pid int, supervised bool) {
	tb := a.tb()
	tb.Helper()
	if pid := a.orphan(); pid != 0 {
		return pid, false
	}
	st := a.mustStatus()
	if !st.Running {
		tb.Fatalf("testcluster: member %s is not running (its agent reports exit status %q, stopped by the agent: %t, error %q)",
			a.node.Name, st.ExitStatus, st.StoppedByAgent, st.Error)
	}
	return st.PID, true
}

// memberRunning reports whether a member process runs: the agent's, or one that outlived its killed agent.
func (a *Agent) memberRunning() bool {
	a.tb().Helper()
	if a.orphan() != 0 {
		return true
	}
	return a.agentUp() && a.mustStatus().Running
}

// signalMember sends sig to the member process directly.
func (a *Agent) signalMember(sig syscall.Signal) (pid int) {
	a.tb().Helper()
	pid, _ = a.memberPID()
	a.signalPID(pid, sig)
	return pid
}

// signalPID sends sig to the member process pid (from memberPID) through a handle on that very process: an orphan's, or
// one opened now and checked to be the running agent's child, so that a pid reused by another process is never signalled.
func (a *Agent) signalPID(pid int, sig syscall.Signal) *os.Process {
	a.tb().Helper()
	p := a.orphanProc(pid)
	if p == nil {
		p = handle(pid)
		if _, parent, ok := procStat(pid); !ok || parent != a.process().Pid() {
			a.tb().Fatalf("testcluster: signal %s to member %s: pid %d is no longer its agent's child (it exited meanwhile)", sig, a.node.Name, pid)
		}
	}
	if err := p.Signal(sig); err != nil {
		a.tb().Fatalf("testcluster: signal %s to member %s (pid %d): %v", sig, a.node.Name, pid, err)
	}
	return p
}

// handle opens a handle on process pid (a pidfd on Linux): signals sent through it reach that process or none.
func handle(pid int) *os.Process {
	p, _ := os.FindProcess(pid) // never fails on Unix
	return p
}

// gone reports whether the process behind handle p has exited.
func gone(p *os.Process) bool {
	return errors.Is(p.Signal(syscall.Signal(0)), os.ErrProcessDone) || pidGone(p.Pid)
}

// orphanProc returns the handle of the orphan with pid, or nil.
func (a *Agent) orphanProc(pid int) *os.Process {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.orphans {
		if p.Pid == pid {
			return p
		}
	}
	return nil
}

// killMember crashes the member: SIGKILL to its process, not through the agent, and waits until it is gone.
func (a *Agent) killMember() {
	a.tb().Helper()
	pid, _ := a.memberPID()
	a.waitExit(a.signalPID(pid, syscall.SIGKILL))
}

// terminateMember sends SIGTERM to the member process (and SIGCONT if it was paused), waits until it has exited and
// returns its exit status as its agent reports it.
func (a *Agent) terminateMember(paused bool) error {
	a.tb().Helper()
	pid, supervised := a.memberPID()
	p := a.signalPID(pid, syscall.SIGTERM)
	if paused {
		a.signalPID(pid, syscall.SIGCONT)
	}
	a.waitExit(p)
	if !supervised || !a.agentUp() {
		return nil
	}
	st, err := a.status()
	if err != nil {
		return err
	}
	if st.ExitStatus != "exit status 0" {
		return fmt.Errorf("member %s (pid %d) ended with %s", a.node.Name, pid, st.ExitStatus)
	}
	return nil
}

// restartMember has the agent start the member and waits until it serves.
func (a *Agent) restartMember() {
	tb := a.tb()
	tb.Helper()
	if pid := a.orphan(); pid != 0 {
		tb.Fatalf("testcluster: restart member %s: it still runs (pid %d) without its agent", a.node.Name, pid)
	}
	a.call("start", a.client.Start)
	a.mu.Lock()
	a.stoppedByAgent = false
	a.mu.Unlock()
	a.waitServing()
}

// waitExit waits until process p is gone and, if it is the running agent's, the agent has seen it exit.
func (a *Agent) waitExit(p *os.Process) {
	tb := a.tb()
	tb.Helper()
	pid := p.Pid
	a.node.cluster.WaitFor(tb, fmt.Sprintf("member %s (pid %d) to exit", a.node.Name, pid), time.Minute, func() (bool, error) {
		if !gone(p) {
			return false, nil
		}
		if !a.agentUp() {
			return true, nil
		}
		st, err := a.status()
		if err != nil {
			return false, err
		}
		return !st.Running || st.PID != pid, nil
	})
}

// kill kills the agent process, if it runs. With members, the member processes (the agent's and any that outlived an
// earlier agent) are killed too and waited on; without, they run on without the agent.
func (a *Agent) kill(members bool) {
	a.tb().Helper()
	survivors := a.stopAgent(a.process())
	a.mu.Lock()
	a.orphans = append(a.orphans, survivors...)
	a.mu.Unlock()
	if members {
		a.killProcs(a.takeOrphans())
	}
}

// stopAgent kills the agent process p if it runs and returns handles on its children, the member processes it ran,
// which survive it. The agent is stopped (SIGSTOP) while they are listed and their handles opened, so that it can neither
// start another nor reap one (whose pid could then be reused) meanwhile.
func (a *Agent) stopAgent(p *memberproc.Process) []*os.Process {
	tb := a.tb()
	tb.Helper()
	if p.Exited() {
		return nil
	}
	// A process not yet reaped keeps its pid, so signalling it cannot reach another process; Process.Kill reaps it.
	p.Signal(tb, syscall.SIGSTOP)
	var children []*os.Process
	for _, pid := range childPIDs(tb, p.Pid()) {
		children = append(children, handle(pid))
	}
	p.Signal(tb, syscall.SIGKILL)
	p.Kill(tb)
	return children
}

// killProcs sends SIGKILL to the member processes and waits until they are gone.
func (a *Agent) killProcs(procs []*os.Process) {
	tb := a.tb()
	tb.Helper()
	for _, p := range procs {
		if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			tb.Fatalf("testcluster: kill member %s (pid %d): %v", a.node.Name, p.Pid, err)
		}
	}
	for _, p := range procs {
		a.node.cluster.WaitFor(tb, fmt.Sprintf("member %s (pid %d) to die", a.node.Name, p.Pid), time.Minute, func() (bool, error) {
			return gone(p), nil
		})
	}
}

// orphan returns the pid of a member process that outlived its killed agent and still runs, or 0.
func (a *Agent) orphan() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	alive := a.orphans[:0]
	for _, p := range a.orphans {
		if !gone(p) {
			alive = append(alive, p)
		}
	}
	a.orphans = alive
	if len(alive) == 0 {
		return 0
	}
	return alive[0].Pid
}

// takeOrphans returns the member processes that outlived their agent and forgets them.
func (a *Agent) takeOrphans() []*os.Process {
	a.mu.Lock()
	defer a.mu.Unlock()
	pids := a.orphans
	a.orphans = nil
	return pids
}

// childPIDs lists the processes whose parent is ppid.
func childPIDs(tb testing.TB, ppid int) []int {
	tb.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		tb.Fatalf("testcluster: list the children of pid %d: %v", ppid, err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, parent, ok := procStat(pid); ok && parent == ppid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pidGone reports whether process pid has ended: it no longer exists, or is a zombie not reaped yet (a member whose agent
// was killed has a new parent, which may be slow to reap it).
func pidGone(pid int) bool {
	state, _, ok := procStat(pid)
	return !ok || state == 'Z' || state == 'X'
}

// procStat returns a process's state letter and parent pid from /proc/PID/stat; ok is false if there is no such process.
func procStat(pid int) (state byte, ppid int, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "PID (COMM) STATE PPID …": COMM may hold spaces and parentheses, so fields are counted from the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 2 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(fields[1])
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], ppid, true
}
