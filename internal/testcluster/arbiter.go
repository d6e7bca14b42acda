package testcluster

import (
	"fmt"
	"net"
	"sync"
	"syscall"

	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/faultproxy"
	"github.com/mirrorkit/mirrorkit/internal/memberproc"
)

// ArbiterToken is the token the cluster's arbiter requires and every member presents.
const ArbiterToken = "testcluster-arbiter-token"

// arbiterIP is the arbiter's own loopback IP, apart from the members'.
const arbiterIP = "127.0.0.10"

// Arbiter is the cluster's arbiter process.
type Arbiter struct {
	Addr    string
	DataDir string
	c       *Cluster
	tls     wire.TLSFiles

	mu   sync.Mutex
	proc *memberproc.Process
}

// StartArbiter starts an arbiter on a free port of its own loopback IP; members reach it with the token ArbiterToken
// (every member's configuration carries it). Create the mirror with `--arbiter` a.Addr.
func (c *Cluster) StartArbiter() *Arbiter {
	c.tb.Helper()
	return c.StartArbiterTLS(wire.TLSFiles{})
}

// StartArbiterTLS starts the arbiter speaking mutual TLS with the given certificate files (empty: as StartArbiter); members
// then authenticate with their own certificates.
func (c *Cluster) StartArbiterTLS(files wire.TLSFiles) *Arbiter {
	c.tb.Helper()
	c.mu.Lock()
	if c.arbiter != nil {
		c.mu.Unlock()
		c.tb.Fatalf("testcluster: the cluster already has an arbiter")
	}
	a := &Arbiter{Addr: memberproc.FreeAddr(c.tb, arbiterIP), DataDir: c.tb.TempDir(), c: c, tls: files}
	c.arbiter = a
	c.mu.Unlock()
	a.start()
	return a
}

func (a *Arbiter) start() {
	a.c.tb.Helper()
	args := []string{"arbiter", "--listen", a.Addr, "--data-dir", a.DataDir, "--token", ArbiterToken, "--log-format", "json"}
	if a.tls.Enabled() {
		args = append(args, "--tls-cert", a.tls.Cert, "--tls-key", a.tls.Key, "--tls-ca", a.tls.CA)
	}
	p := memberproc.StartProcess(a.c.tb, "arbiter serving", args...)
	a.mu.Lock()
	a.proc = p
	a.mu.Unlock()
}

func (a *Arbiter) process() *memberproc.Process {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proc
}

// Kill kills the arbiter (SIGKILL); Restart brings it back on the same address and data directory.
func (a *Arbiter) Kill() { a.process().Kill(a.c.tb) }

// Restart starts a killed arbiter again.
func (a *Arbiter) Restart() {
	a.c.tb.Helper()
	if !a.process().Exited() {
		a.c.tb.Fatalf("testcluster: restart of the arbiter while it runs")
	}
	a.start()
}

// Pause stops the arbiter with SIGSTOP; Resume continues it.
func (a *Arbiter) Pause() { a.process().Signal(a.c.tb, syscall.SIGSTOP) }

// Resume continues a paused arbiter.
func (a *Arbiter) Resume() { a.process().Signal(a.c.tb, syscall.SIGCONT) }

// Log returns the arbiter's log so far.
func (a *Arbiter) Log() string { return a.process().Log() }

// LinkArbiter puts a fault proxy on the way from member `from` to the arbiter (which must be started) and returns it; it
// passes `--arbiter-via` to from's `member run`, so it must be called before from starts.
func (c *Cluster) LinkArbiter(from string) *faultproxy.Proxy {
	c.tb.Helper()
	src := c.Node(from)
	c.mu.Lock()
	a := c.arbiter
	c.mu.Unlock()
	if a == nil {
		c.tb.Fatalf("testcluster: link %s to the arbiter: no arbiter started", from)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.arbiterLink != nil {
		return src.arbiterLink
	}
	if src.startedLocked() {
		c.tb.Fatalf("testcluster: link %s to the arbiter: member %s has already started", from, from)
	}
	p, err := faultproxy.New(net.JoinHostPort(fmt.Sprintf("%s%d", proxyNet, src.host), "0"), a.Addr)
	if err != nil {
		c.tb.Fatalf("testcluster: link %s to the arbiter: %v", from, err)
	}
	c.tb.Cleanup(func() { p.Close() })
	src.arbiterLink = p
	src.peers = append(src.peers, "--arbiter-via", p.Addr())
	return p
}

// ArbiterLink returns the proxy on the way from this member to the arbiter, or nil.
func (n *Node) ArbiterLink() *faultproxy.Proxy {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.arbiterLink
}
