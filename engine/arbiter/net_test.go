package arbiter

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/mirrorkit/mirrorkit/engine/version"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/testpki"
)

// tlsPair returns a server and a client configuration issued by one test CA.
func tlsPair(tb testing.TB) (server, client *tls.Config) {
	tb.Helper()
	pki := testpki.New(tb)
	server, err := pki.Issue(tb, "arbiter").ServerConfig()
	if err != nil {
		tb.Fatal(err)
	}
	client, err = pki.Issue(tb, "member-b").ClientConfig()
	if err != nil {
		tb.Fatal(err)
	}
	return server, client
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		tls  bool
	}{
		{"plain", false},
		{"tls", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var serverTLS, clientTLS *tls.Config
			if tc.tls {
				serverTLS, clientTLS = tlsPair(t)
			}
			clk := newClock()
			s := newServer(t, "", clk, func(o *Options) { o.TLS = serverTLS })
			addr := serve(t, s, "")
			a, b := dial(t, addr, clientTLS, ""), dial(t, addr, clientTLS, "")
			ctx := timeout(t)

			if _, err := a.Report(ctx, primaryReport("a", 1)); err != nil {
				t.Fatalf("report a: %v", err)
			}
			v, err := b.Report(ctx, backupReport("b", 1))
			if err != nil {
				t.Fatalf("report b: %v", err)
			}
			want := View{Epoch: 1, Primary: "a", PeerSeen: true, PeerReport: primaryReport("a", 1)}
			if v != want {
				t.Fatalf("view = %+v, want %+v", v, want)
			}
			req := TakeoverRequest{Mirror: "APP", Member: "b", Epoch: 1, NewEpoch: 2}
			if d, err := b.Takeover(ctx, req); err != nil || d.Granted || !strings.Contains(d.Reason, "primary a was heard from 0s ago") {
				t.Fatalf("takeover while a reports = %+v, %v; want refused", d, err)
			}
			clk.Advance(qos)
			d, err := b.Takeover(ctx, req)
			if err != nil || d != (Decision{Granted: true, Epoch: 2, Primary: "b"}) {
				t.Fatalf("takeover once a is silent = %+v, %v; want granted", d, err)
			}
			if d, err := a.Continue(ctx, ContinueRequest{Mirror: "APP", Member: "a", Epoch: 1}); err != nil || d.Granted ||
				d.Epoch != 2 || d.Primary != "b" {
				t.Fatalf("continue by the deposed primary = %+v, %v; want refused showing b in 2", d, err)
			}
			if d, err := b.Rejoined(ctx, RejoinedRequest{Mirror: "APP", Member: "b", Epoch: 2}); err != nil || !d.Granted {
				t.Fatalf("rejoined by the new primary = %+v, %v; want granted", d, err)
			}
			if _, err := a.Report(ctx, Report{Mirror: "APP", Member: "a", QoS: -1}); !errors.Is(err, wire.ErrBadRequest) ||
				!strings.Contains(err.Error(), "QoS timeout -1ns is not positive") {
				t.Fatalf("bad report = %v, want a bad request", err)
			}
			if _, err := a.Takeover(ctx, TakeoverRequest{Mirror: "A.B", Member: "a", Epoch: 1, NewEpoch: 2}); !errors.Is(err, wire.ErrInvalidName) {
				t.Fatalf("takeover for a bad mirror name = %v, want ErrInvalidName", err)
			}
		})
	}
}

func TestHandshakeRefusals(t *testing.T) {
	serverTLS, clientTLS := tlsPair(t)
	plain := serve(t, newServer(t, "", newClock(), func(o *Options) { o.Token = "s3cret" }), "")
	withTLS := serve(t, newServer(t, "", newClock(), func(o *Options) { o.TLS, o.Token = serverTLS, "s3cret" }), "")
	tests := []struct {
		name    string
		addr    string
		tls     *tls.Config
		token   string
		want    error
		message string
	}{
		{"right token", plain, nil, "s3cret", nil, ""},
		{"no token", plain, nil, "", wire.ErrHandshake, "presented no token"},
		{"wrong token", plain, nil, "guess", wire.ErrHandshake, "presented a wrong token"},
		{"tls needs no token", withTLS, clientTLS, "", nil, ""},
		{"plain client to a tls arbiter", withTLS, nil, "s3cret", ErrUnavailable, "requires it"},
		{"tls client to a plain arbiter", plain, clientTLS, "s3cret", ErrUnavailable, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Dial(timeout(t), tc.addr, tc.tls, tc.token)
			if err == nil {
				defer c.Close()
				_, err = c.Report(timeout(t), primaryReport("a", 1))
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("dial and report: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("dial = %v, want %v saying %q", err, tc.want, tc.message)
			}
		})
	}
}

func TestRefusesOtherPurposes(t *testing.T) {
	addr := serve(t, newServer(t, "", newClock(), nil), "")
	ctx := timeout(t)
	nc, err := wire.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := wire.NewConn(nc, 0)
	defer c.Close()
	_, err = wire.ClientHandshake(ctx, c, wire.Hello{Software: version.Software, Purpose: wire.PurposeClient})
	if !errors.Is(err, wire.ErrHandshake) || !strings.Contains(err.Error(), "this is an arbiter") {
		t.Fatalf("client handshake with the arbiter = %v, want a refusal naming the arbiter", err)
	}
}

func TestClientReconnects(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := newServer(t, dir, clk, nil)
	addr := serve(t, s, "")
	c := dial(t, addr, nil, "")
	ctx := timeout(t)
	if _, err := c.Report(ctx, primaryReport("a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Report(ctx, primaryReport("a", 1)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("report with the arbiter down = %v, want ErrUnavailable", err)
	}

	s = newServer(t, dir, clk, nil)
	serve(t, s, addr)
	v, err := c.Report(ctx, primaryReport("a", 1))
	if err != nil {
		t.Fatalf("report after the arbiter restarted: %v", err)
	}
	if v.Epoch != 1 || v.Primary != "a" {
		t.Fatalf("view after restart = %+v, want the recorded epoch 1 and primary a", v)
	}
	if _, ok := s.State()["APP"].Members["a"]; !ok {
		t.Fatalf("the restarted arbiter did not hear from a: %+v", s.State())
	}
}

func TestClientClose(t *testing.T) {
	addr := serve(t, newServer(t, "", newClock(), nil), "")
	c := dial(t, addr, nil, "")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Report(timeout(t), primaryReport("a", 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("report after close = %v, want ErrClosed", err)
	}
	if _, err := c.Takeover(timeout(t), TakeoverRequest{Mirror: "APP", Member: "b", Epoch: 1, NewEpoch: 2}); !errors.Is(err, ErrClosed) {
		t.Fatalf("takeover after close = %v, want ErrClosed", err)
	}
}

func TestCallHonoursContext(t *testing.T) {
	addr := serve(t, newServer(t, "", newClock(), nil), "")
	c := dial(t, addr, nil, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Report(ctx, primaryReport("a", 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("report with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := c.Report(timeout(t), primaryReport("a", 1)); err != nil {
		t.Fatalf("report after a cancelled call: %v", err)
	}
}

func TestServeAfterClose(t *testing.T) {
	s := newServer(t, "", newClock(), nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ln, err := wire.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln); !errors.Is(err, ErrClosed) {
		t.Fatalf("serve after close = %v, want ErrClosed", err)
	}
}
