package faultproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	dialTimeout   = 10 * time.Second
	acceptBackoff = 5 * time.Millisecond
)

// Stats counts what a proxy has done since it started.
type Stats struct {
	BytesToTarget   int64 // forwarded from accepted connections to the target
	BytesFromTarget int64 // forwarded from the target back to accepted connections
	BytesDropped    int64 // read in either direction and discarded by a black hole
	Accepted        int64 // connections accepted (forwarded or black-holed)
	Refused         int64 // connections reset on arrival while cut
	Active          int   // connections open now
}

type mode int

const (
	forwarding mode = iota
	cut
	blackHole
)

// Proxy forwards every connection accepted on its listener to one target address, applying the faults currently switched on.
// Its methods are safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string

	delay    atomic.Int64 // one-way delay in nanoseconds
	up, down bucket       // bandwidth towards the target and back

	toTarget, fromTarget, dropped, accepted, refused atomic.Int64

	mu      sync.Mutex
	mode    mode
	links   map[*link]struct{}
	changed chan struct{} // closed and replaced when the delay changes, so writers waiting on the old one re-read it
	closed  bool
	wg      sync.WaitGroup
}

// New listens on listen (host:port; port 0 picks a free one) and forwards each accepted connection to target. It serves until Close.
func New(listen, target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("faultproxy target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy listen %s: %w", listen, err)
	}
	p := &Proxy{ln: ln, target: target, links: map[*link]struct{}{}, changed: make(chan struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address the proxy listens on; dial it instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// SetDelay adds d of latency to each direction. Bytes are held in a delay line, so a stream keeps its throughput and order;
// data already queued is released according to the new delay.
func (p *Proxy) SetDelay(d time.Duration) {
	p.delay.Store(int64(max(d, 0)))
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// SetBandwidth limits each direction to bytesPerSec, shared by all connections as on one link; 0 or less means unlimited.
func (p *Proxy) SetBandwidth(bytesPerSec int) {
	p.up.set(bytesPerSec)
	p.down.set(bytesPerSec)
}

// Cut resets every open connection and resets new ones on arrival until Heal.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = cut
	for l := range p.links {
		l.close(true)
	}
}

// BlackHole partitions the link until Heal: open connections stay open but every byte either way is dropped, and new
// connections are accepted but never reach the target.
func (p *Proxy) BlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = blackHole
	for l := range p.links {
		l.dead.Store(true)
	}
}

// Heal returns to normal forwarding. Connections that were black-holed are reset, as they would be by peers that gave up on them.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = forwarding
	for l := range p.links {
		if l.dead.Load() {
			l.close(true)
		}
	}
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.links)
	p.mu.Unlock()
	return Stats{
		BytesToTarget:   p.toTarget.Load(),
		BytesFromTarget: p.fromTarget.Load(),
		BytesDropped:    p.dropped.Load(),
		Accepted:        p.accepted.Load(),
		Refused:         p.refused.Load(),
		Active:          active,
	}
}

// Close stops listening, resets every connection and waits for the proxy's goroutines to end. Later calls do nothing.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	for l := range p.links {
		l.close(true)
	}
	p.mu.Unlock()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("faultproxy close %s: %w", p.Addr(), err)
	}
	return nil
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of descriptors or similar: back off as net/http does rather than spin or stop serving.
			time.Sleep(acceptBackoff)
			continue
		}
		p.admit(conn)
	}
}

func (p *Proxy) admit(conn net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.mode == cut {
		if !p.closed {
			p.refused.Add(1)
		}
		closeConn(conn, true)
		return
	}
	l := &link{client: conn, done: make(chan struct{})}
	l.dead.Store(p.mode == blackHole)
	p.links[l] = struct{}{}
	p.accepted.Add(1)
	p.wg.Add(1)
	go p.serve(l)
}

func (p *Proxy) forget(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// delayChanged returns the channel closed at the next SetDelay.
func (p *Proxy) delayChanged() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}
