package arbiter

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/internal/memberproc"
)

func TestMain(m *testing.M) {
	code := m.Run()
	memberproc.RemoveBuilds()
	os.Exit(code)
}

// arbiterProcess is a running `member arbiter`.
type arbiterProcess struct {
	cmd   *exec.Cmd
	ready chan struct{} // closed when the arbiter logs that it serves
	eof   chan struct{} // closed when its log ends (it exited)

	mu  sync.Mutex
	log []string
}

// startArbiter runs `member arbiter args...` and waits until it serves.
func startArbiter(tb testing.TB, args ...string) *arbiterProcess {
	tb.Helper()
	p := &arbiterProcess{
		cmd:   exec.Command(memberproc.Build(tb, "member"), append([]string{"arbiter", "--log-format", "json"}, args...)...),
		ready: make(chan struct{}),
		eof:   make(chan struct{}),
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start member arbiter: %v", err)
	}
	tb.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.eof
			p.cmd.Wait()
		}
	})
	go func() {
		defer close(p.eof)
		var once sync.Once
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log = append(p.log, sc.Text())
			p.mu.Unlock()
			if strings.Contains(sc.Text(), "arbiter serving") {
				once.Do(func() { close(p.ready) })
			}
		}
	}()
	select {
	case <-p.ready:
	case <-p.eof:
		tb.Fatalf("member arbiter exited during start-up:\n%s", p.logText())
	case <-time.After(time.Minute):
		tb.Fatalf("member arbiter not serving after a minute:\n%s", p.logText())
	}
	return p
}

func (p *arbiterProcess) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, "\n")
}

// terminate sends SIGTERM and returns the exit status.
func (p *arbiterProcess) terminate(tb testing.TB) error {
	tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-p.eof:
	case <-time.After(time.Minute):
		tb.Fatalf("member arbiter still running a minute after SIGTERM:\n%s", p.logText())
	}
	return p.cmd.Wait()
}

func TestMemberArbiterCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "arbiter")
	addr := memberproc.FreeAddr(t, "127.0.0.1")
	p := startArbiter(t, "--listen", addr, "--data-dir", dir, "--token", "s3cret")

	c := dial(t, addr, nil, "s3cret")
	v, err := c.Report(timeout(t), primaryReport("a", 4))
	if err != nil {
		t.Fatalf("report to member arbiter: %v\n%s", err, p.logText())
	}
	if v.Epoch != 4 || v.Primary != "a" {
		t.Fatalf("view = %+v, want epoch 4 primary a", v)
	}
	if err := p.terminate(t); err != nil {
		t.Fatalf("member arbiter after SIGTERM: %v, want exit 0\n%s", err, p.logText())
	}

	// The recorded epoch outlives the process.
	s := newServer(t, dir, newClock(), nil)
	if st := s.State()["APP"]; st.Epoch != 4 || st.Primary != "a" {
		t.Fatalf("state left by member arbiter = %+v, want epoch 4 primary a", st)
	}
}

func TestMemberArbiterUsage(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		message string
	}{
		{"no data dir", []string{"arbiter"}, "--data-dir"},
		{"partial tls", []string{"arbiter", "--data-dir", t.TempDir(), "--tls-cert", "a.crt"}, "go together"},
		{"bad log level", []string{"arbiter", "--data-dir", t.TempDir(), "--log-level", "loud"}, "log-level"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := memberproc.CLI(t, tc.args...)
			if r.ExitCode != 2 || !strings.Contains(r.Stderr, tc.message) {
				t.Fatalf("member %s: exit %d, stderr %q; want exit 2 mentioning %q", strings.Join(tc.args, " "), r.ExitCode, r.Stderr, tc.message)
			}
		})
	}
}
