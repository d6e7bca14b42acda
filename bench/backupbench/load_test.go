package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/server"
)

// startMember runs a real member in the test process with an empty database BIG and returns a client of it.
func startMember(tb testing.TB) *client.Client {
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
	if _, err := s.Store().Create("BIG"); err != nil {
		tb.Fatalf("create database BIG: %v", err)
	}
	c, err := client.Dial(tb.Context(), s.DataAddr(), client.Options{})
	if err != nil {
		tb.Fatalf("dial member: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Every row is stored once with the generator's value, whatever the batch size and the number of writers.
func TestLoadRowsStoresEveryRow(t *testing.T) {
	c := startMember(t)
	const rows = 23
	var progress strings.Builder
	if err := loadRows(t.Context(), c, "BIG", rows, 5, 3, &progress); err != nil {
		t.Fatal(err)
	}
	g := NewGenerator()
	var n int
	from := ""
	for {
		pairs, more, err := c.Query(t.Context(), "BIG", "^"+globalName, from, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pairs {
			if want := fmt.Sprintf(`^%s("%s")`, globalName, KeyOf(int64(n))); p.Ref != want || string(p.Value) != string(g.AppendValue(nil, int64(n))) {
				t.Fatalf("node %d is %s with %d bytes, want %s with row %d's value", n, p.Ref, len(p.Value), want, n)
			}
			n++
		}
		if !more {
			break
		}
		from = pairs[len(pairs)-1].Ref
	}
	if n != rows {
		t.Fatalf("%d nodes, want %d", n, rows)
	}
	if !strings.HasSuffix(progress.String(), "loaded 100% (23 of 23 rows)\n") {
		t.Fatalf("progress %q does not end at 100%%", progress.String())
	}
}

func TestLoadRowsFailsOnAMissingDatabase(t *testing.T) {
	c := startMember(t)
	err := loadRows(t.Context(), c, "NOSUCH", 4, 2, 2, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "NOSUCH") {
		t.Fatalf("error %v, want one naming database NOSUCH", err)
	}
}
