package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/bench/internal/latency"
	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/server"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// startMember runs a real member in the test process with database BENCH and returns its data address.
func startMember(tb testing.TB) string {
	tb.Helper()
	s, err := server.New(server.Config{Name: "bench", DataDir: tb.TempDir(), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0"},
		zerolog.New(zerolog.NewTestWriter(tb)))
	if err != nil {
		tb.Fatalf("start member: %v", err)
	}
	s.Serve()
	tb.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			tb.Errorf("shut down member: %v", err)
		}
	})
	if _, err := s.Store().Create("BENCH"); err != nil {
		tb.Fatalf("create database BENCH: %v", err)
	}
	return s.DataAddr()
}

// countNodes counts the nodes with a value under ^B.
func countNodes(tb testing.TB, addr string) int {
	tb.Helper()
	ctx := context.Background()
	c, err := client.Dial(ctx, addr, client.Options{})
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	n, from := 0, ""
	for {
		pairs, more, err := c.Query(ctx, "BENCH", "^B", from, 0)
		if err != nil {
			tb.Fatalf("query ^B: %v", err)
		}
		n += len(pairs)
		if !more {
			return n
		}
		from = pairs[len(pairs)-1].Ref
	}
}

func TestRun(t *testing.T) {
	addr := startMember(t)
	written := 0
	tests := []struct {
		name           string
		clients, conns int
		system         string
	}{
		{"one client", 1, 1, "mirrorkit"},
		{"more clients than connections", 8, 2, "mirrorkit"},
		{"reported under another name", 2, 1, "mirrorkit-backup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cli{Member: addr, DB: "BENCH", Clients: tt.clients, Conns: tt.conns,
				Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond, JSON: true, System: tt.system}
			var out bytes.Buffer
			if err := c.run(context.Background(), &out); err != nil {
				t.Fatalf("run: %v", err)
			}
			var s latency.Summary
			if err := json.Unmarshal(out.Bytes(), &s); err != nil {
				t.Fatalf("decode %q: %v", out.String(), err)
			}
			if s.System != tt.system || s.Clients != tt.clients || s.Ops == 0 || s.Seconds != 0.3 {
				t.Fatalf("summary %+v: want %s, %d clients, some ops in 0.3s", s, tt.system, tt.clients)
			}
			if s.P50Ms <= 0 || s.P50Ms > s.P99Ms || s.P99Ms > s.MaxMs {
				t.Fatalf("summary %+v: latencies out of order", s)
			}
			// Every measured commit was acknowledged, so it must be there (warmup commits come on top).
			written += s.Ops
			if n := countNodes(t, addr); n < written {
				t.Fatalf("^B holds %d nodes after %d measured commits", n, written)
			}
		})
	}
}

func TestRunFails(t *testing.T) {
	addr := startMember(t)
	tests := []struct {
		name    string
		c       cli
		wantErr error
	}{
		{name: "missing database", c: cli{Member: addr, DB: "NOPE", Clients: 2, Conns: 1, Duration: time.Second},
			wantErr: wire.ErrNoSuchDatabase},
		{name: "no clients", c: cli{Member: addr, DB: "BENCH", Clients: 0, Conns: 1, Duration: time.Second}},
		{name: "no duration", c: cli{Member: addr, DB: "BENCH", Clients: 1, Conns: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := tt.c.run(context.Background(), &out)
			if err == nil {
				t.Fatalf("run succeeded: %s", out.String())
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("run error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
