package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/bench/internal/mirrorresult"
	"github.com/mirrorkit/mirrorkit/engine/server"
)

// member is one in-process member of a test mirror.
type member struct {
	name string
	srv  *server.Server
}

func (m member) addr() string { return m.srv.DataAddr() }

// post calls the admin API of m and fails the test unless it answers with a success.
func (m member) post(tb testing.TB, path string, body any) {
	tb.Helper()
	if err := m.tryPost(path, body); err != nil {
		tb.Fatal(err)
	}
}

func (m member) tryPost(path string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := http.Post("http://"+m.srv.AdminAddr()+path, "application/json", bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("member %s: POST %s: %w", m.name, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var eb server.ErrorBody
		json.NewDecoder(resp.Body).Decode(&eb)
		return fmt.Errorf("member %s: POST %s: %s: %s", m.name, path, resp.Status, eb.Error)
	}
	return nil
}

// postOnceKnown retries a call that a member refuses until the mirror's configuration has reached it from the primary
// (creating a mirrored database on a member other than the primary is such a call).
func (m member) postOnceKnown(tb testing.TB, path string, body any) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := m.tryPost(path, body)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatal(err)
		}
		<-tick.C
	}
}

// startMirror runs a mirror MIR in the test process: the first member primary, the second (if any) its backup, the
// rest DR asyncs, with database BENCH on all.
func startMirror(tb testing.TB, names ...string) []member {
	tb.Helper()
	var ms []member
	for _, name := range names {
		s, err := server.New(server.Config{Name: name, DataDir: tb.TempDir(), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0"},
			zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel))
		if err != nil {
			tb.Fatalf("start member %s: %v", name, err)
		}
		s.Serve()
		tb.Cleanup(func() {
			if err := s.Shutdown(context.Background()); err != nil {
				tb.Errorf("shut down member %s: %v", name, err)
			}
		})
		ms = append(ms, member{name: name, srv: s})
	}
	ms[0].post(tb, "/api/v1/mirrors", server.CreateMirrorRequest{Name: "MIR", QoS: "2s"})
	for i, m := range ms[1:] {
		as := "dr"
		if i == 0 {
			as = "failover"
		}
		m.post(tb, "/api/v1/mirrors/join", server.JoinMirrorRequest{Mirror: "MIR", Primary: ms[0].addr(), As: as})
	}
	ms[0].post(tb, "/api/v1/databases", server.CreateDatabaseRequest{Name: "BENCH", Mirror: "MIR"})
	for _, m := range ms[1:] {
		m.postOnceKnown(tb, "/api/v1/databases", server.CreateDatabaseRequest{Name: "BENCH", Mirror: "MIR"})
	}
	return ms
}

func addrs(ms []member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.addr()
	}
	return out
}

