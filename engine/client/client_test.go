package client

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func dial(tb testing.TB, ts *testServer, opts Options) *Client {
	tb.Helper()
	c, err := Dial(testContext(tb), ts.addr(), opts)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func TestDialWelcome(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts, Options{Name: "app"})
	if w := c.Welcome(); w.Member != "t1" || w.AdminAddr != "127.0.0.1:1" || w.Protocol != wire.ProtocolVersion || w.MaxFrame != wire.DefaultMaxFrame {
		t.Fatalf("welcome %+v", w)
	}
}

func TestDialErrorNamesAddress(t *testing.T) {
	ts := startServer(t)
	addr := ts.addr()
	ts.close()
	_, err := Dial(testContext(t), addr, Options{Conns: 1})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("got %v, want an error naming %s", err, addr)
	}
}

func TestPipelinedConcurrentRequests(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts, Options{})
	const goroutines, perGoroutine = 64, 100
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			ctx := testContext(t)
			for i := range perGoroutine {
				ref := fmt.Sprintf(`^P(%d,%d)`, g, i)
				want := fmt.Sprintf("value %d/%d", g, i)
				if err := c.Set(ctx, "app", ref, []byte(want)); err != nil {
					errs <- err
					return
				}
				got, exists, err := c.Get(ctx, "app", ref)
				if err != nil || !exists || string(got) != want {
					errs <- fmt.Errorf("get %s: %q, %v, %v; want %q", ref, got, exists, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := ts.requests.Load(); n != 2*goroutines*perGoroutine {
		t.Fatalf("server saw %d requests, want %d", n, 2*goroutines*perGoroutine)
	}
}

func TestDeadlineWhileServerDelays(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts, Options{Conns: 1})
	ctx, cancel := context.WithTimeout(testContext(t), 50*time.Millisecond)
	defer cancel()
	_, _, err := c.Get(ctx, dbSlow, `^X(1)`)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	ts.waitSlow(t, 1)
	ts.releaseSlow() // the abandoned request's late response arrives and is dropped
	for i := range 10 {
		if err := c.Set(testContext(t), "app", `^X(1)`, []byte{byte(i)}); err != nil {
			t.Fatalf("request after the abandoned one: %v", err)
		}
		if v, _, err := c.Get(testContext(t), "app", `^X(1)`); err != nil || len(v) != 1 || v[0] != byte(i) {
			t.Fatalf("get after the abandoned one: %v, %v", v, err)
		}
	}
}

func TestCanceledContextSendsNothing(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts, Options{Conns: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Set(ctx, "app", `^X`, []byte("v")); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if n := ts.requests.Load(); n != 0 {
		t.Fatalf("server saw %d requests", n)
	}
}

// TestServerClosingFailsInFlightAndRedials uses Incr, which is not idempotent: its outcome is unknown, so it is not retried.
func TestServerClosingFailsInFlightAndRedials(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts, Options{Conns: 1})
	const inflight = 5
	errs := make(chan error, inflight)
	for range inflight {
		go func() {
			_, err := c.Incr(testContext(t), dbSlow, `^X(1)`, "1")
			errs <- err
		}()
	}
	ts.waitSlow(t, inflight)
	ts.dropConns()
	for range inflight {
		err := <-errs
		if !errors.Is(err, ErrConnLost) || !strings.Contains(err.Error(), ts.addr()) {
			t.Fatalf("in-flight request: got %v, want a lost connection naming %s", err, ts.addr())
		}
	}
	ts.releaseSlow()
	if err := c.Set(testContext(t), "app", `^X(1)`, []byte("after")); err != nil {
		t.Fatalf("request after the server closed the connection: %v", err)
	}
}

func TestTypedErrors(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts, Options{RetryTimeout: 50 * time.Millisecond})
	ctx := testContext(t)
	_, _, err := c.Get(ctx, dbMissing, `^X(1)`)
	if !errors.Is(err, wire.ErrNoSuchDatabase) || !strings.Contains(err.Error(), dbMissing) {
		t.Fatalf("got %v, want ErrNoSuchDatabase naming %s", err, dbMissing)
	}
	// The redirect points nowhere, so the client gives up after RetryTimeout with the refusal.
	err = c.Set(ctx, dbReplica, `^X(1)`, []byte("v"))
	var we *wire.Error
	if !errors.Is(err, ErrNoPrimary) || !errors.Is(err, wire.ErrNotPrimary) || !errors.As(err, &we) || we.Redirect != "127.0.0.1:2" {
		t.Fatalf("got %v, want ErrNoPrimary wrapping ErrNotPrimary with a redirect", err)
	}
	if _, err := c.Incr(ctx, "app", `^N`, "abc"); !errors.Is(err, wire.ErrNotANumber) {
		t.Fatalf("got %v, want ErrNotANumber", err)
	}
}

