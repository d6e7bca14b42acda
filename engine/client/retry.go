package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// outcome classifies one attempt to send a request.
type outcome uint8

const (
	outcomeDone        outcome = iota // a response, or an error to return as is
	outcomeRefused                    // the member refused it without executing it
	outcomeUnreachable                // not sent: the member could not be dialled
	outcomeNotSent                    // not sent: the connection had broken
	outcomeLost                       // sent, then the connection broke: the outcome is unknown
	outcomeHung                       // sent, and no response within the attempt timeout: unknown outcome, try another member
)

// refusal reports whether the member refused the request without executing it, because another member should.
func refusal(e *wire.Error) bool {
	switch e.Code {
	case wire.CodeNotPrimary, wire.CodeShuttingDown, wire.CodeInTrouble:
		return true
	}
	return false
}

// idempotent reports whether executing req twice leaves the same state as once, so that a request whose outcome is
// unknown may be sent again. Set and Kill are idempotent by value.
func idempotent(req *wire.Request) bool {
	for _, op := range req.Ops {
		switch op.Kind {
		case wire.OpGet, wire.OpData, wire.OpOrder, wire.OpQuery, wire.OpSet, wire.OpKill:
		default:
			return false
		}
	}
	return true
}

// retrier is the state of one call that is looking for a member to execute it.
type retrier struct {
	c       *Client
	db      string
	parent  context.Context
	ctx     context.Context // parent bounded by RetryTimeout
	cancel  context.CancelFunc
	backoff time.Duration
	round   map[string]bool // members that failed since the last backoff
	tried   []string        // every member that failed, for the final error
	last    error           // the latest failure
}

func (c *Client) newRetrier(ctx context.Context, db string) *retrier {
	rctx, cancel := context.WithTimeout(ctx, c.opts.RetryTimeout)
	return &retrier{
		c:       c,
		db:      db,
		parent:  ctx,
		ctx:     rctx,
		cancel:  cancel,
		backoff: c.opts.RetryBackoff,
		round:   map[string]bool{},
	}
}

// next records the failure err of an attempt on p and prepares the next attempt: it moves the Client to another member
// when p's refused or could not be reached, and backs off once every member of the round has failed.
func (r *retrier) next(p *pool, out outcome, err error) error {
	r.last = err
	r.round[p.addr] = true
	if !slices.Contains(r.tried, p.addr) {
		r.tried = append(r.tried, p.addr)
	}
	if r.ctx.Err() != nil {
		return r.fail()
	}
	if out == outcomeHung {
		r.c.markUnresponsive(p.addr)
	}
	if out == outcomeRefused || out == outcomeUnreachable || out == outcomeHung {
		var redirect string
		if we, ok := errors.AsType[*wire.Error](err); ok && we.Code == wire.CodeNotPrimary {
			redirect = we.Redirect
		}
		if serr := r.c.switchFrom(r.ctx, p, redirect); serr != nil {
			if r.ctx.Err() != nil {
				return r.fail()
			}
			r.last = fmt.Errorf("%w; looking for another member: %w", err, serr)
		}
	}
	if !r.round[r.c.Current()] {
		return nil
	}
	clear(r.round)
	t := time.NewTimer(r.backoff)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.ctx.Done():
		return r.fail()
	}
	r.backoff = max(r.backoff, min(2*r.backoff, MaxRetryBackoff))
	return nil
}

// fail is the error of a call that gave up: it names the members tried and wraps ErrNoPrimary, the cause when the
// caller's context ended, and the last failure.
func (r *retrier) fail() error {
	tried := strings.Join(r.tried, ", ")
	if err := r.parent.Err(); err != nil {
		return fmt.Errorf("request on %s: %w (tried %s): %w: %w", r.db, ErrNoPrimary, tried, err, r.last)
	}
	return fmt.Errorf("request on %s: %w within %s (tried %s): %w", r.db, ErrNoPrimary, r.c.opts.RetryTimeout, tried, r.last)
}

// switchOp is one re-discovery; calls that fail on the same member meanwhile wait for it instead of starting their own.
type switchOp struct {
	done chan struct{}
	err  error // set before done is closed
}

// switchFrom makes another member current in place of from: the redirect if given, else the other known addresses in
// turn, the first that answers. It does nothing if from is no longer current, and returns an error when no candidate
// answered, leaving from current.
func (c *Client) switchFrom(ctx context.Context, from *pool, redirect string) error {
	c.mu.Lock()
	if c.current.Load() != from {
		c.mu.Unlock()
		return nil
	}
	// A re-discovery in progress is necessarily from the current pool, which is from.
	if op := c.switching; op != nil {
		c.mu.Unlock()
		select {
		case <-op.done:
			return op.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	op := &switchOp{done: make(chan struct{})}
	c.switching = op
	candidates := c.candidates(from.addr, redirect)
	c.mu.Unlock()

	op.err = c.dialCandidate(ctx, from, candidates)
	c.mu.Lock()
	c.switching = nil
	c.mu.Unlock()
	close(op.done)
	return op.err
}

// candidates lists where to look after from: the redirect first, then the known addresses following from, wrapping.
func (c *Client) candidates(from, redirect string) []string {
	var out []string
	if redirect != "" && redirect != from {
		out = append(out, redirect)
	}
	i := slices.Index(c.addrs, from)
	for k := 1; k <= len(c.addrs); k++ {
		a := c.addrs[(i+k)%len(c.addrs)]
		if a != from && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// dialCandidate installs a pool to the first candidate that answers as the current one and retires from.
func (c *Client) dialCandidate(ctx context.Context, from *pool, candidates []string) error {
	var errs joinedError
	for _, addr := range candidates {
		if until := c.unresponsiveUntil(addr); time.Now().Before(until) {
			// It just let a dial or a request time out: a hung member costs a timeout each time, so skip it for a while.
			errs = append(errs, fmt.Errorf("%s did not answer within the timeout moments ago; skipped until %s", addr, until.Format("15:04:05.000")))
			continue
		}
		p, err := c.dialPool(ctx, addr)
		if err != nil {
			if timedOut(err) && ctx.Err() == nil {
				c.markUnresponsive(addr)
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		c.mu.Lock()
		if c.closed.Load() {
			c.mu.Unlock()
			p.close()
			return ErrClosed
		}
		c.pools[p] = struct{}{}
		c.current.Store(p)
		if !slices.Contains(c.addrs, addr) {
			c.addrs = append(c.addrs, addr)
		}
		c.mu.Unlock()
		from.release() // the Client's reference: from closes once its calls in flight are done
		return nil
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("no other member answered: %w", errs)
}

// markUnresponsive records that addr let a dial or a request time out.
func (c *Client) markUnresponsive(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unresponsive == nil {
		c.unresponsive = map[string]time.Time{}
	}
	c.unresponsive[addr] = time.Now().Add(2 * c.opts.DialTimeout)
}

func (c *Client) unresponsiveUntil(addr string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unresponsive[addr]
}

// timedOut reports whether err is a timeout (as opposed to, say, a refused connection, which is cheap to try again).
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// joinedError joins errors on one line and matches each of them with errors.Is and errors.As.
type joinedError []error

func (e joinedError) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e joinedError) Unwrap() []error { return e }
