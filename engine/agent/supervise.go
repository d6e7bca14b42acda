package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

const (
	// defaultRestartDelay is the first wait before an autostarted member that exited is started again; it doubles with
	// every quick exit up to maxRestartDelay, so a member that cannot start does not spin.
	defaultRestartDelay = time.Second
	maxRestartDelay     = 30 * time.Second
	// stableRun is how long a run must last for its exit not to count as a quick one.
	stableRun = time.Minute
)

// process is one supervised member and its current (or last) run.
type process struct {
	cfg MemberConfig

	// Guarded by the supervisor's mutex.
	installed      string // the binary installed through the agent, run instead of cfg.Binary; empty: none
	cmd            *exec.Cmd
	exited         chan struct{} // closed when the current run has exited and the fields below say so
	running        bool
	started        time.Time
	exitStatus     string
	stoppedByAgent bool
	startErr       string      // why the last restart by the agent failed
	restart        *time.Timer // pending restart of an autostarted member
	quickExits     int         // consecutive runs shorter than stableRun
}

// supervisor starts, stops and kills the member processes and restarts autostarted ones that exit on their own.
type supervisor struct {
	log          zerolog.Logger
	restartDelay time.Duration

	mu      sync.Mutex
	members map[string]*process
	order   []string // configuration order, for listings
	closed  bool
}

func newSupervisor(members []MemberConfig, restartDelay time.Duration, log zerolog.Logger) *supervisor {
	s := &supervisor{log: log, restartDelay: restartDelay, members: map[string]*process{}}
	for _, m := range members {
		s.members[m.Name] = &process{cfg: m}
		s.order = append(s.order, m.Name)
	}
	return s
}

// binary is the executable the member is run with: the one installed through the agent, else the configured one.
func (p *process) binary() string {
	if p.installed != "" {
		return p.installed
	}
	return p.cfg.Binary
}

func (s *supervisor) lookupLocked(name string) (*process, error) {
	p, ok := s.members[name]
	if !ok {
		return nil, fmt.Errorf("member %s is not supervised by this agent: %w", name, ErrNotFound)
	}
	return p, nil
}

// autostart starts every member marked autostart. A member that cannot be started is an error naming it: at the
// agent's start-up that is a configuration mistake to report, not to retry.
func (s *supervisor) autostart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range s.order {
		p := s.members[name]
		if !p.cfg.Autostart || p.running {
			continue
		}
		if err := s.spawnLocked(p); err != nil {
			return err
		}
	}
	return nil
}

// start starts the member unless it runs already, and lets autostart restart it again.
func (s *supervisor) start(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	p, err := s.lookupLocked(name)
	if err != nil {
		return err
	}
	p.stoppedByAgent = false
	p.quickExits = 0
	s.cancelRestartLocked(p)
	if p.running {
		return nil
	}
	return s.spawnLocked(p)
}

