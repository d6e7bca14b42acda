package plans

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// HoldEnv names an environment variable for crash tests: set to STEP:PHASE (for example "3:verify"), an execution stops
// right after reporting that phase of that step and waits there until it is interrupted, so that a test can kill it at that
// exact point however fast the step is. It has no effect when unset.
const HoldEnv = "MIRRORKIT_PLAN_HOLD_AT"

// Handler carries out the steps of one kind. Tools supply one per kind they put in their plans.
type Handler struct {
	// Checks evaluates the step's pre-checks against the live system; it must not change anything. Called by DryRun and
	// right before Run. Return one result per Check in step.Checks (matched by name); a missing result counts as failed.
	Checks func(ctx context.Context, s *Step) []CheckResult
	Run    func(ctx context.Context, s *Step, ev Events) error // must be idempotent: re-run after a crash mid-step
	Verify func(ctx context.Context, s *Step) error            // nil: no verification
	Undo   func(ctx context.Context, s *Step) error            // nil: step has no undo
}

// CheckResult is the outcome of one pre-check.
type CheckResult struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Handlers maps step kinds to their handlers.
type Handlers map[string]Handler

// StepReport is what a dry run found for one step.
type StepReport struct {
	N      int           `json:"n"`
	Checks []CheckResult `json:"checks"`
}

// OK reports whether every pre-check of the step passed.
func (r StepReport) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return true
}

var (
	// ErrUnknownKind: a step's kind has no handler.
	ErrUnknownKind = errors.New("unknown step kind")
	// ErrCheckFailed: a pre-check failed when the step was about to run; nothing of the step was done.
	ErrCheckFailed = errors.New("pre-check failed")
	// ErrPastPointOfNoReturn: undo was asked for after a step that cannot be undone was done.
	ErrPastPointOfNoReturn = errors.New("past the point of no return")
)

// checkHandlers makes sure every step can be carried out before anything runs.
func checkHandlers(p *Plan, h Handlers) error {
	for _, s := range p.Steps {
		hd, ok := h[s.Kind]
		if !ok {
			return fmt.Errorf("plan %s step %d: %w %q: this tool cannot carry it out; use the tool version that wrote the plan",
				p.ID, s.N, ErrUnknownKind, s.Kind)
		}
		if hd.Run == nil {
			return fmt.Errorf("plan %s step %d: handler for kind %q has no Run", p.ID, s.N, s.Kind)
		}
	}
	return nil
}

// evaluate runs the step's pre-checks and returns one result per declared check, in the plan's order.
func evaluate(ctx context.Context, hd Handler, s *Step) []CheckResult {
	if len(s.Checks) == 0 {
		return nil
	}
	byName := map[string]CheckResult{}
	if hd.Checks != nil {
		for _, r := range hd.Checks(ctx, s) {
			byName[r.Name] = r
		}
	}
	out := make([]CheckResult, len(s.Checks))
	for i, c := range s.Checks {
		r, ok := byName[c.Name]
		if !ok {
			r = CheckResult{Name: c.Name, Detail: "the check gave no result"}
		}
		out[i] = r
	}
	return out
}

// DryRun evaluates every step's pre-checks against the live system and reports them. It calls nothing else and writes nothing.
func DryRun(ctx context.Context, p *Plan, h Handlers) ([]StepReport, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	if err := checkHandlers(p, h); err != nil {
		return nil, err
	}
	reports := make([]StepReport, len(p.Steps))
	for i := range p.Steps {
		s := &p.Steps[i]
		reports[i] = StepReport{N: s.N, Checks: evaluate(ctx, h[s.Kind], s)}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("dry run of plan %s interrupted at step %d: %w", p.ID, s.N, err)
		}
	}
	return reports, nil
}

// run holds what one Execute or Undo call works with.
type run struct {
	p         *Plan
	h         Handlers
	st        *State
	statePath string
	ev        Events
}

func (r *run) emit(s *Step, phase, msg string) {
	r.ev.Event(Event{Time: time.Now(), Plan: r.p.ID, Step: s.N, Kind: s.Kind, Phase: phase, Message: msg})
}

