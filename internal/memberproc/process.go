package memberproc

import (
	"bufio"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a `member` sub-command other than `run` (an arbiter, an agent) started for a test, with its log captured.
type Process struct {
	cmd   *exec.Cmd
	ready chan struct{}
	eof   chan struct{}

	mu  sync.Mutex
	log []string
}

// StartProcess runs `member args...` and waits until a line of its log contains readyText; it is killed at cleanup.
func StartProcess(tb testing.TB, readyText string, args ...string) *Process {
	tb.Helper()
	p := &Process{cmd: exec.Command(Build(tb, "member"), args...), ready: make(chan struct{}), eof: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start member %s: %v", strings.Join(args, " "), err)
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
			if strings.Contains(sc.Text(), readyText) {
				once.Do(func() { close(p.ready) })
			}
		}
	}()
	select {
	case <-p.ready:
	case <-p.eof:
		tb.Fatalf("member %s exited during start-up:\n%s", args[0], p.Log())
	case <-time.After(time.Minute):
		tb.Fatalf("member %s not ready after a minute:\n%s", args[0], p.Log())
	}
	return p
}

// Log returns what the process has logged so far.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, "\n")
}

// Terminate sends SIGTERM and returns the exit status.
func (p *Process) Terminate(tb testing.TB) error {
	tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-p.eof:
	case <-time.After(time.Minute):
		tb.Fatalf("member process still running a minute after SIGTERM:\n%s", p.Log())
	}
	return p.cmd.Wait()
}

// Signal sends sig to the process.
func (p *Process) Signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		tb.Fatalf("signal %s: %v", sig, err)
	}
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Process) Kill(tb testing.TB) {
	tb.Helper()
	p.cmd.Process.Signal(syscall.SIGCONT) // a stopped process dies at once either way; this keeps Wait from hanging on odd kernels
	p.cmd.Process.Kill()
	select {
	case <-p.eof:
	case <-time.After(time.Minute):
		tb.Fatalf("process still running a minute after SIGKILL:\n%s", p.Log())
	}
	p.cmd.Wait()
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has ended (its log has reached its end).
func (p *Process) Done() <-chan struct{} { return p.eof }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.eof:
		return true
	default:
		return false
	}
}
