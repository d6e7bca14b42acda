package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/internal/faultproxy"
)

const (
	// unplannedMirror is the mirror the unplanned benchmark makes.
	unplannedMirror = "MIR"
	// arbiterToken is the token the benchmark's arbiter requires and its members present.
	arbiterToken = "failoverbench-arbiter-token"
	// arbiterIP, memberIPs: each process on its own loopback address, as in scripts/bench.sh. A member's proxies listen
	// on proxyNet plus the last byte of its own address, apart from every process's ports.
	arbiterIP = "127.0.0.10"
	proxyNet  = "127.0.1."
	// statusTimeout bounds one admin API call while waiting; a stopped member does not answer at all.
	statusTimeout = 2 * time.Second
	// stopTimeout is how long a member or the arbiter may take to exit on SIGTERM (a member's shutdown wait is 30s).
	stopTimeout = 45 * time.Second
)

var memberIPs = [2]string{"127.0.0.11", "127.0.0.12"}

// errProcessGone is returned when the arbiter or a member exited while it should be running: no wait can succeed then.
var errProcessGone = errors.New("process exited")

// proc is one process of the member binary (a member or the arbiter), restartable with the same arguments, its output
// appended to one log file.
type proc struct {
	name, bin, logPath string
	args               []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process is reaped
	err    error         // its exit status, once exited
	frozen bool          // stopped with SIGSTOP
}

func (p *proc) start() error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: log: %w", p.name, err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited, p.err, p.frozen = cmd, exited, nil, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

// done is closed once the process last started has exited.
func (p *proc) done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// started reports whether the process was ever started.
func (p *proc) started() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// running reports whether the process last started is still there.
func (p *proc) running() bool {
	if !p.started() {
		return false
	}
	select {
	case <-p.done():
		return false
	default:
		return true
	}
}

func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", p.name, sig, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.frozen = true
	case syscall.SIGCONT:
		p.frozen = false
	}
	return nil
}

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done():
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("%s: still running %v after SIGKILL", p.name, stopTimeout)
	}
}

// stop ends the process as an operator would, SIGTERM (after SIGCONT if it is stopped), and reports an exit that is not
// clean; past stopTimeout it kills it.
func (p *proc) stop() error {
	if !p.running() {
		return nil
	}
	p.mu.Lock()
	frozen := p.frozen
	p.mu.Unlock()
	if frozen {
		if err := p.signal(syscall.SIGCONT); err != nil {
			return err
		}
	}
	if err := p.signal(syscall.SIGTERM); err != nil && p.running() {
		return err
	}
	select {
	case <-p.done():
		if err := p.exitErr(); err != nil {
			return fmt.Errorf("%s exited with %v after SIGTERM (log %s)", p.name, err, p.logPath)
		}
		return nil
	case <-time.After(stopTimeout):
		p.kill()
		return fmt.Errorf("%s still running %v after SIGTERM, killed (log %s)", p.name, stopTimeout, p.logPath)
	}
}

// node is one failover member with the proxies it reaches the other member and the arbiter through.
type node struct {
	name      string
	addr      string // data address
	admin     string // admin address
	proc      *proc
	toPeer    *faultproxy.Proxy
	toArbiter *faultproxy.Proxy
}

// arbitratedPair is a mirror of two failover members, A and B, and an arbiter, all processes of the member binary.
// Each member reaches the other's data port and the arbiter through fault proxies run in this process; clients and the
// benchmark reach the members directly.
type arbitratedPair struct {
	bin     string
	timeout time.Duration
	arbiter *proc
	arbAddr string
	nodes   [2]*node
	mon     *monitor
	proxies []*faultproxy.Proxy
}

