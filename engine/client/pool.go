package client

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// pool is the set of pipelined connections to one member. When the Client moves to another member the old pool is
// retired: it closes once the calls still using it have finished.
type pool struct {
	c       *Client
	addr    string
	welcome wire.Welcome
	slots   []slot
	next    atomic.Uint64
	// refs counts the Client's reference while the pool is current, plus one per call using it; at zero the pool is
	// closed and can no longer be acquired.
	refs      atomic.Int64
	closeOnce sync.Once
}

// slot holds one pool connection, replaced when it breaks.
type slot struct {
	cur  atomic.Pointer[conn]
	dial chan struct{} // one-token lock held while (re)dialling, so waiting honours ctx
}

// dialPool connects and handshakes every connection of a pool to addr. The pool is not yet registered with the Client.
func (c *Client) dialPool(ctx context.Context, addr string) (*pool, error) {
	p := &pool{c: c, addr: addr, slots: make([]slot, c.opts.Conns)}
	p.refs.Store(1)
	for i := range p.slots {
		p.slots[i].dial = make(chan struct{}, 1)
		s, err := p.dialConn(ctx)
		if err != nil {
			p.closeConns()
			return nil, err
		}
		p.slots[i].cur.Store(s)
	}
	p.welcome = p.slots[0].cur.Load().welcome
	return p, nil
}

// acquire takes a reference for one call; it fails once the pool has been retired and drained.
func (p *pool) acquire() bool {
	for {
		n := p.refs.Load()
		if n == 0 {
			return false
		}
		if p.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference; the last one closes the pool, off the caller's path so its call is not delayed.
func (p *pool) release() {
	if p.refs.Add(-1) == 0 {
		go p.close()
	}
}

// close fails the calls in flight with ErrClosed, closes the connections and forgets the pool. Concurrent callers all
// wait until it is done.
func (p *pool) close() {
	p.closeOnce.Do(func() {
		p.closeConns()
		p.c.mu.Lock()
		delete(p.c.pools, p)
		p.c.mu.Unlock()
	})
}

func (p *pool) closeConns() {
	for i := range p.slots {
		if s := p.slots[i].cur.Load(); s != nil {
			s.close()
		}
	}
}

// conn picks the next pool connection, redialling it if it broke.
func (p *pool) conn(ctx context.Context) (*conn, error) {
	sl := &p.slots[p.next.Add(1)%uint64(len(p.slots))]
	if s := sl.cur.Load(); s != nil && !s.broken.Load() {
		return s, nil
	}
	select {
	case sl.dial <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-sl.dial }()
	if s := sl.cur.Load(); s != nil && !s.broken.Load() {
		return s, nil
	}
	if p.c.closed.Load() {
		return nil, ErrClosed
	}
	s, err := p.dialConn(ctx)
	if err != nil {
		return nil, err
	}
	sl.cur.Store(s)
	// Close stores closed before closing the pools: either it saw s, or s is closed here.
	if p.c.closed.Load() {
		s.close()
		return nil, ErrClosed
	}
	return s, nil
}

func (p *pool) dialConn(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.c.opts.DialTimeout)
	defer cancel()
	nc, err := wire.Dial(ctx, p.addr, p.c.opts.TLS)
	if err != nil {
		return nil, wire.ExplainTLSError(err, p.addr)
	}
	wc := wire.NewConn(nc, p.c.opts.MaxFrame)
	hello := wire.Hello{
		Protocol:    wire.ProtocolVersion,
		MinProtocol: wire.MinProtocolVersion,
		Software:    software(),
		Purpose:     wire.PurposeClient,
		Name:        p.c.opts.Name,
	}
	w, err := wire.ClientHandshake(ctx, wc, hello)
	if err != nil {
		wc.Close()
		return nil, wire.ExplainTLSError(err, p.addr)
	}
	s := &conn{
		addr:     p.addr,
		wc:       wc,
		welcome:  w,
		maxWrite: int(w.MaxFrame),
		pending:  make(map[uint64]*call),
		done:     make(chan struct{}),
		timeout:  p.c.opts.AttemptTimeout,
	}
	go s.readLoop()
	return s, nil
}

// software is the version of this module as linked into the program, for the server's logs.
var software = sync.OnceValue(func() string {
	const module = "github.com/mirrorkit/mirrorkit"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	if bi.Main.Path == module {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == module {
			return d.Version
		}
	}
	return ""
})

// conn is one pipelined connection: writers register a call under a fresh request id, one reader goroutine hands each
// response to its call.
type conn struct {
	addr     string
	wc       *wire.Conn
	welcome  wire.Welcome
	maxWrite int
	broken   atomic.Bool
	done     chan struct{} // closed when readLoop returns
	timeout  time.Duration // Options.AttemptTimeout

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]*call // nil once failed
	err     error            // why the connection failed
}