// fail records why step s failed, persists it and returns err with the step named.
func (r *run) fail(ctx context.Context, s *Step, reason string, err error) error {
	if ctx.Err() != nil {
		reason = "interrupted: " + reason
	}
	ss := &r.st.Steps[s.N-1]
	ss.Status = StatusFailed
	ss.Ended = time.Now().UTC()
	ss.Error = reason
	r.emit(s, PhaseFailed, reason)
	if serr := r.st.save(r.statePath); serr != nil {
		return errors.Join(fmt.Errorf("plan %s step %d (%s): %s", r.p.ID, s.N, s.Title, reason), serr)
	}
	return fmt.Errorf("plan %s step %d (%s): %w", r.p.ID, s.N, s.Title, err)
}

// Execute runs the steps of p that are not done yet, in order, persisting the state at statePath after every transition. Run
// the same call again after a failure, a crash or a kill -9 to resume: done steps are skipped and the step that stopped is
// retried from its pre-checks. It returns the state reached; Finished is true when every step is done.
func Execute(ctx context.Context, p *Plan, h Handlers, statePath string, ev Events) (*State, error) {
	lk, st, err := open(p, h, statePath)
	if lk != nil {
		defer lk.unlock()
	}
	if errors.Is(err, fs.ErrNotExist) {
		st, err = newState(p), nil
	}
	if err != nil {
		return nil, err
	}
	if ev == nil {
		ev = discard{}
	}
	r := &run{p: p, h: h, st: st, statePath: statePath, ev: ev}
	for i := range p.Steps {
		if st.Steps[i].Status == StatusDone {
			continue
		}
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("plan %s interrupted before step %d: %w", p.ID, i+1, err)
		}
		if err := r.step(ctx, &p.Steps[i]); err != nil {
			return st, err
		}
	}
	st.Finished = true
	if err := st.save(statePath); err != nil {
		return st, err
	}
	return st, nil
}

// open checks the plan and its handlers, takes the plan's lock and loads its state. With the lock taken (lk non-nil, the
// caller unlocks it) err may still be fs.ErrNotExist: the plan has no state yet.
func open(p *Plan, h Handlers, statePath string) (lk *lockFile, st *State, err error) {
	if err := p.validate(); err != nil {
		return nil, nil, err
	}
	if err := checkHandlers(p, h); err != nil {
		return nil, nil, err
	}
	if lk, err = lock(p.ID, statePath); err != nil {
		return nil, nil, err
	}
	st, err = loadFor(p, statePath)
	return lk, st, err
}

func (r *run) step(ctx context.Context, s *Step) error {
	hd := r.h[s.Kind]
	ss := &r.st.Steps[s.N-1]
	retry := ""
	switch ss.Status {
	case StatusRunning:
		retry = "; the previous attempt was interrupted mid-step"
	case StatusFailed:
		retry = "; the previous attempt failed: " + ss.Error
	}
	ss.Status = StatusRunning
	ss.Attempts++
	ss.Started = time.Now().UTC()
	ss.Ended = time.Time{}
	ss.Error = ""
	ss.Checks = nil
	if err := r.st.save(r.statePath); err != nil {
		return err
	}

	r.emit(s, PhaseChecks, fmt.Sprintf("%s: attempt %d, %d pre-checks%s", s.Title, ss.Attempts, len(s.Checks), retry))
	ss.Checks = evaluate(ctx, hd, s)
	if err := ctx.Err(); err != nil {
		return r.fail(ctx, s, err.Error(), err)
	}
	var failed []string
	for _, c := range ss.Checks {
		if !c.OK {
			failed = append(failed, c.Name+": "+c.Detail)
		}
	}
	if len(failed) > 0 {
		reason := "pre-check failed: " + strings.Join(failed, "; ")
		return r.fail(ctx, s, reason, fmt.Errorf("%w: %s", ErrCheckFailed, strings.Join(failed, "; ")))
	}

	r.emit(s, PhaseRun, s.Title)
	if err := hold(ctx, s, PhaseRun); err != nil {
		return r.fail(ctx, s, err.Error(), err)
	}
	if err := hd.Run(ctx, s, r.ev); err != nil {
		return r.fail(ctx, s, err.Error(), err)
	}
	if hd.Verify != nil {
		r.emit(s, PhaseVerify, s.Verify)
		if err := hold(ctx, s, PhaseVerify); err != nil {
			return r.fail(ctx, s, err.Error(), err)
		}
		if err := hd.Verify(ctx, s); err != nil {
			return r.fail(ctx, s, "verification failed: "+err.Error(), fmt.Errorf("verification failed: %w", err))
		}
	}

	ss.Status = StatusDone
	ss.Ended = time.Now().UTC()
	if err := r.st.save(r.statePath); err != nil {
		return err
	}
	r.ev.Event(Event{Time: time.Now(), Plan: r.p.ID, Step: s.N, Kind: s.Kind, Phase: PhaseDone, Message: s.Title,
		Estimate: s.Estimate, Elapsed: Duration(ss.Ended.Sub(ss.Started))})
	return nil
}