// startPair starts the arbiter and both members with their data and logs under dir, makes A primary of mirror MIR
// with the given QoS timeout and the arbiter, B its backup, creates database db on both and waits until the mirror is
// healthy. On error everything started is stopped again.
func startPair(ctx context.Context, bin, dir, db string, qos, timeout time.Duration) (_ *arbitratedPair, err error) {
	p := &arbitratedPair{bin: bin, timeout: timeout}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.close())
		}
	}()
	if p.arbAddr, err = freeAddr(arbiterIP); err != nil {
		return nil, err
	}
	p.arbiter = &proc{name: "arbiter", bin: bin, logPath: filepath.Join(dir, "arbiter.log"),
		args: []string{"arbiter", "--listen", p.arbAddr, "--data-dir", filepath.Join(dir, "arbiter"), "--token", arbiterToken,
			"--log-format", "json"}}
	if err := p.arbiter.start(); err != nil {
		return nil, err
	}
	if err := p.waitListening(ctx, p.arbiter, p.arbAddr); err != nil {
		return nil, err
	}
	for i, name := range []string{"A", "B"} {
		n := &node{name: name}
		if n.addr, err = freeAddr(memberIPs[i]); err != nil {
			return nil, err
		}
		for n.admin == "" || n.admin == n.addr {
			if n.admin, err = freeAddr(memberIPs[i]); err != nil {
				return nil, err
			}
		}
		p.nodes[i] = n
	}
	for i, n := range p.nodes {
		peer := p.nodes[1-i]
		proxyIP := proxyNet + strings.TrimPrefix(memberIPs[i], "127.0.0.")
		if n.toPeer, err = p.proxy(proxyIP, peer.addr); err != nil {
			return nil, err
		}
		if n.toArbiter, err = p.proxy(proxyIP, p.arbAddr); err != nil {
			return nil, err
		}
		n.proc = &proc{name: "member " + n.name, bin: bin, logPath: filepath.Join(dir, n.name+".log"),
			args: []string{"run", "--name", n.name, "--data-dir", filepath.Join(dir, n.name), "--listen", n.addr,
				"--admin-listen", n.admin, "--log-format", "json", "--arbiter-token", arbiterToken,
				"--arbiter-via", n.toArbiter.Addr(), "--peer", peer.name + "=" + n.toPeer.Addr()}}
	}
	p.mon = newMonitor(unplannedMirror, []string{p.nodes[0].addr, p.nodes[1].addr})
	for _, n := range p.nodes {
		p.mon.admin[n.addr] = "http://" + n.admin
		if err := n.proc.start(); err != nil {
			return nil, err
		}
	}
	for _, n := range p.nodes {
		if err := p.waitServing(ctx, n); err != nil {
			return nil, err
		}
	}
	a, b := p.nodes[0], p.nodes[1]
	if err := p.cli(ctx, "mirror", "create", unplannedMirror, "--member", a.addr, "--qos", qos.String(), "--arbiter", p.arbAddr); err != nil {
		return nil, err
	}
	if err := p.cli(ctx, "mirror", "join", unplannedMirror, "--member", b.addr, "--primary", a.addr, "--as", "failover"); err != nil {
		return nil, err
	}
	if err := p.cli(ctx, "db", "create", db, "--mirror", unplannedMirror, "--member", a.addr); err != nil {
		return nil, err
	}
	// B refuses the database until the mirror's configuration has reached it from A.
	err = p.waitFor(ctx, "database "+db+" created on B", func(context.Context) (bool, error) {
		err := p.cli(ctx, "db", "create", db, "--mirror", unplannedMirror, "--member", b.addr, "--timeout", "10s")
		return err == nil, err
	})
	if err != nil {
		return nil, err
	}
	if _, _, err := p.waitHealthy(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *arbitratedPair) proxy(ip, target string) (*faultproxy.Proxy, error) {
	px, err := faultproxy.New(net.JoinHostPort(ip, "0"), target)
	if err != nil {
		return nil, err
	}
	p.proxies = append(p.proxies, px)
	return px, nil
}

