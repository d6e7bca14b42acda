package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
	// errNoResponse is wrapped (with ErrConnLost) when a member did not answer within Options.AttemptTimeout.
	errNoResponse = errors.New("no response")
	// ErrNoPrimary is returned when a call could not find a member to execute it before RetryTimeout or its context
	// ended; the error also wraps the last refusal or failure.
	ErrNoPrimary = errors.New("no primary found")
)

// Defaults for Options.
const (
	DefaultConns        = 2
	DefaultDialTimeout  = 5 * time.Second
	DefaultRetryTimeout = 10 * time.Second
	DefaultRetryBackoff = 10 * time.Millisecond
	// MaxRetryBackoff caps the doubling of RetryBackoff (unless RetryBackoff itself is larger): low enough that a client
	// finds a new primary within a tenth of a second of its takeover.
	MaxRetryBackoff = 100 * time.Millisecond
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

	// Retry policy for finding the primary. Zero values mean defaults.
	RetryTimeout time.Duration // total time one call may spend finding a primary and retrying (default 10s; the ctx deadline also bounds it)
	RetryBackoff time.Duration // first backoff between rounds over the address list (default 10ms, doubling up to 100ms)
	// AttemptTimeout bounds the wait for one response (0: none). A member that does not answer within it is taken for hung
	// or cut off: the connection is dropped and the call goes on to another member (re-sending only an idempotent
	// request), so a hung primary costs a pause, not a stuck application. Set it above the mirror's QoS timeout.
	AttemptTimeout time.Duration
}

// Client is a pool of pipelined connections to the member of a mirror it believes is primary. It is safe for
// concurrent use.
type Client struct {
	opts    Options
	current atomic.Pointer[pool] // never nil once dialled
	closed  atomic.Bool

	mu        sync.Mutex
	addrs     []string           // known member addresses, in the order they are tried
	pools     map[*pool]struct{} // the current pool and retired ones still draining
	switching *switchOp          // the re-discovery in progress, if any
	// unresponsive holds, per address, until when re-discovery skips a member that let a dial or a request time out.
	unresponsive map[string]time.Time
}

// DialMirror takes the data addresses of one or more members of a mirror and connects to the first that answers;
// requests go to the member the Client currently believes is primary. When a request is refused with NotPrimary,
// ShuttingDown or InTrouble, or the connection to the current member fails before the request was sent, the Client
// follows the refusal's redirect if given (even to an address not in addrs), else tries the other known addresses in
// turn with backoff, and re-sends: across a planned failover the application sees a pause, not an error. A request
// whose connection broke after it was sent has an unknown outcome and is re-sent only if it is idempotent (reads, Set,
// Kill); one containing Incr or CAS returns the error, wrapping ErrConnLost.
//
// Dialling makes one pass over addrs: if no member answers, the error names each address and why it failed.
func DialMirror(ctx context.Context, addrs []string, opts Options) (*Client, error) {
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
		opts.Name = programName()
	}
	if opts.RetryTimeout <= 0 {
		opts.RetryTimeout = DefaultRetryTimeout
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = DefaultRetryBackoff
	}
	c := &Client{opts: opts, pools: map[*pool]struct{}{}}
	for _, a := range addrs {
		if a = strings.TrimSpace(a); a != "" && !slices.Contains(c.addrs, a) {
			c.addrs = append(c.addrs, a)
		}
	}
	if len(c.addrs) == 0 {
		return nil, errors.New("dial mirror: no member address given")
	}
	var errs joinedError
	for _, a := range c.addrs {
		p, err := c.dialPool(ctx, a)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		c.pools[p] = struct{}{}
		c.current.Store(p)
		return c, nil
	}
	if len(errs) == 1 {
		return nil, errs[0]
	}
	return nil, fmt.Errorf("dial mirror %s: no member answered: %w", strings.Join(c.addrs, ", "), errs)
}

// programName is sent in Hello when Options.Name is empty.
func programName() string { return filepath.Base(os.Args[0]) }

// Dial connects to one member: it is DialMirror with a single address, so redirects are followed from it too.
func Dial(ctx context.Context, addr string, opts Options) (*Client, error) {
	return DialMirror(ctx, []string{addr}, opts)
}

// Welcome is what the current member answered the handshake.
func (c *Client) Welcome() wire.Welcome { return c.current.Load().welcome }

// Current is the data address requests go to now.
func (c *Client) Current() string { return c.current.Load().addr }

// Addr is the data address the Client talks to now; it is the same as Current.
func (c *Client) Addr() string { return c.Current() }

