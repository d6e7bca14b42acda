package agent

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/internal/memberproc"
)

// helperArg makes the test binary act as a supervised member: `agent-test-member MODE [FILE]`.
const helperArg = "agent-test-member"

func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == helperArg {
		os.Exit(helperMember(os.Args[2:]))
	}
	code := m.Run()
	memberproc.RemoveBuilds()
	os.Exit(code)
}

// helperMember is a stand-in member process. "serve" runs until a signal ends it (SIGTERM's default action, so that the
// exit status does not depend on how far the process got before the signal); "once FILE" exits 3 the first time (when
// FILE does not exist yet, creating it) and serves from then on.
func helperMember(args []string) int {
	if args[0] == "once" {
		if _, err := os.Stat(args[1]); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(args[1], nil, 0o644); err != nil {
				return 1
			}
			return 3
		}
	}
	for {
		time.Sleep(time.Hour)
	}
}

// testToken is the token of test agents configured with one.
const testToken = "s3cret"

// helperMemberConfig is a member run by the test binary in mode args.
func helperMemberConfig(tb testing.TB, name string, autostart bool, args ...string) MemberConfig {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	return MemberConfig{Name: name, Binary: exe, Args: append([]string{helperArg}, args...), DataDir: tb.TempDir(), Autostart: autostart}
}

// newTestAgent makes an agent with cfg, logging to the test. At cleanup it kills the members still running and closes.
func newTestAgent(tb testing.TB, cfg Config) *Agent {
	tb.Helper()
	a, err := New(cfg, Options{Logger: zerolog.New(zerolog.NewTestWriter(tb)), RestartDelay: time.Millisecond})
	if err != nil {
		tb.Fatalf("new agent: %v", err)
	}
	tb.Cleanup(func() {
		for _, m := range cfg.Members {
			if err := a.Kill(context.Background(), m.Name); err != nil {
				tb.Errorf("kill member %s at cleanup: %v", m.Name, err)
			}
		}
		if err := a.Close(); err != nil {
			tb.Errorf("close agent: %v", err)
		}
	})
	return a
}

// serveTest serves the agent's API on a test HTTP server and returns a client presenting token.
func serveTest(tb testing.TB, a *Agent, token string) (*Client, *httptest.Server) {
	tb.Helper()
	srv := httptest.NewServer(a.Handler())
	tb.Cleanup(srv.Close)
	return NewClient(srv.Listener.Addr().String(), nil, token), srv
}

// serveListener runs a.Serve on a fresh loopback listener and returns its address.
func serveListener(tb testing.TB, a *Agent) string {
	tb.Helper()
	ln := serveListenerRaw(tb)
	served := make(chan error, 1)
	go func() { served <- a.Serve(ln) }()
	tb.Cleanup(func() {
		if err := a.Close(); err != nil {
			tb.Errorf("close agent: %v", err)
		}
		if err := <-served; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// serveListenerRaw returns a loopback listener closed at cleanup.
func serveListenerRaw(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln
}

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(tb testing.TB, what string, cond func() (bool, error)) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			tb.Fatalf("%s: still not so after a minute (last error: %v)", what, lastErr)
		}
		<-tick.C
	}
}

// alive reports whether a process with pid exists.
func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// writeFile writes data to dir/name, creating directories.
func writeFile(tb testing.TB, dir, name string, data []byte) {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}