// hold waits for ctx to end when HoldEnv names this phase of step s.
func hold(ctx context.Context, s *Step, phase string) error {
	if os.Getenv(HoldEnv) != fmt.Sprintf("%d:%s", s.N, phase) {
		return nil
	}
	fmt.Fprintf(os.Stderr, "held after the %s of step %d by %s\n", phase, s.N, HoldEnv)
	<-ctx.Done()
	return ctx.Err()
}

// Undo walks p back from its last started step to step 1, calling each step's undo and marking it undone. It refuses, before
// undoing anything, when a step at or after the point of no return is done. Run it again after a failure to continue.
func Undo(ctx context.Context, p *Plan, h Handlers, statePath string, ev Events) (*State, error) {
	lk, st, err := open(p, h, statePath)
	if lk != nil {
		defer lk.unlock()
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("undo plan %s: it was never executed (no state file %s), so there is nothing to undo: %w",
			p.ID, statePath, err)
	}
	if err != nil {
		return nil, err
	}
	if p.PointOfNoReturn > 0 {
		for i := p.PointOfNoReturn - 1; i < len(p.Steps); i++ {
			if st.Steps[i].Status == StatusDone {
				s := &p.Steps[i]
				return st, fmt.Errorf("undo plan %s: step %d (%s) is done and the point of no return is step %d: "+
					"the plan can only be finished, not undone: %w", p.ID, s.N, s.Title, p.PointOfNoReturn, ErrPastPointOfNoReturn)
			}
		}
	}
	if ev == nil {
		ev = discard{}
	}
	r := &run{p: p, h: h, st: st, statePath: statePath, ev: ev}
	st.Finished = false
	for i := len(p.Steps) - 1; i >= 0; i-- {
		switch st.Steps[i].Status {
		case StatusDone, StatusFailed, StatusRunning:
		default:
			continue
		}
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("undo plan %s interrupted before step %d: %w", p.ID, i+1, err)
		}
		if err := r.undo(ctx, &p.Steps[i]); err != nil {
			return st, err
		}
	}
	if err := st.save(statePath); err != nil {
		return st, err
	}
	return st, nil
}

func (r *run) undo(ctx context.Context, s *Step) error {
	ss := &r.st.Steps[s.N-1]
	undo := r.h[s.Kind].Undo
	if undo == nil {
		r.emit(s, PhaseUndo, "nothing to undo")
	} else {
		r.emit(s, PhaseUndo, s.Undo)
		started := time.Now()
		if err := undo(ctx, s); err != nil {
			// Failed, so that both a re-run of Execute and a re-run of Undo take the step up again.
			return r.fail(ctx, s, "undo failed: "+err.Error(), fmt.Errorf("undo: %w", err))
		}
		ss.Ended = time.Now().UTC()
		r.ev.Event(Event{Time: time.Now(), Plan: r.p.ID, Step: s.N, Kind: s.Kind, Phase: PhaseUndone, Message: s.Title,
			Elapsed: Duration(time.Since(started))})
	}
	ss.Status = StatusUndone
	ss.Error = ""
	return r.st.save(r.statePath)
}
