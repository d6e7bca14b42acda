package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

func startServer(tb testing.TB, dir string) *Server {
	tb.Helper()
	s, err := New(Config{Name: "t1", DataDir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0"}, zerolog.New(zerolog.NewTestWriter(tb)))
	if err != nil {
		tb.Fatal(err)
	}
	s.Serve()
	tb.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

func httpDo(tb testing.TB, method, url, body string) (int, string) {
	tb.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminAPI(t *testing.T) {
	s := startServer(t, t.TempDir())
	base := "http://" + s.AdminAddr()

	if code, body := httpDo(t, "GET", base+"/mirror/health", ""); code != 503 || strings.TrimSpace(body) != "FAILED" {
		t.Fatalf("/mirror/health = %d %q", code, body)
	}
	if code, body := httpDo(t, "POST", base+"/api/v1/databases", `{"name":"app"}`); code != 201 || !strings.Contains(body, `"APP"`) {
		t.Fatalf("create = %d %s", code, body)
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
		errCode            string
	}{
		{"POST", "/api/v1/databases", `{"name":"app"}`, 409, "exists"},
		{"POST", "/api/v1/databases", `{"name":"1x"}`, 400, "invalid-name"},
		{"POST", "/api/v1/databases", `not json`, 400, "bad-request"},
		{"GET", "/api/v1/databases/nope", "", 404, "no-such-database"},
		{"POST", "/api/v1/databases/nope/mount", "", 404, "no-such-database"},
	} {
		code, body := httpDo(t, tc.method, base+tc.path, tc.body)
		var eb ErrorBody
		json.Unmarshal([]byte(body), &eb)
		if code != tc.code || eb.Code != tc.errCode || eb.Error == "" {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, code, body, tc.code, tc.errCode)
		}
	}

	c, err := client.Dial(context.Background(), s.DataAddr(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Welcome().AdminAddr != s.AdminAddr() || c.Welcome().Member != "t1" {
		t.Fatalf("welcome %+v", c.Welcome())
	}
	if err := c.Set(context.Background(), "APP", `^X(1)`, []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(context.Background(), "NOPE", `^X(1)`); !errors.Is(err, wire.ErrNoSuchDatabase) || !strings.Contains(err.Error(), "NOPE") {
		t.Fatalf("typed error across the wire: %v", err)
	}
	_, metrics := httpDo(t, "GET", base+"/metrics", "")
	for _, want := range []string{"mirrorkit_commits_total 1", "mirrorkit_commit_latency_seconds_count 1", "mirrorkit_journal_syncs_total", "mirrorkit_group_commit_transactions_bucket", "mirrorkit_journal_bytes_total"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	var st Status
	_, body := httpDo(t, "GET", base+"/api/v1/status", "")
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Member != "t1" || len(st.Databases) != 1 || st.Journal.Durable.IsZero() {
		t.Fatalf("status: %+v %v", st, err)
	}
}

func TestShutdownRefusesNewWorkAndIsIdempotent(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	if _, err := client.Dial(ctx, s.DataAddr(), client.Options{Conns: 1}); err == nil {
		t.Fatal("dial after shutdown succeeded")
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Name = "" }, "name"},
		{func(c *Config) { c.Name = strings.Repeat("n", 33) }, "name"},
		{func(c *Config) { c.Name = "a.b" }, "name"},
		{func(c *Config) { c.DataDir = "" }, "data_dir"},
		{func(c *Config) { c.Listen = "nohost" }, "listen"},
		{func(c *Config) { c.Journal.SegmentSize = 1000 }, "segment_size"},
		{func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{func(c *Config) { c.MaxValueSize = 32 << 20 }, "max_frame"},
		{func(c *Config) { c.DBCompression = "tiny" }, `db_compression: database compression "tiny": want one of fast, balanced, good`},
	} {
		c := Config{Name: "ok", DataDir: "/tmp/x"}
		c.Defaults()
		tc.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error about %s, got %v", tc.want, err)
		}
	}
}

// TestPurgeKeepsWhatRecoveryNeeds fills several journal segments, purges, and checks that old segments went while every
// database still recovers all its data after a restart.
func TestPurgeKeepsWhatRecoveryNeeds(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Name: "p", DataDir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		Journal: JournalConfig{SegmentSize: 1 << 20, KeepSegments: 1, MaxAge: Duration{time.Nanosecond}}}
	s, err := New(cfg, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	s.Serve()
	if _, err := s.Store().Create("P"); err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(context.Background(), s.DataAddr(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	value := []byte(strings.Repeat("v", 100<<10))
	for i := 0; i < 40; i++ {
		if err := c.Set(context.Background(), "P", `^Big(`+strconv.Itoa(i)+`)`, value); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	before := len(s.jrn.Segments())
	if err := s.purge(); err != nil {
		t.Fatal(err)
	}
	after := len(s.jrn.Segments())
	if before < 4 || after != 1 {
		t.Fatalf("segments before purge %d, after %d; want several, then 1", before, after)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, dir)
	c2, err := client.Dial(context.Background(), s2.DataAddr(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for _, i := range []int{0, 39} {
		if v, ok, err := c2.Get(context.Background(), "P", `^Big(`+strconv.Itoa(i)+`)`); err != nil || !ok || len(v) != len(value) {
			t.Fatalf("^Big(%d) after purge and restart: %d bytes, %v, %v", i, len(v), ok, err)
		}
	}
}

// A member shutting down answers every request it executed, then tells each client that the requests it did not answer
// were not executed and ends the stream cleanly, even while the client keeps sending (no connection reset, which could
// swallow the notice).
func TestShutdownTellsClientsWhatWasNotExecuted(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := net.Dial("tcp", s.DataAddr())
	if err != nil {
		t.Fatal(err)
	}
	c := wire.NewConn(nc, 0)
	defer c.Close()
	if _, err := wire.ClientHandshake(ctx, c, wire.Hello{Software: "test", Purpose: wire.PurposeClient, Name: "app"}); err != nil {
		t.Fatal(err)
	}
	req := wire.EncodeRequest(nil, &wire.Request{DB: "NOPE", Ops: []wire.Op{{Kind: wire.OpGet, Key: []byte("^A\x00")}}})
	stop := make(chan struct{})
	writing := make(chan struct{})
	go func() { // requests keep coming, before and after the shutdown begins
		defer close(writing)
		for id := uint64(1); ; id++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if c.WriteFrame(wire.Frame{Kind: wire.KindRequest, ReqID: id, Payload: req}) != nil {
				return
			}
		}
	}()
	shut := make(chan error, 1)
	answered := 0
	for {
		f, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("after %d answers, the stream ended without the notice: %v", answered, err)
		}
		if f.Kind == wire.KindResponse {
			if answered++; answered == 1 {
				go func() { shut <- s.Shutdown(ctx) }()
			}
			continue
		}
		if f.Kind != wire.KindError {
			t.Fatalf("unexpected frame %s", f.Kind)
		}
		e, err := wire.DecodeError(f.Payload)
		if err != nil || e.Code != wire.CodeShuttingDown || !strings.Contains(e.Message, "not executed") {
			t.Fatalf("notice %+v (%v)", e, err)
		}
		break
	}
	close(stop)
	<-writing
	if _, err := c.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the notice: %v, want the end of the stream", err)
	}
	c.Close()
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}
