package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/wire"
)

func dialMirror(tb testing.TB, addrs []string, opts Options) *Client {
	tb.Helper()
	c, err := DialMirror(testContext(tb), addrs, opts)
	if err != nil {
		tb.Fatalf("dial mirror: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func notPrimary(redirect string) *wire.Error {
	return &wire.Error{Code: wire.CodeNotPrimary, Message: "member is not primary", Redirect: redirect}
}

// deadAddr is an address where nothing listens.
func deadAddr(tb testing.TB) string {
	tb.Helper()
	ts := startServer(tb)
	ts.close()
	return ts.addr()
}

func TestRefusedRequestMovesToAnotherMember(t *testing.T) {
	tests := []struct {
		name     string
		refusal  func(b string) *wire.Error
		withList bool // B is in the address list; otherwise only A is known
	}{
		{"not primary with redirect", func(b string) *wire.Error { return notPrimary(b) }, false},
		{"not primary without redirect", func(string) *wire.Error { return notPrimary("") }, true},
		{"shutting down", func(string) *wire.Error { return &wire.Error{Code: wire.CodeShuttingDown} }, true},
		{"in trouble", func(string) *wire.Error { return &wire.Error{Code: wire.CodeInTrouble} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := startServer(t), startServer(t)
			a.refuse(tt.refusal(b.addr()))
			addrs := []string{a.addr()}
			if tt.withList {
				addrs = append(addrs, b.addr())
			}
			c := dialMirror(t, addrs, Options{})
			if err := c.Set(testContext(t), "app", `^M(1)`, []byte("v")); err != nil {
				t.Fatalf("set: %v", err)
			}
			if got := c.Current(); got != b.addr() {
				t.Fatalf("Current() = %s, want %s", got, b.addr())
			}
			if v, ok := b.value(t, `^M(1)`); !ok || string(v) != "v" {
				t.Fatalf("B holds %q, %v; want \"v\"", v, ok)
			}
			if n := a.executed.Load(); n != 0 {
				t.Fatalf("A executed %d requests", n)
			}
		})
	}
}

// A member that shuts down says that the calls it did not answer were not executed: even one that is not idempotent is
// sent to another member, not failed with an unknown outcome.
func TestGoAwayMovesUnansweredCallsToAnotherMember(t *testing.T) {
	a, b := startServer(t), startServer(t)
	b.releaseSlow()
	c := dialMirror(t, []string{a.addr(), b.addr()}, Options{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Incr(testContext(t), dbSlow, `^G(1)`, "1")
		done <- err
	}()
	a.waitSlow(t, 1) // held by A, never answered
	a.goAway()
	if err := <-done; err != nil {
		t.Fatalf("incr after the member went away: %v", err)
	}
	if got := c.Current(); got != b.addr() {
		t.Fatalf("Current() = %s, want %s", got, b.addr())
	}
	if v, ok := b.value(t, `^G(1)`); !ok || string(v) != "1" {
		t.Fatalf("B holds %q, %v; want \"1\"", v, ok)
	}
}

// TestPlannedFailover flips the primary role from A to B under load, as a planned failover does: A holds new requests,
// B starts serving, A answers the held and later requests with NotPrimary redirecting to B.
func TestPlannedFailover(t *testing.T) {
	a, b := startServer(t), startServer(t)
	b.refuse(notPrimary(a.addr()))
	c := dialMirror(t, []string{a.addr(), b.addr()}, Options{})
	const goroutines, warmUp, afterFlip = 32, 10, 20
	warm := make(chan struct{}, goroutines)
	flipped := make(chan struct{})
	refs := make([][]string, goroutines)
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			ctx := testContext(t)
			isWarm := false
			defer func() {
				if !isWarm {
					warm <- struct{}{}
				}
			}()
			for i, since := 0, 0; since < afterFlip; i++ {
				if i == warmUp {
					warm <- struct{}{}
					isWarm = true
				}
				select {
				case <-flipped:
					since++
				default:
				}
				ref := fmt.Sprintf(`^F(%d,%d)`, g, i)
				if _, err := c.Incr(ctx, "app", ref, "1"); err != nil {
					errs <- fmt.Errorf("incr %s: %w", ref, err)
					return
				}
				refs[g] = append(refs[g], ref)
			}
		})
	}
	for range goroutines {
		<-warm
	}
	a.role.Lock()
	b.refuse(nil)
	a.refusal = notPrimary(b.addr())
	a.role.Unlock()
	close(flipped)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	var calls int64
	for _, rs := range refs {
		calls += int64(len(rs))
		for _, ref := range rs {
			va, onA := a.value(t, ref)
			vb, onB := b.value(t, ref)
			if onA == onB || onA && string(va) != "1" || onB && string(vb) != "1" {
				t.Fatalf("%s: A holds %q (%v), B holds %q (%v); want \"1\" on exactly one", ref, va, onA, vb, onB)
			}
		}
	}
	if ea, eb := a.executed.Load(), b.executed.Load(); ea+eb != calls || ea < goroutines*warmUp || eb < goroutines*afterFlip {
		t.Fatalf("A executed %d and B %d requests for %d calls", ea, eb, calls)
	}
	if got := c.Current(); got != b.addr() {
		t.Fatalf("Current() = %s, want %s", got, b.addr())
	}
	if n := b.accepted.Load(); n != DefaultConns {
		t.Fatalf("B accepted %d connections, want %d: one re-discovery", n, DefaultConns)
	}
	a.waitDisconnected(t, DefaultConns) // the old pool closes once drained
}

