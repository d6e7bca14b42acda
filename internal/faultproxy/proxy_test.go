package faultproxy_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/internal/faultproxy"
)

// echoServer serves connections that send back everything they receive and end their stream when the client ends its own.
func echoServer(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("echo listen: %v", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			})
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newProxy(tb testing.TB, target string) *faultproxy.Proxy {
	tb.Helper()
	p, err := faultproxy.New("127.0.0.21:0", target)
	if err != nil {
		tb.Fatalf("new proxy: %v", err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("close proxy: %v", err)
		}
	})
	return p
}

func dial(tb testing.TB, addr string) *net.TCPConn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip sends msg and expects it echoed back.
func roundTrip(tb testing.TB, c net.Conn, msg string) {
	tb.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		tb.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		tb.Fatalf("read echo of %q: %v", msg, err)
	}
	if string(got) != msg {
		tb.Fatalf("echo = %q, want %q", got, msg)
	}
}

// expectClosed reads from c and expects the connection to end (EOF or reset), not to time out.
func expectClosed(tb testing.TB, c net.Conn) {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		tb.Fatalf("read on a connection that should be closed: %v", err)
	}
}

// expectRefused expects a connection to addr to fail, either while dialling or on its first read.
func expectRefused(tb testing.TB, addr string) {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	expectClosed(tb, c)
}

// expectSilence expects a read from c to block until a short deadline.
func expectSilence(tb testing.TB, c net.Conn) {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		tb.Fatalf("read on a black-holed connection = %d bytes, %v; want a deadline error", n, err)
	}
}

// eventually polls cond until it holds, failing the test after ten seconds.
func eventually(tb testing.TB, desc string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", desc)
		}
		<-tick.C
	}
}

// echoPayload sends payload on a new connection through addr, ends the stream and returns what came back.
func echoPayload(addr string, payload []byte) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	sent := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		sent <- err
	}()
	got, err := io.ReadAll(c)
	if werr := <-sent; werr != nil {
		return nil, fmt.Errorf("write: %w", werr)
	}
	return got, err
}

func TestForwardsConcurrentConnections(t *testing.T) {
	cases := []struct {
		name      string
		delay     time.Duration
		bandwidth int
	}{
		{name: "plain"},
		{name: "delayed", delay: 20 * time.Millisecond},
		{name: "limited", bandwidth: 16 << 20},
		{name: "delayed and limited", delay: 5 * time.Millisecond, bandwidth: 16 << 20},
	}
	const conns = 32
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newProxy(t, echoServer(t))
			p.SetDelay(tc.delay)
			p.SetBandwidth(tc.bandwidth)
			var seed [32]byte
			binary.LittleEndian.PutUint64(seed[:], uint64(time.Now().UnixNano()))
			t.Logf("seed %x", seed[:8])
			rng := rand.NewChaCha8(seed)
			payloads := make([][]byte, conns)
			var total int64
			for i := range payloads {
				payloads[i] = make([]byte, rng.Uint64()%(256<<10))
				rng.Read(payloads[i])
				total += int64(len(payloads[i]))
			}
			errs := make(chan error, conns)
			for i, payload := range payloads {
				go func() {
					got, err := echoPayload(p.Addr(), payload)
					switch {
					case err != nil:
						errs <- fmt.Errorf("connection %d: %w", i, err)
					case !bytes.Equal(got, payload):
						errs <- fmt.Errorf("connection %d: got %d bytes back, sent %d, or they differ", i, len(got), len(payload))
					default:
						errs <- nil
					}
				}()
			}
			for range conns {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			st := p.Stats()
			if st.Accepted != conns || st.BytesToTarget != total || st.BytesFromTarget != total || st.BytesDropped != 0 {
				t.Errorf("stats = %+v; want %d accepted and %d bytes each way", st, conns, total)
			}
			eventually(t, "no active connections", func() bool { return p.Stats().Active == 0 })
		})
	}
}

func TestDelayAppliesEachWay(t *testing.T) {
	for _, delay := range []time.Duration{30 * time.Millisecond, 120 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			p := newProxy(t, echoServer(t))
			c := dial(t, p.Addr())
			roundTrip(t, c, "warm")
			p.SetDelay(delay)
			start := time.Now()
			roundTrip(t, c, "ping")
			if rtt := time.Since(start); rtt < 2*delay {
				t.Errorf("round trip took %s; want at least %s", rtt, 2*delay)
			}
		})
	}
}

func TestBandwidthLimitsThroughput(t *testing.T) {
	const rate = 128 << 10
	p := newProxy(t, echoServer(t))
	p.SetBandwidth(rate)
	payload := bytes.Repeat([]byte("0123456789abcdef"), rate/16)
	start := time.Now()
	got, err := echoPayload(p.Addr(), payload)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes back, sent %d, or they differ", len(got), len(payload))
	}
	// One second's worth of bytes, less the burst the bucket starts with.
	if elapsed := time.Since(start); elapsed < 900*time.Millisecond {
		t.Errorf("%d bytes at %d bytes/s took %s; want at least 900ms", len(payload), rate, elapsed)
	}
}

func TestCutClosesAndRefusesUntilHeal(t *testing.T) {
	p := newProxy(t, echoServer(t))
	open := dial(t, p.Addr())
	roundTrip(t, open, "before")

	p.Cut()
	expectClosed(t, open)
	eventually(t, "no active connections", func() bool { return p.Stats().Active == 0 })
	expectRefused(t, p.Addr())
	if st := p.Stats(); st.Refused != 1 || st.Accepted != 1 {
		t.Errorf("stats after cut = %+v; want 1 accepted and 1 refused", st)
	}

	p.Heal()
	roundTrip(t, dial(t, p.Addr()), "after")
}

func TestBlackHoleDropsUntilHeal(t *testing.T) {
	p := newProxy(t, echoServer(t))
	open := dial(t, p.Addr())
	roundTrip(t, open, "before")
	forwarded := p.Stats().BytesToTarget

	p.BlackHole()
	if _, err := io.WriteString(open, "lost"); err != nil {
		t.Fatalf("write into a black hole: %v", err)
	}
	expectSilence(t, open)
	late := dial(t, p.Addr())
	if _, err := io.WriteString(late, "also lost"); err != nil {
		t.Fatalf("write into a black hole: %v", err)
	}
	expectSilence(t, late)
	eventually(t, "dropped bytes counted", func() bool { return p.Stats().BytesDropped == int64(len("lost")+len("also lost")) })
	if st := p.Stats(); st.BytesToTarget != forwarded || st.Active != 2 {
		t.Errorf("stats in black hole = %+v; want %d bytes to target and 2 active", st, forwarded)
	}

	p.Heal()
	expectClosed(t, open)
	expectClosed(t, late)
	roundTrip(t, dial(t, p.Addr()), "after")
}

func TestCloseEndsEverything(t *testing.T) {
	p, err := faultproxy.New("127.0.0.21:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	open := dial(t, p.Addr())
	roundTrip(t, open, "hello")
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	expectClosed(t, open)
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatalf("dial %s after close succeeded", p.Addr())
	}
	if err := p.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestUnreachableTargetClosesClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close()
	p := newProxy(t, target)
	expectRefused(t, p.Addr())
}

func TestNewRejectsBadAddresses(t *testing.T) {
	cases := []struct{ listen, target string }{
		{"127.0.0.21:0", "no-port"},
		{"not an address", "127.0.0.1:1"},
	}
	for _, tc := range cases {
		if p, err := faultproxy.New(tc.listen, tc.target); err == nil {
			p.Close()
			t.Errorf("New(%q, %q) succeeded", tc.listen, tc.target)
		}
	}
}
