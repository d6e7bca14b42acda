package arbiter

import (
	"context"
	"crypto/tls"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// qos is the QoS timeout every test member reports.
const qos = 2 * time.Second

// clock is a settable time source, so silences are tested without waiting for them.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newServer opens an arbiter on dir (a new temp dir when ""), closed at cleanup.
func newServer(tb testing.TB, dir string, clk *clock, mod func(*Options)) *Server {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	opts := Options{Dir: dir, Logger: zerolog.New(zerolog.NewTestWriter(tb)), Now: clk.Now}
	if mod != nil {
		mod(&opts)
	}
	s, err := NewServer(opts)
	if err != nil {
		tb.Fatalf("new arbiter on %s: %v", dir, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// serve runs s on a fresh loopback port (or addr) and returns the address.
func serve(tb testing.TB, s *Server, addr string) string {
	tb.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := wire.Listen(addr, nil)
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	tb.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// dial connects a client, closed at cleanup.
func dial(tb testing.TB, addr string, tlsConf *tls.Config, token string) *Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, tlsConf, token)
	if err != nil {
		tb.Fatalf("dial arbiter %s: %v", addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// mustReport sends a report straight to the server's decision code.
func mustReport(tb testing.TB, s *Server, r Report) View {
	tb.Helper()
	v, err := s.report(r)
	if err != nil {
		tb.Fatalf("report %+v: %v", r, err)
	}
	return v
}

// primaryReport and backupReport are the reports of a healthy pair in epoch.
func primaryReport(member string, epoch uint64) Report {
	return Report{Mirror: "APP", Member: member, Epoch: epoch, Primary: true, SeesPeer: true, QoS: qos}
}

func backupReport(member string, epoch uint64) Report {
	return Report{Mirror: "APP", Member: member, Epoch: epoch, ActiveBackup: true, SeesPeer: true, QoS: qos}
}

// timeout is a context for one network call.
func timeout(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}