func TestBadRefRefusedClientSide(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts, Options{})
	ctx := testContext(t)
	tests := []struct {
		name string
		call func(ref string) error
	}{
		{"get", func(ref string) error { _, _, err := c.Get(ctx, "app", ref); return err }},
		{"set", func(ref string) error { return c.Set(ctx, "app", ref, []byte("v")) }},
		{"kill", func(ref string) error { return c.Kill(ctx, "app", ref) }},
		{"query from", func(ref string) error { _, _, err := c.Query(ctx, "app", `^X`, ref, 0); return err }},
		{"txn", func(ref string) error {
			_, err := c.Txn("app").Set(`^Good(1)`, []byte("v")).Set(ref, []byte("v")).Commit(ctx)
			return err
		}},
	}
	refs := []struct {
		ref  string
		want error
	}{
		{`^X(1`, globals.ErrSyntax},
		{`X(1)`, globals.ErrSyntax},
		{`^1X`, globals.ErrBadName},
		{`^X(1.2.3)`, globals.ErrBadNumber},
	}
	for _, tt := range tests {
		for _, r := range refs {
			t.Run(tt.name+" "+r.ref, func(t *testing.T) {
				err := tt.call(r.ref)
				if !errors.Is(err, r.want) || !strings.Contains(err.Error(), r.ref) {
					t.Fatalf("got %v, want %v naming %s", err, r.want, r.ref)
				}
			})
		}
	}
	if n := ts.requests.Load(); n != 0 {
		t.Fatalf("server saw %d requests", n)
	}
}

