package arbiter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/version"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// ErrUnavailable is wrapped by a Client's errors when the arbiter cannot be reached or the connection to it is lost.
// A request whose connection was lost may or may not have been decided: the next Report's View shows the record.
var ErrUnavailable = errors.New("arbiter unavailable")

// Client is a failover member's connection to an arbiter. It reconnects by itself: a call that finds the connection
// lost dials again. Its methods are safe for concurrent use.
type Client struct {
	addr    string
	tlsConf *tls.Config
	token   string

	nextID  atomic.Uint64
	dialing chan struct{} // held by the one call dialing

	mu     sync.Mutex
	conn   *clientConn // nil after Close
	closed bool
}

// clientConn is one connection and its reader, which hands each answer to the call waiting for its request id.
type clientConn struct {
	wc   *wire.Conn
	done chan struct{} // closed when the reader stops
	err  error         // why it stopped; set before done is closed

	mu      sync.Mutex
	pending map[uint64]chan wire.Frame
}

// Dial connects to the arbiter at addr: over TLS when tlsConf is set (a client configuration, e.g.
// wire.TLSFiles.ClientConfig), presenting token otherwise when the arbiter requires one. It fails when the first
// connection fails, so a wrong address, TLS setting or token shows at once.
func Dial(ctx context.Context, addr string, tlsConf *tls.Config, token string) (*Client, error) {
	c := &Client{addr: addr, tlsConf: tlsConf, token: token, dialing: make(chan struct{}, 1)}
	cc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.conn = cc
	return c, nil
}

// Report sends r and returns the arbiter's view. A report is harmless to repeat, so one lost connection is retried at
// once on a new one.
func (c *Client) Report(ctx context.Context, r Report) (View, error) {
	f, err := c.call(ctx, KindReport, EncodeReport(nil, &r), true)
	if err == nil {
		err = c.expect(f, KindView)
	}
	if err != nil {
		return View{}, fmt.Errorf("report of member %s for mirror %s to arbiter %s: %w", r.Member, r.Mirror, c.addr, err)
	}
	v, err := DecodeView(f.Payload)
	if err != nil {
		return View{}, fmt.Errorf("arbiter %s: %w", c.addr, err)
	}
	return v, nil
}

// Takeover asks that the backup r.Member become primary in r.NewEpoch (= r.Epoch+1).
func (c *Client) Takeover(ctx context.Context, r TakeoverRequest) (Decision, error) {
	return c.decide(ctx, "takeover", r.Mirror, r.Member, KindTakeover, EncodeTakeover(nil, &r))
}

// Continue asks that the primary r.Member continue without its backup in r.Epoch.
func (c *Client) Continue(ctx context.Context, r ContinueRequest) (Decision, error) {
	return c.decide(ctx, "continue without backup", r.Mirror, r.Member, KindContinue, EncodeContinue(nil, &r))
}

// Rejoined tells the arbiter that the backup of the primary r.Member is Active again in r.Epoch.
func (c *Client) Rejoined(ctx context.Context, r RejoinedRequest) (Decision, error) {
	return c.decide(ctx, "backup rejoined", r.Mirror, r.Member, KindRejoined, EncodeRejoined(nil, &r))
}

// decide sends a request once: after a lost connection its outcome is unknown, and the caller learns the record from
// its next Report (or from the Decision of its next request).
func (c *Client) decide(ctx context.Context, what, mirror, member string, kind wire.Kind, payload []byte) (Decision, error) {
	f, err := c.call(ctx, kind, payload, false)
	if err == nil {
		err = c.expect(f, KindDecision)
	}
	if err != nil {
		return Decision{}, fmt.Errorf("%s by member %s for mirror %s at arbiter %s: %w", what, member, mirror, c.addr, err)
	}
	d, err := DecodeDecision(f.Payload)
	if err != nil {
		return Decision{}, fmt.Errorf("arbiter %s: %w", c.addr, err)
	}
	return d, nil
}

// Close ends the connection; later calls fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cc := c.conn
	c.conn = nil
	c.mu.Unlock()
	if cc != nil {
		cc.close()
	}
	return nil
}

// call sends one request and waits for its answer, on the current connection or a new one.
func (c *Client) call(ctx context.Context, kind wire.Kind, payload []byte, retry bool) (wire.Frame, error) {
	if err := ctx.Err(); err != nil {
		return wire.Frame{}, err
	}
	for attempt := 0; ; attempt++ {
		cc, err := c.connection(ctx)
		if err != nil {
			return wire.Frame{}, err
		}
		f, err := cc.roundTrip(ctx, c.nextID.Add(1), kind, payload)
		if err == nil {
			return f, nil
		}
		if c.isClosed() {
			return wire.Frame{}, ErrClosed
		}
		if !retry || attempt > 0 || ctx.Err() != nil || !errors.Is(err, ErrUnavailable) {
			return wire.Frame{}, err
		}
	}
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// connection returns a live connection, dialing when the last one was lost.
func (c *Client) connection(ctx context.Context) (*clientConn, error) {
	live := func() (*clientConn, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed {
			return nil, ErrClosed
		}
		if c.conn != nil && !c.conn.lost() {
			return c.conn, nil
		}
		return nil, nil
	}
	if cc, err := live(); cc != nil || err != nil {
		return cc, err
	}
	select {
	case c.dialing <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.dialing }()
	// Another call may have dialed while this one waited.
	if cc, err := live(); cc != nil || err != nil {
		return cc, err
	}
	cc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cc.close()
		return nil, ErrClosed
	}
	lost := c.conn
	c.conn = cc
	c.mu.Unlock()
	if lost != nil {
		lost.close()
	}
	return cc, nil
}

