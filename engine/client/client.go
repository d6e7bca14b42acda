package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/wire"
)

var (
	// ErrClosed is returned by calls on a closed Client.
	ErrClosed = errors.New("client closed")
	// ErrConnLost fails the requests in flight on a connection that broke; they may or may not have been applied.
	ErrConnLost = errors.New("connection lost")
)

// Defaults for Options.
const (
	DefaultConns       = 2
	DefaultDialTimeout = 5 * time.Second
)

// maxPooledBuffer keeps one large request from pinning its encoding buffer in the pool.
const maxPooledBuffer = 64 << 10

// Options configure a Client. The zero value is usable.
type Options struct {
	Conns       int           // connections in the pool (default 2)
	DialTimeout time.Duration // bounds each dial and handshake (default 5s)
	TLS         *tls.Config   // nil: plain TCP
	Name        string        // sent in Hello (default: the program's name)
	MaxFrame    int           // largest response payload accepted (default wire.DefaultMaxFrame)
}

// Client is a pool of pipelined connections to one member's data port. It is safe for concurrent use.
type Client struct {
	addr    string
	opts    Options
	welcome wire.Welcome
	slots   []slot
	next    atomic.Uint64
	closed  atomic.Bool
}

// slot holds one pool connection, replaced when it breaks.
type slot struct {
	cur  atomic.Pointer[conn]
	dial chan struct{} // one-token lock held while (re)dialling, so waiting honours ctx
}

// Dial connects and handshakes every pool connection.
func Dial(ctx context.Context, addr string, opts Options) (*Client, error) {
	if opts.Conns <= 0 {
		opts.Conns = DefaultConns
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.MaxFrame <= 0 {
		opts.MaxFrame = wire.DefaultMaxFrame
	}
	if opts.Name == "" {
		opts.Name = filepath.Base(os.Args[0])
	}
	c := &Client{addr: addr, opts: opts, slots: make([]slot, opts.Conns)}
	for i := range c.slots {
		c.slots[i].dial = make(chan struct{}, 1)
		s, err := c.dialConn(ctx)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.slots[i].cur.Store(s)
	}
	c.welcome = c.slots[0].cur.Load().welcome
	return c, nil
}

// Welcome is what the server answered the first connection's handshake.
func (c *Client) Welcome() wire.Welcome { return c.welcome }

// Addr is the data address the Client talks to.
func (c *Client) Addr() string { return c.addr }

// Close fails every request in flight with ErrClosed and closes the connections.
func (c *Client) Close() error {
	c.closed.Store(true)
	for i := range c.slots {
		if s := c.slots[i].cur.Load(); s != nil {
			s.close()
		}
	}
	return nil
}

// Do sends req as one transaction and waits for its response. A refusal by the server is returned as its *wire.Error
// (match it with errors.Is(err, wire.ErrNoSuchDatabase) and the like). If ctx ends first the request is abandoned: it
// may still be applied, and its late response is dropped.
func (c *Client) Do(ctx context.Context, req *wire.Request) (*wire.Response, error) {
	if len(req.Ops) > wire.MaxOps {
		return nil, fmt.Errorf("request on %s: %d ops, limit %d: %w", req.DB, len(req.Ops), wire.MaxOps, wire.ErrTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("request to %s: %w", c.addr, err)
	}
	s, err := c.conn(ctx)
	if err != nil {
		return nil, err
	}
	bufp := bufferPool.Get().(*[]byte)
	payload := wire.EncodeRequest((*bufp)[:0], req)
	var reply []byte
	if len(payload) > s.maxWrite {
		err = fmt.Errorf("request on %s: %d bytes, %s accepts at most %d: %w", req.DB, len(payload), c.addr, s.maxWrite, wire.ErrTooLarge)
	} else {
		reply, err = s.roundTrip(ctx, payload)
	}
	if cap(payload) <= maxPooledBuffer {
		*bufp = payload
		bufferPool.Put(bufp)
	}
	if err != nil {
		return nil, err
	}
	resp, err := wire.DecodeResponse(reply)
	if err != nil {
		return nil, fmt.Errorf("response from %s: %w", c.addr, err)
	}
	if resp.Err != nil {
		return nil, resp.Err
	}
	if len(resp.Results) != len(req.Ops) {
		return nil, fmt.Errorf("response from %s: %w: %d results for %d ops", c.addr, wire.ErrMalformed, len(resp.Results), len(req.Ops))
	}
	return &resp, nil
}

var bufferPool = sync.Pool{New: func() any { return new([]byte) }}

// conn picks the next pool connection, redialling it if it broke.
func (c *Client) conn(ctx context.Context) (*conn, error) {
	sl := &c.slots[c.next.Add(1)%uint64(len(c.slots))]
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
	if c.closed.Load() {
		return nil, ErrClosed
	}
	s, err := c.dialConn(ctx)
	if err != nil {
		return nil, err
	}
	sl.cur.Store(s)
	// Close stores closed before closing the slots: either it saw s, or s is closed here.
	if c.closed.Load() {
		s.close()
		return nil, ErrClosed
	}
	return s, nil
}

func (c *Client) dialConn(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	nc, err := wire.Dial(ctx, c.addr, c.opts.TLS)
	if err != nil {
		return nil, err
	}
	wc := wire.NewConn(nc, c.opts.MaxFrame)
	hello := wire.Hello{
		Protocol:    wire.ProtocolVersion,
		MinProtocol: wire.MinProtocolVersion,
		Software:    software(),
		Purpose:     wire.PurposeClient,
		Name:        c.opts.Name,
	}
	w, err := wire.ClientHandshake(ctx, wc, hello)
	if err != nil {
		wc.Close()
		return nil, err
	}
	s := &conn{
		addr:     c.addr,
		wc:       wc,
		welcome:  w,
		maxWrite: int(w.MaxFrame),
		pending:  make(map[uint64]*call),
		done:     make(chan struct{}),
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

func (s *conn) roundTrip(ctx context.Context, payload []byte) ([]byte, error) {
	cl := callPool.Get().(*call)
	s.mu.Lock()
	if s.pending == nil {
		err := s.err
		s.mu.Unlock()
		callPool.Put(cl)
		return nil, err
	}
	s.nextID++
	id := s.nextID
	s.pending[id] = cl
	s.mu.Unlock()
	if err := s.wc.WriteFrame(wire.Frame{Kind: wire.KindRequest, ReqID: id, Payload: payload}); err != nil {
		// fail delivers the error to every pending call, this one included.
		s.fail(fmt.Errorf("connection to %s: %w: %w", s.addr, ErrConnLost, err))
	}
	select {
	case r := <-cl.reply:
		callPool.Put(cl)
		return r.payload, r.err
	case <-ctx.Done():
		s.mu.Lock()
		_, waiting := s.pending[id]
		delete(s.pending, id)
		s.mu.Unlock()
		if waiting {
			callPool.Put(cl) // nobody will send on it
		} // otherwise a reply is on its way into cl, which is left to the garbage collector
		return nil, fmt.Errorf("request to %s: %w", s.addr, ctx.Err())
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
			if err != nil {
				s.fail(fmt.Errorf("connection to %s: %w: error frame: %w", s.addr, ErrConnLost, err))
			} else {
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
