// Package memberproc builds the real mirrorkit binaries and runs them as processes for end-to-end tests: free loopback ports,
// start and wait until serving, SIGTERM, SIGKILL, restart, and running CLI commands. It is test support only; no production
// code imports it.
package memberproc

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
)

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{}
)

// Build compiles ./cmd/<name> of this module once per test process and returns the binary's path. With MIRRORKIT_RACE set
// in the environment it builds with the race detector.
func Build(tb testing.TB, name string) string {
	tb.Helper()
	return build(tb, name, name, "")
}

// BuildVersion compiles ./cmd/<name> as a release of the given software version and format level (set with -ldflags, as
// a release build does), once per test process: two different builds of member for upgrade tests.
func BuildVersion(tb testing.TB, name, software string, level int) string {
	tb.Helper()
	const pkg = "github.com/mirrorkit/mirrorkit/engine/version"
	return build(tb, name, fmt.Sprintf("%s-%s-level%d", name, software, level),
		fmt.Sprintf("-X %s.Software=%s -X %s.level=%d", pkg, software, pkg, level))
}

func build(tb testing.TB, name, file, ldflags string) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[file]; ok {
		return p
	}
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "mirrorkit-bin-")
		if err != nil {
			tb.Fatalf("build dir: %v", err)
		}
		buildDir = dir
	}
	out := filepath.Join(buildDir, file)
	args := []string{"build", "-o", out}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	if os.Getenv("MIRRORKIT_RACE") != "" {
		// Member processes with the race detector; GORACE=log_path=… collects their reports.
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/"+name)...)
	cmd.Dir = moduleRoot(tb)
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build ./cmd/%s: %v\n%s", name, err, msg)
	}
	built[file] = out
	return out
}

// RemoveBuilds deletes the binaries built by Build; call it from TestMain after m.Run.
func RemoveBuilds() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
		buildDir = ""
		built = map[string]string{}
	}
}

func moduleRoot(tb testing.TB) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// FreeAddr returns host:port with a port that was free a moment ago on host (a 127.0.0.x address).
func FreeAddr(tb testing.TB, host string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		tb.Fatalf("free port on %s: %v", host, err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Config describes a member process to start.
type Config struct {
	Name    string
	DataDir string   // default: a new test temp dir
	Host    string   // default 127.0.0.1
	Args    []string // extra flags for `member run`
	// ConfigFile starts the member with `run --config ConfigFile` only; Addr and AdminAddr must then match the file.
	ConfigFile      string
	Addr, AdminAddr string
	// ClientTLS is used to check that a member speaking TLS is serving (and by Client).
	ClientTLS *tls.Config
	// Binary is the member binary to run (default: this module's, built by Build).
	Binary string
}

// Member is a running (or stopped) member process.
type Member struct {
	tb        testing.TB
	bin       string
	cfg       Config
	Addr      string
	AdminAddr string
	LogPath   string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // exit status once exited
}

// Start runs `member run` with fresh loopback ports and waits until its data port answers a handshake.
func Start(tb testing.TB, cfg Config) *Member {
	tb.Helper()
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	bin := cfg.Binary
	if bin == "" {
		bin = Build(tb, "member")
	}
	m := &Member{tb: tb, bin: bin, cfg: cfg, LogPath: filepath.Join(tb.TempDir(), cfg.Name+".log")}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		m.Addr, m.AdminAddr = cfg.Addr, cfg.AdminAddr
		if cfg.ConfigFile == "" {
			m.Addr, m.AdminAddr = FreeAddr(tb, cfg.Host), FreeAddr(tb, cfg.Host)
		}
		if lastErr = m.start(); lastErr == nil {
			tb.Cleanup(m.Stop)
			return m
		}
		if cfg.ConfigFile != "" || !strings.Contains(lastErr.Error(), "address already in use") {
			break
		}
	}
	tb.Fatalf("start member %s: %v", cfg.Name, lastErr)
	return nil
}

func (m *Member) start() error {
	args := append([]string{"run", "--name", m.cfg.Name, "--data-dir", m.cfg.DataDir, "--listen", m.Addr,
		"--admin-listen", m.AdminAddr, "--log-format", "json"}, m.cfg.Args...)
	if m.cfg.ConfigFile != "" {
		args = append([]string{"run", "--config", m.cfg.ConfigFile}, m.cfg.Args...)
	}
	logf, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(m.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	m.mu.Lock()
	m.cmd, m.exited, m.err = cmd, exited, nil
	m.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		m.mu.Lock()
		m.err = err
		m.mu.Unlock()
		close(exited)
	}()
	return m.waitReady(exited)
}

// waitReady polls the data port until a handshake succeeds or the process exits.
func (m *Member) waitReady(exited chan struct{}) error {
	err := WaitServing(m.Addr, m.cfg.ClientTLS, exited)
	if errors.Is(err, ErrExitedFirst) {
		return fmt.Errorf("member exited during start-up (%v):\n%s", m.ExitErr(), m.LogTail(40))
	}
	if err != nil {
		return fmt.Errorf("member %w\n%s", err, m.LogTail(40))
	}
	return nil
}

// ErrExitedFirst is returned by WaitServing when the process it waits on exits before its data port serves.
var ErrExitedFirst = errors.New("process exited before serving")

// serveTimeout is how long WaitServing waits for a data port to serve.
const serveTimeout = 60 * time.Second

// WaitServing polls the member data port addr until a client handshake (over tlsConf when it is set) succeeds. It gives
// up with ErrExitedFirst as soon as exited is closed (the process that should serve is gone), or after 60 seconds.
func WaitServing(addr string, tlsConf *tls.Config, exited <-chan struct{}) error {
	deadline := time.Now().Add(serveTimeout)
	for backoff := 5 * time.Millisecond; ; backoff = min(backoff*2, 200*time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := client.Dial(ctx, addr, client.Options{Conns: 1, Name: "memberproc", TLS: tlsConf})
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return ErrExitedFirst
		case <-time.After(backoff):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving on %s after %s: %w", addr, serveTimeout, err)
		}
	}
}