func TestConcurrentRefusalsShareOneRediscovery(t *testing.T) {
	a, b := startServer(t), startServer(t)
	a.refuse(notPrimary(b.addr()))
	c := dialMirror(t, []string{a.addr()}, Options{})
	const goroutines = 64
	start := make(chan struct{})
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			<-start
			if err := c.Set(testContext(t), "app", fmt.Sprintf(`^S(%d)`, g), []byte("v")); err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := b.accepted.Load(); n != DefaultConns {
		t.Fatalf("B accepted %d connections, want %d", n, DefaultConns)
	}
}

func TestConnectionLostInFlight(t *testing.T) {
	tests := []struct {
		name     string
		goesAway bool // A stops listening: retries must move to B
	}{
		{"member stays up", false},
		{"member goes away", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := startServer(t), startServer(t)
			b.releaseSlow()
			c := dialMirror(t, []string{a.addr(), b.addr()}, Options{Conns: 1})
			ctx := testContext(t)
			calls := []struct {
				name    string
				call    func() error
				retried bool
			}{
				{"get", func() error { _, _, err := c.Get(ctx, dbSlow, `^K(1)`); return err }, true},
				{"set", func() error { return c.Set(ctx, dbSlow, `^K(2)`, []byte("v")) }, true},
				{"query", func() error { _, _, err := c.Query(ctx, dbSlow, `^K`, "", 0); return err }, true},
				{"incr", func() error { _, err := c.Incr(ctx, dbSlow, `^K(3)`, "1"); return err }, false},
				{"txn with cas", func() error {
					_, err := c.Txn(dbSlow).Set(`^K(4)`, []byte("v")).CAS(`^K(5)`, nil, false, []byte("v")).Commit(ctx)
					return err
				}, false},
			}
			errs := make([]chan error, len(calls))
			for i, tc := range calls {
				errs[i] = make(chan error, 1)
				go func() { errs[i] <- tc.call() }()
			}
			a.waitSlow(t, len(calls))
			if tt.goesAway {
				a.ln.Close()
			}
			a.dropConns()
			for i, tc := range calls {
				if tc.retried {
					continue
				}
				if err := <-errs[i]; !errors.Is(err, ErrConnLost) || !strings.Contains(err.Error(), a.addr()) {
					t.Errorf("%s: got %v, want a lost connection naming %s", tc.name, err, a.addr())
				}
			}
			a.releaseSlow()
			for i, tc := range calls {
				if !tc.retried {
					continue
				}
				if err := <-errs[i]; err != nil {
					t.Errorf("%s: %v", tc.name, err)
				}
			}
			want := a
			if tt.goesAway {
				want = b
			}
			if got := c.Current(); got != want.addr() {
				t.Fatalf("Current() = %s, want %s", got, want.addr())
			}
			if v, ok := want.value(t, `^K(2)`); !ok || string(v) != "v" {
				t.Fatalf("retried set left %q, %v", v, ok)
			}
			if _, ok := b.value(t, `^K(3)`); ok {
				t.Fatal("incr was re-sent to B")
			}
		})
	}
}