// Close fails every request in flight with ErrClosed and closes the connections.
func (c *Client) Close() error {
	c.closed.Store(true)
	c.mu.Lock()
	pools := make([]*pool, 0, len(c.pools))
	for p := range c.pools {
		pools = append(pools, p)
	}
	c.mu.Unlock()
	for _, p := range pools {
		p.close()
	}
	return nil
}

// Do sends req as one transaction and waits for its response, moving to another member of the mirror when the current
// one refuses it (see DialMirror). A refusal by the server is returned as its *wire.Error (match it with
// errors.Is(err, wire.ErrNoSuchDatabase) and the like). If ctx ends first the request is abandoned: it may still be
// applied, and its late response is dropped.
func (c *Client) Do(ctx context.Context, req *wire.Request) (*wire.Response, error) {
	if len(req.Ops) > wire.MaxOps {
		return nil, fmt.Errorf("request on %s: %d ops, limit %d: %w", req.DB, len(req.Ops), wire.MaxOps, wire.ErrTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("request to %s: %w", c.Current(), err)
	}
	bufp := bufferPool.Get().(*[]byte)
	payload := wire.EncodeRequest((*bufp)[:0], req)
	resp, err := c.send(ctx, req, payload)
	if cap(payload) <= maxPooledBuffer {
		*bufp = payload
		bufferPool.Put(bufp)
	}
	return resp, err
}

var bufferPool = sync.Pool{New: func() any { return new([]byte) }}

// send tries the current member, and on a failure that allows it, finds another and tries again.
func (c *Client) send(ctx context.Context, req *wire.Request, payload []byte) (*wire.Response, error) {
	var r *retrier
	for {
		p, err := c.acquire()
		if err != nil {
			return nil, err
		}
		resp, out, err := c.attempt(ctx, p, req, payload)
		p.release()
		switch {
		case out == outcomeDone && (err == nil || r == nil || ctx.Err() == nil):
			return resp, err
		case out == outcomeDone:
			// ctx ended while retrying: say where the call looked for a primary.
			return nil, r.fail()
		case (out == outcomeLost || out == outcomeHung) && !idempotent(req):
			return nil, err
		}
		if r == nil {
			r = c.newRetrier(ctx, req.DB)
			defer r.cancel()
		}
		if err := r.next(p, out, err); err != nil {
			return nil, err
		}
	}
}

// acquire returns the current pool with a reference taken for one call.
func (c *Client) acquire() (*pool, error) {
	for {
		if c.closed.Load() {
			return nil, ErrClosed
		}
		// A pool that fails to be acquired was retired and drained after it was loaded: its successor is current.
		if p := c.current.Load(); p.acquire() {
			return p, nil
		}
	}
}

// attempt sends payload once to p's member and classifies the outcome.
func (c *Client) attempt(ctx context.Context, p *pool, req *wire.Request, payload []byte) (*wire.Response, outcome, error) {
	s, err := p.conn(ctx)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return nil, outcomeDone, err
		}
		return nil, outcomeUnreachable, err
	}
	if len(payload) > s.maxWrite {
		return nil, outcomeDone, fmt.Errorf("request on %s: %d bytes, %s accepts at most %d: %w", req.DB, len(payload), p.addr, s.maxWrite, wire.ErrTooLarge)
	}
	reply, sent, err := s.roundTrip(ctx, payload)
	switch {
	case err == nil:
	case ctx.Err() != nil || errors.Is(err, ErrClosed):
		return nil, outcomeDone, err
	case !sent && errors.Is(err, errNotExecuted):
		return nil, outcomeRefused, err // the member is shutting down: another one executes it
	case !sent:
		return nil, outcomeNotSent, err
	case errors.Is(err, errNoResponse):
		return nil, outcomeHung, err
	default:
		return nil, outcomeLost, err
	}
	resp, err := wire.DecodeResponse(reply)
	if err != nil {
		return nil, outcomeDone, fmt.Errorf("response from %s: %w", p.addr, err)
	}
	if resp.Err != nil {
		if refusal(resp.Err) {
			return nil, outcomeRefused, resp.Err
		}
		if resp.Err.Code == wire.CodeOutcomeUnknown {
			return nil, outcomeLost, resp.Err
		}
		return nil, outcomeDone, resp.Err
	}
	if len(resp.Results) != len(req.Ops) {
		return nil, outcomeDone, fmt.Errorf("response from %s: %w: %d results for %d ops", p.addr, wire.ErrMalformed, len(resp.Results), len(req.Ops))
	}
	return &resp, outcomeDone, nil
}