// freeAddr returns ip:port with a port that was free a moment ago.
func freeAddr(ip string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return "", fmt.Errorf("free port on %s: %w", ip, err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// cli runs the member command line.
func (p *arbitratedPair) cli(ctx context.Context, args ...string) error {
	msg, err := exec.CommandContext(ctx, p.bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", p.bin, strings.Join(args, " "), err, strings.TrimSpace(string(msg)))
	}
	return nil
}

// waitFor polls cond every pollInterval until it holds, for at most the pair's timeout, or until cond finds a process
// gone; the error names what was awaited and the last reason cond gave.
func (p *arbitratedPair) waitFor(ctx context.Context, what string, cond func(ctx context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		cctx, ccancel := context.WithTimeout(ctx, statusTimeout)
		ok, err := cond(cctx)
		ccancel()
		if ok {
			return nil
		}
		if errors.Is(err, errProcessGone) {
			return fmt.Errorf("%s: %w", what, err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("%s: not within %v: %w", what, p.timeout, err)
		}
	}
}

// waitListening waits until the process accepts connections on addr.
func (p *arbitratedPair) waitListening(ctx context.Context, pr *proc, addr string) error {
	return p.waitFor(ctx, pr.name+" listening on "+addr, func(ctx context.Context) (bool, error) {
		if !pr.running() {
			return false, pr.gone()
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false, err
		}
		return true, c.Close()
	})
}

// gone describes a process that ended when it should be running.
func (p *proc) gone() error {
	return fmt.Errorf("%s: %w (%v; log %s)", p.name, errProcessGone, p.exitErr(), p.logPath)
}

// waitServing waits until the member's admin API answers (it opens after the data port).
func (p *arbitratedPair) waitServing(ctx context.Context, n *node) error {
	return p.waitFor(ctx, n.proc.name+" serving", func(ctx context.Context) (bool, error) {
		if !n.proc.running() {
			return false, n.proc.gone()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.admin+"/api/v1/mirror/local", nil)
		if err != nil {
			return false, err
		}
		resp, err := p.mon.http.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("admin API: %s", resp.Status)
	})
}

// local is the member's own view of the mirror.
func (p *arbitratedPair) local(ctx context.Context, n *node) (mirror.Status, error) {
	st, err := p.mon.view(ctx, n.addr, "/api/v1/mirror/local")
	if err != nil {
		return st, fmt.Errorf("%s: %w", n.proc.name, err)
	}
	return st, nil
}

// other is the member that is not n.
func (p *arbitratedPair) other(n *node) *node {
	if p.nodes[0] == n {
		return p.nodes[1]
	}
	return p.nodes[0]
}

// healthy says whether the mirror is ready for a fault, and if not why: one member primary and serving, the other its
// Active backup in the same epoch, both in Arbiter Controlled mode with both connected to the arbiter.
func healthy(views [2]mirror.Status, names [2]string) (primary int, why string) {
	primary = -1
	for i, st := range views {
		if st.Role == mirror.RolePrimary.String() {
			if primary >= 0 {
				return -1, fmt.Sprintf("both members are primary (epochs %d and %d)", views[0].Epoch, views[1].Epoch)
			}
			primary = i
		}
	}
	if primary < 0 {
		return -1, fmt.Sprintf("no member is primary (roles %s and %s)", views[0].Role, views[1].Role)
	}
	p, b := views[primary], views[1-primary]
	pName, bName := names[primary], names[1-primary]
	var out []string
	if s := row(p, pName).Status; s != mirror.StatusPrimary {
		out = append(out, fmt.Sprintf("primary %s is %s (%s)", pName, s, p.Trouble))
	}
	if t := row(p, bName).JournalTransfer; t != mirror.TransferActive {
		out = append(out, fmt.Sprintf("%s's journal transfer is %q", bName, t))
	}
	if b.Role != mirror.RoleBackup.String() || b.Epoch != p.Epoch || row(b, bName).Status != mirror.StatusBackup {
		out = append(out, fmt.Sprintf("%s is %s (role %s) in epoch %d, the primary in %d", bName, row(b, bName).Status, b.Role, b.Epoch, p.Epoch))
	}
	for i, st := range views {
		if st.FailoverMode != mirror.ModeArbiter.String() || st.ArbiterConnection != mirror.ArbiterBoth {
			out = append(out, fmt.Sprintf("%s: %s, %s", names[i], st.FailoverMode, st.ArbiterConnection))
		}
	}
	if len(out) > 0 {
		return -1, strings.Join(out, "; ")
	}
	return primary, ""
}

// row is the member's row in st (the zero row when it has none).
func row(st mirror.Status, name string) mirror.MemberStatus {
	for _, r := range st.Members {
		if r.Name == name {
			return r
		}
	}
	return mirror.MemberStatus{}
}

// waitHealthy waits until the mirror is healthy and returns its primary and epoch.
func (p *arbitratedPair) waitHealthy(ctx context.Context) (*node, uint64, error) {
	var (
		primary *node
		epoch   uint64
	)
	err := p.waitFor(ctx, "mirror healthy (backup Active, Arbiter Controlled)", func(ctx context.Context) (bool, error) {
		var views [2]mirror.Status
		for i, n := range p.nodes {
			if !n.proc.running() {
				return false, n.proc.gone()
			}
			st, err := p.local(ctx, n)
			if err != nil {
				return false, err
			}
			views[i] = st
		}
		i, why := healthy(views, [2]string{p.nodes[0].name, p.nodes[1].name})
		if i < 0 {
			return false, errors.New(why)
		}
		primary, epoch = p.nodes[i], views[i].Epoch
		return true, nil
	})
	return primary, epoch, err
}

// close stops the members and the arbiter with SIGTERM and the proxies, and reports what did not stop cleanly.
func (p *arbitratedPair) close() error {
	var errs []error
	for _, n := range p.nodes {
		if n != nil && n.proc != nil && n.proc.started() {
			errs = append(errs, n.proc.stop())
		}
	}
	if p.arbiter != nil && p.arbiter.started() {
		errs = append(errs, p.arbiter.stop())
	}
	for _, px := range p.proxies {
		errs = append(errs, px.Close())
	}
	return errors.Join(errs...)
}