func TestOperations(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts, Options{})
	ctx := testContext(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, ref := range []string{`^O(1)`, `^O(2,"a")`, `^O(2,"b")`, `^O("x")`, `^O(-1.5)`} {
		must(c.Set(ctx, "app", ref, []byte(ref)))
	}
	for _, tt := range []struct {
		ref  string
		want uint8
	}{{`^O(1)`, 1}, {`^O(2)`, 10}, {`^O(3)`, 0}, {`^O`, 10}} {
		d, err := c.Data(ctx, "app", tt.ref)
		if err != nil || d != tt.want {
			t.Errorf("data %s = %d, %v; want %d", tt.ref, d, err, tt.want)
		}
	}
	for _, tt := range []struct {
		ref     string
		reverse bool
		want    string
		found   bool
	}{
		{`^O("")`, false, `^O(-1.5)`, true},
		{`^O(1)`, false, `^O(2)`, true},
		{`^O(2)`, false, `^O("x")`, true},
		{`^O("x")`, false, "", false},
		{`^O("")`, true, `^O("x")`, true},
		{`^O(2,"a")`, false, `^O(2,"b")`, true},
	} {
		next, found, err := c.Order(ctx, "app", tt.ref, tt.reverse)
		if err != nil || next != tt.want || found != tt.found {
			t.Errorf("order %s reverse=%v = %q, %v, %v; want %q, %v", tt.ref, tt.reverse, next, found, err, tt.want, tt.found)
		}
	}
	pairs, more, err := c.Query(ctx, "app", `^O`, `^O(1)`, 2)
	want := []Pair{{`^O(2,"a")`, []byte(`^O(2,"a")`)}, {`^O(2,"b")`, []byte(`^O(2,"b")`)}}
	if err != nil || !more || !reflect.DeepEqual(pairs, want) {
		t.Errorf("query = %q, %v, %v; want %q, true", pairs, more, err, want)
	}
	must(c.KillNode(ctx, "app", `^O(2,"a")`))
	must(c.Kill(ctx, "app", `^O(2)`))
	if _, exists, err := c.Get(ctx, "app", `^O(2,"b")`); err != nil || exists {
		t.Errorf("after kill: exists=%v, %v", exists, err)
	}
	if v, err := c.Incr(ctx, "app", `^N`, "2.5"); err != nil || v != "2.5" {
		t.Errorf("incr = %q, %v", v, err)
	}
	ok, cur, exists, err := c.CAS(ctx, "app", `^N`, []byte("1"), true, []byte("9"))
	if err != nil || ok || string(cur) != "2.5" || !exists {
		t.Errorf("failing cas = %v, %q, %v, %v", ok, cur, exists, err)
	}
	ok, cur, _, err = c.CAS(ctx, "app", `^N`, []byte("2.5"), true, []byte("9"))
	if err != nil || !ok || string(cur) != "9" {
		t.Errorf("cas = %v, %q, %v", ok, cur, err)
	}
	results, err := c.Txn("app").Set(`^T(1)`, []byte("a")).Incr(`^T(2)`, "1").Get(`^T(1)`).
		CAS(`^T(3)`, nil, false, []byte("c")).Data(`^T`).KillNode(`^T(1)`).Kill(`^T(9)`).Commit(ctx)
	if err != nil || len(results) != 7 || string(results[1].Value) != "1" || string(results[2].Value) != "a" ||
		!results[3].OK || results[4].Data != 10 {
		t.Fatalf("txn = %+v, %v", results, err)
	}
	if results, err := c.Txn("app").Commit(ctx); err != nil || results != nil {
		t.Fatalf("empty txn = %v, %v", results, err)
	}
}

func TestTxnIsAtomicOnError(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts, Options{})
	ctx := testContext(t)
	_, err := c.Txn("app").Set(`^A`, []byte("1")).Incr(`^A`, "x").Commit(ctx)
	if !errors.Is(err, wire.ErrNotANumber) {
		t.Fatalf("got %v, want ErrNotANumber", err)
	}
	if _, exists, err := c.Get(ctx, "app", `^A`); err != nil || exists {
		t.Fatalf("a failed transaction left ^A: exists=%v, %v", exists, err)
	}
}

func TestClosedClient(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts, Options{})
	errs := make(chan error, 1)
	go func() {
		_, _, err := c.Get(testContext(t), dbSlow, `^X`)
		errs <- err
	}()
	ts.waitSlow(t, 1)
	c.Close()
	if err := <-errs; !errors.Is(err, ErrClosed) {
		t.Fatalf("in-flight request: got %v, want ErrClosed", err)
	}
	if err := c.Set(testContext(t), "app", `^X`, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: got %v, want ErrClosed", err)
	}
}

func TestRequestTooLarge(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts, Options{})
	if err := c.Set(testContext(t), "app", `^Big`, make([]byte, wire.DefaultMaxFrame)); !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

// BenchmarkPipelinedGet measures Get round trips on loopback with 64 goroutines sharing one Client.
func BenchmarkPipelinedGet(b *testing.B) {
	ts := startServer(b)
	c := dial(b, ts, Options{})
	ctx := context.Background()
	if err := c.Set(ctx, "app", `^Bench(1)`, []byte("value")); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := c.Get(ctx, "app", `^Bench(1)`); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGet measures the latency of one Get at a time.
func BenchmarkGet(b *testing.B) {
	ts := startServer(b)
	c := dial(b, ts, Options{})
	ctx := context.Background()
	for b.Loop() {
		if _, _, err := c.Get(ctx, "app", `^Bench(1)`); err != nil {
			b.Fatal(err)
		}
	}
}