// adminFailover hands over through the admin API, what `member mirror failover` calls.
func adminFailover(ms []member) func(ctx context.Context, addr string) error {
	return func(ctx context.Context, addr string) error {
		for _, m := range ms {
			if m.addr() != addr {
				continue
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+m.srv.AdminAddr()+"/api/v1/mirrors/MIR/failover", nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode >= 300 {
				var eb server.ErrorBody
				json.NewDecoder(resp.Body).Decode(&eb)
				return fmt.Errorf("failover on %s: %s: %s", m.name, resp.Status, eb.Error)
			}
			return nil
		}
		return fmt.Errorf("no member at %s", addr)
	}
}

func mirrorFlagsFor(ms []member) mirrorFlags {
	return mirrorFlags{Members: addrs(ms), Mirror: "mir", ReadyTimeout: 30 * time.Second}
}

func TestWaitAndHold(t *testing.T) {
	ms := startMirror(t, "A", "B")
	mon := newMonitor("mir", addrs(ms))
	addr, st, err := mon.waitReady(context.Background(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if addr != ms[0].addr() || st.Primary != "A" {
		t.Fatalf("primary %s (%s), want A at %s", st.Primary, addr, ms[0].addr())
	}
	if err := mon.hold(context.Background(), "A", 300*time.Millisecond); err != nil {
		t.Fatalf("hold: %v", err)
	}
	if err := mon.hold(context.Background(), "B", 300*time.Millisecond); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("hold with the wrong primary = %v, want %v", err, ErrNotHeld)
	}
}

func TestWaitWithoutMirror(t *testing.T) {
	s, err := server.New(server.Config{Name: "solo", DataDir: t.TempDir(), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0"},
		zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	mon := newMonitor("MIR", []string{s.DataAddr()})
	if _, _, err := mon.waitReady(context.Background(), 200*time.Millisecond); !errors.Is(err, ErrNotReady) || !errors.Is(err, ErrNoPrimary) {
		t.Fatalf("waitReady = %v, want %v and %v", err, ErrNotReady, ErrNoPrimary)
	}
}

func TestFailoverRounds(t *testing.T) {
	ms := startMirror(t, "A", "B")
	c := failoverCmd{
		mirrorFlags: mirrorFlagsFor(ms),
		loadFlags:   loadFlags{DB: "BENCH", Clients: 8, Conns: 2, Warmup: 100 * time.Millisecond, JSON: true},
		Rounds:      2, Steady: 200 * time.Millisecond, Settle: 200 * time.Millisecond, Global: "^F",
		handOver: adminFailover(ms),
	}
	var out bytes.Buffer
	if err := c.run(context.Background(), &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	var res mirrorresult.Failover
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("decode %q: %v", out.String(), err)
	}
	if res.Failure != "" || len(res.Rounds) != 2 || res.Requested != 2 || res.Clients != 8 {
		t.Fatalf("result %+v: want 2 completed rounds with 8 clients", res)
	}
	if res.Rounds[0].From != "A" || res.Rounds[0].To != "B" || res.Rounds[1].From != "B" || res.Rounds[1].To != "A" {
		t.Fatalf("rounds %+v: want A to B, then back", res.Rounds)
	}
	if res.Errors != 0 || res.CommandErrors != 0 || res.Missing != 0 || res.Commits == 0 {
		t.Fatalf("result %+v: want commits, no errors and nothing missing", res)
	}
	if res.PauseMaxMs <= 0 || res.PauseP50Ms > res.PauseMaxMs {
		t.Fatalf("pause p50 %v, max %v", res.PauseP50Ms, res.PauseMaxMs)
	}
}

func TestFailoverCommandFails(t *testing.T) {
	ms := startMirror(t, "A", "B")
	c := failoverCmd{
		mirrorFlags: mirrorFlagsFor(ms),
		loadFlags:   loadFlags{DB: "BENCH", Clients: 2, Conns: 1, JSON: true},
		Rounds:      3, Steady: 50 * time.Millisecond, Settle: 50 * time.Millisecond, Global: "^F",
		handOver: func(context.Context, string) error { return errors.New("refused") },
	}
	var out bytes.Buffer
	if err := c.run(context.Background(), &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	var res mirrorresult.Failover
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("decode %q: %v", out.String(), err)
	}
	// The primary never changed, so the run stops after the first attempt and says why.
	if len(res.Rounds) != 0 || res.Failure == "" || res.Missing != 0 {
		t.Fatalf("result %+v: want no completed round, a failure and nothing missing", res)
	}
}

func TestAsyncLag(t *testing.T) {
	ms := startMirror(t, "A", "B", "C")
	c := lagCmd{
		mirrorFlags: mirrorFlagsFor(ms),
		loadFlags:   loadFlags{DB: "BENCH", Clients: 8, Conns: 2, Warmup: 100 * time.Millisecond, JSON: true},
		Async:       "c", Duration: 600 * time.Millisecond, Interval: 100 * time.Millisecond, SegmentSize: 64 << 20, Global: "^L",
	}
	var out bytes.Buffer
	if err := c.run(context.Background(), &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	var res mirrorresult.AsyncLag
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("decode %q: %v", out.String(), err)
	}
	if res.Failure != "" || res.Async != "c" || res.Samples < 6 || res.CommitsPerSecond <= 0 || res.JournalBytesPerSecond <= 0 {
		t.Fatalf("result %+v: want at least 6 samples under load and no failure", res)
	}
	if res.MaxLagMs < res.P50LagMs || len(res.Transfer) == 0 {
		t.Fatalf("result %+v: lag figures out of order or no journal transfer tallied", res)
	}
}

func TestRunRejectsFlags(t *testing.T) {
	tests := []struct {
		name string
		run  func() error
	}{
		{name: "failover without clients", run: func() error {
			c := failoverCmd{loadFlags: loadFlags{Conns: 1}, Rounds: 1, Steady: time.Second, Settle: time.Second}
			return c.run(context.Background(), &bytes.Buffer{})
		}},
		{name: "failover without rounds", run: func() error {
			c := failoverCmd{loadFlags: loadFlags{Clients: 1, Conns: 1}, Steady: time.Second, Settle: time.Second}
			return c.run(context.Background(), &bytes.Buffer{})
		}},
		{name: "lag without duration", run: func() error {
			c := lagCmd{loadFlags: loadFlags{Clients: 1, Conns: 1}, Interval: time.Second, SegmentSize: 1}
			return c.run(context.Background(), &bytes.Buffer{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); err == nil {
				t.Fatal("run succeeded")
			}
		})
	}
}