func TestRedirectLoopGivesUp(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		timeout time.Duration // of the call's context; 0: none
		want    error
	}{
		{"retry timeout", Options{RetryTimeout: 100 * time.Millisecond}, 0, ErrNoPrimary},
		{"context deadline", Options{}, 100 * time.Millisecond, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := startServer(t), startServer(t)
			a.refuse(notPrimary(b.addr()))
			b.refuse(notPrimary(a.addr()))
			c := dialMirror(t, []string{a.addr()}, tt.opts)
			ctx := testContext(t)
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			err := c.Set(ctx, "app", `^L`, []byte("v"))
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrNoPrimary) || !errors.Is(err, wire.ErrNotPrimary) {
				t.Fatalf("got %v, want %v and ErrNoPrimary wrapping ErrNotPrimary", err, tt.want)
			}
			if msg := err.Error(); !strings.Contains(msg, a.addr()) || !strings.Contains(msg, b.addr()) {
				t.Fatalf("error %q does not name both %s and %s", msg, a.addr(), b.addr())
			}
			// Both members were asked, and backoff between rounds keeps the loop from hammering them (on a loaded machine fewer
			// rounds fit in the time, so only the upper bound depends on timing).
			if n := a.requests.Load() + b.requests.Load(); n < 2 || n > 40 {
				t.Fatalf("members saw %d requests in the loop", n)
			}
		})
	}
}

func TestRetiredPoolDrains(t *testing.T) {
	a, b := startServer(t), startServer(t)
	c := dialMirror(t, []string{a.addr(), b.addr()}, Options{Conns: 1})
	ctx := testContext(t)
	held := make(chan error, 1)
	go func() {
		_, _, err := c.Get(ctx, dbSlow, `^H`)
		held <- err
	}()
	a.waitSlow(t, 1)
	a.refuse(notPrimary(b.addr()))
	if err := c.Set(ctx, "app", `^Y`, []byte("v")); err != nil {
		t.Fatalf("set: %v", err)
	}
	if got := c.Current(); got != b.addr() {
		t.Fatalf("Current() = %s, want %s", got, b.addr())
	}
	a.releaseSlow()
	if err := <-held; err != nil {
		t.Fatalf("request in flight on the old member: %v", err)
	}
	if n := a.executed.Load(); n != 1 {
		t.Fatalf("A executed %d requests, want the held one", n)
	}
	a.waitDisconnected(t, 1)
}