// spawnLocked starts a run of p. The member gets its own process group, so that a signal meant for the agent (a
// Ctrl-C at its terminal) does not reach it: members run on without the agent.
func (s *supervisor) spawnLocked(p *process) error {
	out := os.Stderr
	if p.cfg.Log != "" {
		f, err := os.OpenFile(p.cfg.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("start member %s: open its log: %w", p.cfg.Name, err)
		}
		// The child holds its own descriptor once started.
		defer f.Close()
		out = f
	}
	cmd := exec.Command(p.binary(), p.cfg.Args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start member %s with %s: %w", p.cfg.Name, p.binary(), err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.running, p.started, p.startErr = cmd, exited, true, time.Now(), ""
	s.log.Info().Str("member", p.cfg.Name).Int("pid", cmd.Process.Pid).Str("binary", p.binary()).Msg("member started")
	go s.wait(p, cmd, exited)
	return nil
}

// wait reaps one run and, for an autostarted member that the agent did not stop, schedules the next.
func (s *supervisor) wait(p *process, cmd *exec.Cmd, exited chan struct{}) {
	waitErr := cmd.Wait()
	s.mu.Lock()
	defer close(exited)
	defer s.mu.Unlock()
	p.running = false
	p.exitStatus = cmd.ProcessState.String()
	ev := s.log.Info()
	if waitErr != nil && !p.stoppedByAgent {
		ev = s.log.Warn()
	}
	ev.Str("member", p.cfg.Name).Int("pid", cmd.Process.Pid).Str("exit_status", p.exitStatus).
		Bool("stopped_by_agent", p.stoppedByAgent).Msg("member exited")
	if !p.cfg.Autostart || p.stoppedByAgent || s.closed {
		return
	}
	if time.Since(p.started) >= stableRun {
		p.quickExits = 0
	}
	s.scheduleRestartLocked(p)
}

// scheduleRestartLocked starts p again after a delay that grows with its consecutive quick exits.
func (s *supervisor) scheduleRestartLocked(p *process) {
	delay := s.restartDelay
	for i := 0; i < p.quickExits && delay < maxRestartDelay; i++ {
		delay *= 2
	}
	delay = min(delay, maxRestartDelay)
	p.quickExits++
	var timer *time.Timer
	timer = time.AfterFunc(delay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if p.restart != timer || s.closed {
			return
		}
		p.restart = nil
		if err := s.spawnLocked(p); err != nil {
			// Nobody waits for this start: the failure shows in the member's status while the agent keeps trying.
			p.startErr = err.Error()
			s.log.Error().Err(err).Str("member", p.cfg.Name).Msg("restart of member failed")
			s.scheduleRestartLocked(p)
		}
	})
	p.restart = timer
}

func (s *supervisor) cancelRestartLocked(p *process) {
	if p.restart != nil {
		p.restart.Stop()
		p.restart = nil
	}
}

// setBinary makes the member run with binary, installed through the agent, from its next start on.
func (s *supervisor) setBinary(name, binary string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.lookupLocked(name)
	if err != nil {
		return err
	}
	p.installed = binary
	return nil
}

// restart stops a running member as stop does and starts it again, and reports whether it did; a member that is not
// running is left as it is.
func (s *supervisor) restart(ctx context.Context, name string) (bool, error) {
	s.mu.Lock()
	p, err := s.lookupLocked(name)
	running := err == nil && p.running
	s.mu.Unlock()
	if !running {
		return false, err
	}
	if err := s.stop(ctx, name); err != nil {
		return false, err
	}
	if err := s.start(name); err != nil {
		return false, err
	}
	return true, nil
}

// stop sends SIGTERM and waits until the member has exited or ctx is done.
func (s *supervisor) stop(ctx context.Context, name string) error {
	return s.signal(ctx, name, syscall.SIGTERM)
}

// kill sends SIGKILL and waits until the member has exited: when it returns nil the process is gone, which is what makes
// it a fence.
func (s *supervisor) kill(ctx context.Context, name string) error {
	return s.signal(ctx, name, syscall.SIGKILL)
}

func (s *supervisor) signal(ctx context.Context, name string, sig syscall.Signal) error {
	s.mu.Lock()
	p, err := s.lookupLocked(name)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	p.stoppedByAgent = true
	s.cancelRestartLocked(p)
	if !p.running {
		s.mu.Unlock()
		return nil
	}
	exited, proc := p.exited, p.cmd.Process
	err = proc.Signal(sig)
	s.mu.Unlock()
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal member %s (pid %d) with %s: %w", name, proc.Pid, sig, err)
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("member %s (pid %d) still running after %s: %w", name, proc.Pid, sig, ctx.Err())
	}
}

// status is the process part of a member's status.
func (s *supervisor) status(name string) (MemberStatus, MemberConfig, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.lookupLocked(name)
	if err != nil {
		return MemberStatus{}, MemberConfig{}, err
	}
	st := MemberStatus{
		Name:           name,
		Running:        p.running,
		Started:        p.started,
		ExitStatus:     p.exitStatus,
		StoppedByAgent: p.stoppedByAgent,
		Error:          p.startErr,
	}
	if p.running {
		st.PID = p.cmd.Process.Pid
	}
	return st, p.cfg, nil
}

func (s *supervisor) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}

// close stops supervising: no more restarts or starts. The members keep running.
func (s *supervisor) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, p := range s.members {
		s.cancelRestartLocked(p)
	}
}
