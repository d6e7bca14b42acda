package main

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/server"
)

// startMember runs a real member in the test process with empty databases and returns a client of it.
func startMember(tb testing.TB, dbs ...string) *client.Client {
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
	for _, db := range dbs {
		if _, err := s.Store().Create(db); err != nil {
			tb.Fatalf("create database %s: %v", db, err)
		}
	}
	c, err := client.DialMirror(tb.Context(), []string{s.DataAddr()}, client.Options{})
	if err != nil {
		tb.Fatalf("dial member: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Every acknowledged write reads back with its value; one that is gone, or holds another value, counts as missing.
func TestProbeReadBack(t *testing.T) {
	c := startMember(t, "ONE", "TWO")
	p := startProbe(t.Context(), c, []string{"ONE", "TWO"}, 2)
	// Wait, through the member, until every writer's first write has landed.
	for _, w := range p.writers {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, ok, err := c.Get(t.Context(), w.db, probeRef(w.id, 0)); err != nil || ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("writer %d wrote nothing in 10s", w.id)
			}
		}
	}
	acks, failures, errs := p.stop()
	if len(acks) < len(p.writers) || len(failures) != 0 || len(errs) != 0 {
		t.Fatalf("probe: %d acks, %d failures (%v), want an ack from each of %d writers and no failure", len(acks), len(failures), errs, len(p.writers))
	}
	for i := 1; i < len(acks); i++ {
		if acks[i].done < acks[i-1].done {
			t.Fatalf("acks not ordered by acknowledgement at %d", i)
		}
	}
	found, missing, err := p.readBack(t.Context())
	if err != nil || found != len(acks) || missing != 0 {
		t.Fatalf("readBack = %d found, %d missing, %v; want %d found", found, missing, err, len(acks))
	}

	w0, w3 := p.writers[0], p.writers[3]
	if err := c.Kill(t.Context(), w0.db, probeRef(w0.id, w0.seqs[0])); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(t.Context(), w3.db, probeRef(w3.id, w3.seqs[0]), []byte("another value")); err != nil {
		t.Fatal(err)
	}
	found, missing, err = p.readBack(t.Context())
	if err != nil || found != len(acks)-2 || missing != 2 {
		t.Fatalf("after losing two writes: readBack = %d found, %d missing, %v; want %d found, 2 missing", found, missing, err, len(acks)-2)
	}
}

func TestProbeValue(t *testing.T) {
	v := probeValue(3, 42)
	if len(v) != valueBytes || string(v[:18]) != "writer 3 write 42 " {
		t.Fatalf("probeValue(3, 42) = %q", v)
	}
	if got, want := probeRef(3, 42), `^probe("w3","s000000000042")`; got != want {
		t.Fatalf("probeRef(3, 42) = %s, want %s", got, want)
	}
}
