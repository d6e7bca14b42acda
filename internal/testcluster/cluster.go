package testcluster

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/faultproxy"
	"github.com/mirrorkit/mirrorkit/internal/memberproc"
)

const (
	// firstHost is the last byte of the first member's IP; members get 127.0.0.11, 127.0.0.12, ….
	firstHost = 11
	// proxyNet holds the proxies, apart from the members' IPs so a proxy's port can never take a port chosen for a member
	// that has not started yet. A proxy used by member 127.0.0.N listens on 127.0.1.N.
	proxyNet = "127.0.1."
	// logLines is how much of each member's log a failed WaitFor shows.
	logLines = 30
)

// Cluster is a set of members declared by one test. It belongs to that test: call its methods from the test's goroutine
// (or, for WaitFor, pass the testing.TB of the goroutine calling it).
type Cluster struct {
	tb testing.TB

	mu      sync.Mutex
	nodes   []*Node
	byName  map[string]*Node
	arbiter *Arbiter
}

// New returns an empty cluster whose members and proxies are stopped when tb's test ends.
func New(tb testing.TB) *Cluster {
	tb.Helper()
	return &Cluster{tb: tb, byName: map[string]*Node{}}
}

// Add declares a member (not started) with its own loopback IP, data and admin ports free on that IP, and a data directory.
// extraArgs are passed to its `member run`.
func (c *Cluster) Add(name string, extraArgs ...string) *Node {
	c.tb.Helper()
	return c.AddTLS(name, wire.TLSFiles{}, extraArgs...)
}

// AddTLS declares a member that speaks mutual TLS with the given certificate files (empty files: plain, as Add). Its CLI
// and admin helpers use the same certificate.
func (c *Cluster) AddTLS(name string, files wire.TLSFiles, extraArgs ...string) *Node {
	c.tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byName[name]; ok {
		c.tb.Fatalf("testcluster: member %s added twice", name)
	}
	host := firstHost + len(c.nodes)
	if host > 254 {
		c.tb.Fatalf("testcluster: no loopback IP left for member %s", name)
	}
	ip := fmt.Sprintf("127.0.0.%d", host)
	n := &Node{
		Name:    name,
		IP:      ip,
		DataDir: c.tb.TempDir(),
		Addr:    memberproc.FreeAddr(c.tb, ip),
		cluster: c,
		host:    host,
		args:    extraArgs,
		links:   map[string]*faultproxy.Proxy{},
		TLS:     files,
	}
	n.AdminAddr = memberproc.FreeAddr(c.tb, ip)
	for n.AdminAddr == n.Addr {
		n.AdminAddr = memberproc.FreeAddr(c.tb, ip)
	}
	n.configFile = writeConfig(c.tb, n)
	c.nodes = append(c.nodes, n)
	c.byName[name] = n
	return n
}

// memberConfig is the part of the member's TOML configuration the cluster sets; flags in extra arguments override it.
type memberConfig struct {
	Name        string `toml:"name"`
	DataDir     string `toml:"data_dir"`
	Listen      string `toml:"listen"`
	AdminListen string `toml:"admin_listen"`
	Log         struct {
		Format string `toml:"format"`
	} `toml:"log"`
	TLS      *wire.TLSFiles `toml:"tls,omitempty"`
	Failover struct {
		ArbiterToken string `toml:"arbiter_token"`
		AgentToken   string `toml:"agent_token"`
	} `toml:"failover"`
}

// writeConfig fixes the member's addresses in a configuration file, so that a proxy can point at its data port before it
// starts and a restart keeps its ports.
func writeConfig(tb testing.TB, n *Node) string {
	tb.Helper()
	cfg := memberConfig{Name: n.Name, DataDir: n.DataDir, Listen: n.Addr, AdminListen: n.AdminAddr}
	cfg.Log.Format = "json"
	cfg.Failover.ArbiterToken = ArbiterToken
	cfg.Failover.AgentToken = AgentToken
	if n.TLS.Enabled() {
		cfg.TLS = &n.TLS
	}
	path := filepath.Join(tb.TempDir(), n.Name+".toml")
	writeTOML(tb, path, cfg)
	return path
}