// dial connects and performs the arbiter handshake: the magic, a Hello with Purpose and an Auth frame, answered by a
// Welcome or a refusal.
func (c *Client) dial(ctx context.Context) (*clientConn, error) {
	nc, err := wire.Dial(ctx, c.addr, c.tlsConf)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, wire.ExplainTLSError(err, c.addr))
	}
	release := bindContext(ctx, nc)
	wc, err := c.handshake(nc)
	if err = release(err); err != nil {
		if wc != nil {
			wc.Close()
		} else {
			nc.Close()
		}
		if _, refused := errors.AsType[*wire.Error](err); refused {
			return nil, fmt.Errorf("%w with arbiter %s: %w", wire.ErrHandshake, c.addr, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnavailable,
			wire.ExplainTLSError(fmt.Errorf("%w with %s: %w", wire.ErrHandshake, c.addr, err), c.addr))
	}
	cc := &clientConn{wc: wc, done: make(chan struct{}), pending: map[uint64]chan wire.Frame{}}
	go cc.read()
	return cc, nil
}

func (c *Client) handshake(nc net.Conn) (*wire.Conn, error) {
	if _, err := nc.Write([]byte(wire.Magic)); err != nil {
		return nil, err
	}
	wc := wire.NewConn(nc, maxFrame)
	h := wire.Hello{Protocol: wire.ProtocolVersion, MinProtocol: wire.MinProtocolVersion, Software: version.Software, Purpose: Purpose}
	if err := wc.WriteFrame(wire.Frame{Kind: wire.KindHello, Payload: wire.EncodeHello(nil, &h)}); err != nil {
		return wc, err
	}
	if err := wc.WriteFrame(wire.Frame{Kind: KindAuth, Payload: EncodeAuth(nil, &Auth{Token: c.token})}); err != nil {
		return wc, err
	}
	f, err := wc.ReadFrame()
	if err != nil {
		return wc, err
	}
	switch f.Kind {
	case wire.KindWelcome:
		w, err := wire.DecodeWelcome(f.Payload)
		if err != nil {
			return wc, err
		}
		if w.Protocol < h.MinProtocol || w.Protocol > h.Protocol {
			return wc, fmt.Errorf("arbiter chose protocol %d outside %d..%d", w.Protocol, h.MinProtocol, h.Protocol)
		}
		return wc, nil
	case wire.KindError:
		e, err := wire.DecodeError(f.Payload)
		if err != nil {
			return wc, err
		}
		return wc, e
	default:
		return wc, fmt.Errorf("%w: expected welcome, got %s frame", wire.ErrMalformed, f.Kind)
	}
}

// expect checks that f answers with kind, turning a KindFailure into its error.
func (c *Client) expect(f wire.Frame, kind wire.Kind) error {
	switch f.Kind {
	case kind:
		return nil
	case KindFailure:
		e, err := wire.DecodeError(f.Payload)
		if err != nil {
			return err
		}
		return e
	}
	return fmt.Errorf("%w: expected a %s frame, got %s", wire.ErrMalformed, kind, f.Kind)
}

// read hands answers to their calls until the connection fails.
func (cc *clientConn) read() {
	for {
		f, err := cc.wc.ReadFrame()
		if err != nil {
			cc.err = err
			close(cc.done)
			cc.wc.Close()
			return
		}
		cc.mu.Lock()
		ch := cc.pending[f.ReqID]
		delete(cc.pending, f.ReqID)
		cc.mu.Unlock()
		if ch != nil {
			ch <- f
		}
	}
}

func (cc *clientConn) lost() bool {
	select {
	case <-cc.done:
		return true
	default:
		return false
	}
}

func (cc *clientConn) close() {
	cc.wc.Close()
	<-cc.done
}

func (cc *clientConn) roundTrip(ctx context.Context, id uint64, kind wire.Kind, payload []byte) (wire.Frame, error) {
	ch := make(chan wire.Frame, 1)
	cc.mu.Lock()
	cc.pending[id] = ch
	cc.mu.Unlock()
	forget := func() {
		cc.mu.Lock()
		delete(cc.pending, id)
		cc.mu.Unlock()
	}
	if err := cc.wc.WriteFrame(wire.Frame{Kind: kind, ReqID: id, Payload: payload}); err != nil {
		forget()
		return wire.Frame{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	select {
	case f := <-ch:
		return f, nil
	case <-cc.done:
		// The answer may have arrived just before the connection failed.
		select {
		case f := <-ch:
			return f, nil
		default:
		}
		forget()
		return wire.Frame{}, fmt.Errorf("%w: connection lost: %w", ErrUnavailable, cc.err)
	case <-ctx.Done():
		forget()
		return wire.Frame{}, ctx.Err()
	}
}

// bindContext bounds nc's I/O by ctx until the returned release is called with the outcome; release reports a failure
// caused by ctx as ctx's error and clears the deadline.
func bindContext(ctx context.Context, nc net.Conn) (release func(error) error) {
	if d, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(d) // a failure here surfaces as the next read or write failing
	}
	stop := context.AfterFunc(ctx, func() {
		_ = nc.SetDeadline(time.Unix(1, 0)) // unblocks pending I/O
	})
	return func(err error) error {
		if !stop() {
			// The callback ran: nc's deadline is in the past, so nc is unusable.
			return ctx.Err()
		}
		if err != nil {
			if _, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
				return context.DeadlineExceeded
			}
			return err
		}
		return nc.SetDeadline(time.Time{})
	}
}