// Restart starts the stopped member again on the same ports and data directory.
func (m *Member) Restart() {
	m.tb.Helper()
	if m.Running() {
		m.tb.Fatalf("restart member %s: still running", m.cfg.Name)
	}
	if err := m.start(); err != nil {
		m.tb.Fatalf("restart member %s: %v", m.cfg.Name, err)
	}
}

// Running reports whether the process is alive.
func (m *Member) Running() bool {
	m.mu.Lock()
	exited := m.exited
	m.mu.Unlock()
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// ExitErr is the process's exit status (nil for exit 0) once it has exited.
func (m *Member) ExitErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Signal sends sig to the process.
func (m *Member) Signal(sig syscall.Signal) {
	m.mu.Lock()
	cmd := m.cmd
	m.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		cmd.Process.Signal(sig)
	}
}

// Pid is the process id of the running process (0 when none was started).
func (m *Member) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Wait waits for the process to exit, up to d, and returns its exit status.
func (m *Member) Wait(d time.Duration) error {
	m.mu.Lock()
	exited := m.exited
	m.mu.Unlock()
	select {
	case <-exited:
		return m.ExitErr()
	case <-time.After(d):
		return fmt.Errorf("member %s still running after %s", m.cfg.Name, d)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (m *Member) Kill() {
	m.Signal(syscall.SIGKILL)
	m.Wait(time.Minute)
}

// Terminate sends SIGTERM and returns the exit status.
func (m *Member) Terminate() error {
	m.Signal(syscall.SIGTERM)
	return m.Wait(time.Minute)
}

// Stop ends the process if it still runs (cleanup).
func (m *Member) Stop() {
	if m.Running() {
		m.Kill()
	}
}

// LogTail returns the last n lines of the member's log.
func (m *Member) LogTail(n int) string { return TailFile(m.LogPath, n) }

// TailFile returns the last n lines of the file at path (empty if it cannot be read, e.g. before a process created it).
func TailFile(path string, n int) string {
	data, _ := os.ReadFile(path)
	return Tail(string(data), n)
}

// Tail returns the last n lines of text.
func Tail(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Client dials the member's data port; the client is closed at cleanup.
func (m *Member) Client(tb testing.TB, conns int) *client.Client {
	tb.Helper()
	return Dial(tb, m.cfg.Name, m.Addr, m.cfg.ClientTLS, conns)
}

// Dial dials the data port addr of the member called name (over tlsConf when it is set) with conns connections; the
// client is closed at cleanup.
func Dial(tb testing.TB, name, addr string, tlsConf *tls.Config, conns int) *client.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, client.Options{Conns: conns, Name: tb.Name(), TLS: tlsConf})
	if err != nil {
		tb.Fatalf("dial member %s: %v", name, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Result is the outcome of one CLI command.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
}

// CLI runs the member binary with args (for commands that talk to a member, include "--member", m.Addr).
func CLI(tb testing.TB, args ...string) Result {
	tb.Helper()
	return Run(tb, "member", nil, args...)
}

// RunUntil runs the binary of ./cmd/<name> with args and env, decoding its standard output as a stream of JSON values;
// when match accepts one, it kills the process with SIGKILL (as a crash would) and returns true. If the process ends
// first, it returns false and what the process printed and its exit code. It fails the test when neither happens within
// limit.
func RunUntil(tb testing.TB, name string, env []string, limit time.Duration, match func(json.RawMessage) bool, args ...string) (bool, Result) {
	tb.Helper()
	cmd := exec.Command(Build(tb, name), args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	reached := make(chan bool, 1)
	var out bytes.Buffer
	go func() {
		dec := json.NewDecoder(io.TeeReader(stdout, &out))
		for {
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				io.Copy(&out, stdout)
				reached <- false
				return
			}
			if match(v) {
				reached <- true
				io.Copy(io.Discard, stdout)
				return
			}
		}
	}()
	select {
	case ok := <-reached:
		if ok {
			cmd.Process.Kill()
			cmd.Wait()
			return true, Result{}
		}
	case <-time.After(limit):
		tb.Fatalf("%s %v: no awaited output in %s: %s", name, args, limit, errb.String())
	}
	// The output is read once the process and its output copying are done.
	err = cmd.Wait()
	res := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.ExitCode = ee.ExitCode()
	} else if err != nil {
		tb.Fatal(err)
	}
	return false, res
}

// Run runs the binary of ./cmd/<name> (built by Build) with args, and env (KEY=VALUE) added to the environment.
func Run(tb testing.TB, name string, env []string, args ...string) Result {
	tb.Helper()
	cmd := exec.Command(Build(tb, name), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
	case err != nil:
		tb.Fatalf("run %s %v: %v", name, args, err)
	}
	return res
}
