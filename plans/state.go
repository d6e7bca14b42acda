package plans

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mirrorkit/mirrorkit/internal/atomicfile"
)

// StepStatus is where a step stands in an execution.
type StepStatus string

// The only statuses a step can have.
const (
	StatusPending StepStatus = "pending"
	StatusRunning StepStatus = "running" // found on load: the process stopped mid-step; the step is retried
	StatusDone    StepStatus = "done"
	StatusFailed  StepStatus = "failed"
	StatusUndone  StepStatus = "undone"
)

func (s StepStatus) valid() bool {
	switch s {
	case StatusPending, StatusRunning, StatusDone, StatusFailed, StatusUndone:
		return true
	}
	return false
}

// StepState records the execution of one step.
type StepState struct {
	N        int           `json:"n"`
	Status   StepStatus    `json:"status"`
	Started  time.Time     `json:"started,omitzero"`
	Ended    time.Time     `json:"ended,omitzero"`
	Error    string        `json:"error,omitempty"` // why the step failed, for people
	Checks   []CheckResult `json:"checks,omitempty"`
	Attempts int           `json:"attempts"`
}

// State is the persisted progress of one plan, kept in a file next to it.
type State struct {
	PlanID   string      `json:"plan_id"`
	Version  int         `json:"version"`
	Steps    []StepState `json:"steps"`
	Updated  time.Time   `json:"updated"`
	Finished bool        `json:"finished"` // every step is done
}

var (
	// ErrWrongPlan: the state file belongs to another plan.
	ErrWrongPlan = errors.New("state of another plan")
	// ErrLocked: another process is executing or undoing the plan.
	ErrLocked = errors.New("plan is locked")
)

func newState(p *Plan) *State {
	st := &State{PlanID: p.ID, Version: FormatVersion, Steps: make([]StepState, len(p.Steps))}
	for i := range st.Steps {
		st.Steps[i] = StepState{N: i + 1, Status: StatusPending}
	}
	return st
}

// LoadState reads the state file at path. A missing file gives an error matching fs.ErrNotExist: the plan was never executed.
func LoadState(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("plan state: %w", err)
	}
	st, err := decodeState(data)
	if err != nil {
		return nil, fmt.Errorf("plan state %s: %w", path, err)
	}
	return st, nil
}

func decodeState(data []byte) (*State, error) {
	if err := checkVersion("state", data); err != nil {
		return nil, err
	}
	var st State
	if err := decodeStrict(data, &st); err != nil {
		return nil, invalidf("decode state: %v", err)
	}
	if st.PlanID == "" {
		return nil, invalidf("state names no plan")
	}
	for i := range st.Steps {
		s := &st.Steps[i]
		switch {
		case s.N != i+1:
			return nil, invalidf("state entry %d is numbered %d: steps must be numbered 1..n in order", i+1, s.N)
		case !s.Status.valid():
			return nil, invalidf("step %d has unknown status %q", s.N, s.Status)
		case s.Attempts < 0:
			return nil, invalidf("step %d has a negative attempt count", s.N)
		}
		if len(s.Checks) == 0 {
			s.Checks = nil
		}
	}
	return &st, nil
}

// loadFor loads the state of p from path and checks that it is p's. A missing file gives an error matching fs.ErrNotExist.
func loadFor(p *Plan, path string) (*State, error) {
	st, err := LoadState(path)
	if err != nil {
		return nil, err
	}
	if st.PlanID != p.ID {
		return nil, fmt.Errorf("%s belongs to plan %s, not %s: give the plan file it was written for, or another state path: %w",
			path, st.PlanID, p.ID, ErrWrongPlan)
	}
	if len(st.Steps) != len(p.Steps) {
		return nil, fmt.Errorf("%s records %d steps but plan %s has %d: the plan file was changed after it was executed: %w",
			path, len(st.Steps), p.ID, len(p.Steps), ErrInvalid)
	}
	return st, nil
}

func (st *State) save(path string) error {
	st.Updated = time.Now().UTC()
	if err := atomicfile.WriteJSON(path, st); err != nil {
		return fmt.Errorf("plan %s state: %w", st.PlanID, err)
	}
	return nil
}

// lockFile is an exclusive flock on statePath+".lock", held while a process executes or undoes a plan. The kernel drops it
// when the process dies, so a kill -9 never leaves a stale lock. The file holds the owner's pid for the error others see.
type lockFile struct{ f *os.File }

func lock(planID, statePath string) (*lockFile, error) {
	path := statePath + ".lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock plan %s: %w", planID, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("plan %s is being executed by another process (%s): wait for it to finish or stop it: %w",
				planID, lockOwner(path), ErrLocked)
		}
		return nil, fmt.Errorf("lock plan %s: %s: %w", planID, path, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock plan %s: %w", planID, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock plan %s: %w", planID, err)
	}
	return &lockFile{f: f}, nil
}

func lockOwner(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "pid unknown"
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return "pid unknown"
	}
	return "pid " + strconv.Itoa(pid)
}

// unlock releases the lock; closing the descriptor drops the flock. The file stays: removing it would let two processes
// hold locks on different inodes of the same name.
func (l *lockFile) unlock() {
	l.f.Close()
}