func TestDialMirror(t *testing.T) {
	live := startServer(t)
	dead1, dead2 := deadAddr(t), deadAddr(t)
	tests := []struct {
		name    string
		addrs   []string
		current string   // "" when dialling must fail
		errHas  []string // substrings of the error
	}{
		{"first answers", []string{live.addr(), dead1}, live.addr(), nil},
		{"skips a dead member", []string{dead1, live.addr()}, live.addr(), nil},
		{"duplicates and blanks", []string{" ", live.addr(), live.addr()}, live.addr(), nil},
		{"none answers", []string{dead1, dead2}, "", []string{dead1, dead2}},
		{"no address", []string{""}, "", []string{"no member address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DialMirror(testContext(t), tt.addrs, Options{Conns: 1})
			if tt.current == "" {
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				for _, s := range tt.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Fatalf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			if got := c.Current(); got != tt.current {
				t.Fatalf("Current() = %s, want %s", got, tt.current)
			}
		})
	}
}

func TestIdempotent(t *testing.T) {
	tests := []struct {
		kinds []wire.OpKind
		want  bool
	}{
		{[]wire.OpKind{wire.OpGet, wire.OpData, wire.OpOrder, wire.OpQuery}, true},
		{[]wire.OpKind{wire.OpSet, wire.OpKill, wire.OpGet}, true},
		{[]wire.OpKind{wire.OpIncr}, false},
		{[]wire.OpKind{wire.OpCAS}, false},
		{[]wire.OpKind{wire.OpSet, wire.OpIncr}, false},
	}
	for _, tt := range tests {
		req := &wire.Request{DB: "app"}
		for _, k := range tt.kinds {
			req.Ops = append(req.Ops, wire.Op{Kind: k})
		}
		if got := idempotent(req); got != tt.want {
			t.Errorf("idempotent(%v) = %v, want %v", tt.kinds, got, tt.want)
		}
	}
}

// TestHungMemberTimesOut: a member that does not answer within AttemptTimeout is left for another member: an idempotent
// request is re-sent there, a non-idempotent one fails with ErrConnLost (its outcome is unknown).
func TestHungMemberTimesOut(t *testing.T) {
	a, b := startServer(t), startServer(t)
	b.releaseSlow()
	c := dialMirror(t, []string{a.addr(), b.addr()}, Options{Conns: 1, AttemptTimeout: 100 * time.Millisecond})
	ctx := testContext(t)
	if err := c.Set(ctx, dbSlow, `^H(1)`, []byte("v")); err != nil {
		t.Fatalf("idempotent set on a hung member: %v", err)
	}
	if got := c.Current(); got != b.addr() {
		t.Fatalf("Current() = %s, want %s", got, b.addr())
	}
	if v, ok := b.value(t, `^H(1)`); !ok || string(v) != "v" {
		t.Fatalf("set re-sent to B left %q, %v", v, ok)
	}
	// Re-discovery skips A for a while: a hung member would cost another timeout at each attempt.
	if until := c.unresponsiveUntil(a.addr()); !time.Now().Before(until) {
		t.Fatalf("A is not skipped after hanging (until %s)", until)
	}
	if err := c.dialCandidate(ctx, c.current.Load(), []string{a.addr()}); err == nil || !strings.Contains(err.Error(), "skipped") {
		t.Fatalf("re-discovery towards the hung member: %v, want it skipped", err)
	}
	a.releaseSlow()

	c2 := dialMirror(t, []string{b.addr(), a.addr()}, Options{Conns: 1, AttemptTimeout: 100 * time.Millisecond})
	b.slow = make(chan struct{}, 16)
	b.release = make(chan struct{})
	_, err := c2.Incr(ctx, dbSlow, `^H(2)`, "1")
	if !errors.Is(err, ErrConnLost) || !errors.Is(err, errNoResponse) {
		t.Fatalf("incr on a hung member: got %v, want a lost connection without response", err)
	}
	close(b.release)
}

// TestOutcomeUnknownIsNotRefusal: a write the member journaled but could not acknowledge is re-sent only when idempotent.
func TestOutcomeUnknownIsNotRefusal(t *testing.T) {
	a := startServer(t)
	a.refuse(&wire.Error{Code: wire.CodeOutcomeUnknown, Message: "deposed"})
	c := dialMirror(t, []string{a.addr()}, Options{Conns: 1, RetryTimeout: 300 * time.Millisecond})
	ctx := testContext(t)
	if _, err := c.Incr(ctx, "app", `^U(1)`, "1"); !errors.Is(err, wire.ErrOutcomeUnknown) {
		t.Fatalf("incr: got %v, want the unknown outcome itself", err)
	}
	before := a.requests.Load()
	if err := c.Set(ctx, "app", `^U(2)`, []byte("v")); err == nil {
		t.Fatal("set succeeded against a member that never acknowledges")
	}
	if n := a.requests.Load() - before; n < 2 {
		t.Fatalf("idempotent set sent %d times, want it re-sent", n)
	}
}