type call struct {
	reply chan reply // buffered: the reader never blocks on a caller
}

type reply struct {
	payload []byte
	err     error
}

var callPool = sync.Pool{New: func() any { return &call{reply: make(chan reply, 1)} }}

// errNotExecuted marks the failure of calls the member said it did not execute (it was shutting down).
var errNotExecuted = errors.New("not executed")

// roundTrip sends payload and waits for its response. sent reports whether the request may have reached the server:
// when it is false the request was certainly not executed.
func (s *conn) roundTrip(ctx context.Context, payload []byte) (resp []byte, sent bool, err error) {
	cl := callPool.Get().(*call)
	s.mu.Lock()
	if s.pending == nil {
		err := s.err
		s.mu.Unlock()
		callPool.Put(cl)
		return nil, false, err
	}
	s.nextID++
	id := s.nextID
	s.pending[id] = cl
	s.mu.Unlock()
	if err := s.wc.WriteFrame(wire.Frame{Kind: wire.KindRequest, ReqID: id, Payload: payload}); err != nil {
		// The frame was not queued. fail delivers an error to every pending call, this one included.
		s.fail(fmt.Errorf("connection to %s: %w: %w", s.addr, ErrConnLost, err))
		r := <-cl.reply
		callPool.Put(cl)
		return nil, false, r.err
	}
	var noResponse <-chan time.Time
	if s.timeout > 0 {
		t := time.NewTimer(s.timeout)
		defer t.Stop()
		noResponse = t.C
	}
	select {
	case r := <-cl.reply:
		callPool.Put(cl)
		return r.payload, !errors.Is(r.err, errNotExecuted), r.err
	case <-noResponse:
		// The member is hung or cut off: break the connection (every call in flight on it fails the same way).
		s.fail(fmt.Errorf("connection to %s: %w: %w within %s", s.addr, ErrConnLost, errNoResponse, s.timeout))
		r := <-cl.reply
		callPool.Put(cl)
		return nil, true, r.err
	case <-ctx.Done():
		s.mu.Lock()
		_, waiting := s.pending[id]
		delete(s.pending, id)
		s.mu.Unlock()
		if waiting {
			callPool.Put(cl) // nobody will send on it
		} // otherwise a reply is on its way into cl, which is left to the garbage collector
		return nil, true, fmt.Errorf("request to %s: %w", s.addr, ctx.Err())
	}
}

func (s *conn) readLoop() {
	defer close(s.done)
	for {
		f, err := s.wc.ReadFrame()
		if err != nil {
			s.fail(fmt.Errorf("connection to %s: %w: %w", s.addr, ErrConnLost, err))
			return
		}
		switch f.Kind {
		case wire.KindResponse:
			s.mu.Lock()
			cl := s.pending[f.ReqID]
			delete(s.pending, f.ReqID)
			s.mu.Unlock()
			if cl != nil { // nil: the caller gave up, and the late response is dropped
				cl.reply <- reply{payload: f.Payload}
			}
		case wire.KindPing:
			if err := s.wc.WriteFrame(wire.Frame{Kind: wire.KindPong, ReqID: f.ReqID}); err != nil {
				s.fail(fmt.Errorf("connection to %s: %w: %w", s.addr, ErrConnLost, err))
				return
			}
		case wire.KindPong:
		case wire.KindError:
			e, err := wire.DecodeError(f.Payload)
			switch {
			case err != nil:
				s.fail(fmt.Errorf("connection to %s: %w: error frame: %w", s.addr, ErrConnLost, err))
			case e.Code == wire.CodeShuttingDown:
				// Sent once every request the member executed was answered: the calls still waiting were not executed.
				s.fail(fmt.Errorf("connection to %s: %w: %w: %w", s.addr, ErrConnLost, errNotExecuted, e))
			default:
				s.fail(fmt.Errorf("connection to %s: %w: closed by the server: %w", s.addr, ErrConnLost, e))
			}
			return
		default:
			s.fail(fmt.Errorf("connection to %s: %w: %w: unexpected %s frame", s.addr, ErrConnLost, wire.ErrMalformed, f.Kind))
			return
		}
	}
}

// fail breaks the connection once: every pending call gets err, later calls get it too, and the pool redials.
func (s *conn) fail(err error) {
	s.mu.Lock()
	pending := s.pending
	if pending != nil {
		s.err = err
		s.pending = nil
		s.broken.Store(true)
	}
	s.mu.Unlock()
	for _, cl := range pending {
		cl.reply <- reply{err: err}
	}
	if pending != nil {
		s.wc.Close()
	}
}

// close fails the calls in flight with ErrClosed and waits for the reader to finish.
func (s *conn) close() {
	s.fail(fmt.Errorf("connection to %s: %w", s.addr, ErrClosed))
	<-s.done
}