// writeTOML writes v as TOML to the file at path, replacing it.
func writeTOML(tb testing.TB, path string, v any) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatalf("testcluster: create config %s: %v", path, err)
	}
	defer f.Close()
	if err := toml.NewEncoder(f).Encode(v); err != nil {
		tb.Fatalf("testcluster: write config %s: %v", path, err)
	}
}

// Node returns the declared member called name.
func (c *Cluster) Node(name string) *Node {
	c.tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.byName[name]
	if !ok {
		c.tb.Fatalf("testcluster: no member %s", name)
	}
	return n
}

// Nodes returns every declared member in the order they were added.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

// Link puts a fault proxy on the way from `from` to `to`'s data port and returns it; linking the same pair again returns the
// same proxy. It passes `--peer TO=PROXYADDR` to from's `member run`, so it must be called before from starts.
func (c *Cluster) Link(from, to string) *faultproxy.Proxy {
	c.tb.Helper()
	src, dst := c.Node(from), c.Node(to)
	src.mu.Lock()
	defer src.mu.Unlock()
	if p, ok := src.links[to]; ok {
		return p
	}
	if src.startedLocked() {
		c.tb.Fatalf("testcluster: link %s to %s: member %s has already started", from, to, from)
	}
	p := c.newProxy(src, dst.Addr, "link "+from+" to "+to)
	src.links[to] = p
	src.peers = append(src.peers, "--peer", to+"="+p.Addr())
	return p
}

// newProxy starts a fault proxy, closed at cleanup, on the way from member src to target; what names the link in errors.
func (c *Cluster) newProxy(src *Node, target, what string) *faultproxy.Proxy {
	c.tb.Helper()
	p, err := faultproxy.New(net.JoinHostPort(fmt.Sprintf("%s%d", proxyNet, src.host), "0"), target)
	if err != nil {
		c.tb.Fatalf("testcluster: %s: %v", what, err)
	}
	c.tb.Cleanup(func() { p.Close() })
	return p
}

// Start starts the named members (every member not yet started if none are named), one after the other, each waited on
// until its data port serves.
func (c *Cluster) Start(names ...string) {
	c.tb.Helper()
	var nodes []*Node
	if len(names) == 0 {
		for _, n := range c.Nodes() {
			if !n.isStarted() {
				nodes = append(nodes, n)
			}
		}
	}
	for _, name := range names {
		nodes = append(nodes, c.Node(name))
	}
	for _, n := range nodes {
		n.start(c.tb)
	}
}

// WaitFor polls cond, every 20ms backing off to 200ms, until it returns true. After timeout it fails tb with desc, the last
// error cond returned and the tail of every started member's log.
func (c *Cluster) WaitFor(tb testing.TB, desc string, timeout time.Duration, cond func() (bool, error)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for backoff := 20 * time.Millisecond; ; backoff = min(2*backoff, 200*time.Millisecond) {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			tb.Fatalf("testcluster: timed out after %s waiting for %s; last error: %v\n%s", timeout, desc, lastErr, c.Logs(logLines))
		}
		time.Sleep(min(backoff, wait))
	}
}

// Logs returns the last lines of every started member's log, each under a heading naming the member, and of the log of
// the agent supervising it, if any.
func (c *Cluster) Logs(lines int) string {
	var b strings.Builder
	for _, n := range c.Nodes() {
		if !n.isStarted() {
			continue
		}
		fmt.Fprintf(&b, "--- member %s (%s) log tail:\n%s\n", n.Name, n.Addr, n.LogTail(lines))
		if a := n.Agent(); a != nil {
			fmt.Fprintf(&b, "--- agent of member %s (%s) log tail:\n%s\n", n.Name, a.Addr, memberproc.Tail(a.Log(), lines))
		}
	}
	return b.String()
}
