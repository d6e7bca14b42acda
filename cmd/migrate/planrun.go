package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mattn/go-isatty"

	"github.com/mirrorkit/mirrorkit/internal/atomicfile"
	"github.com/mirrorkit/mirrorkit/plans"
)

// planFlags are the options of every command that works through a plan.
type planFlags struct {
	DryRun   bool   `help:"Build the plan and run every pre-check against the live mirror; change nothing."`
	Yes      bool   `help:"Run the plan without asking."`
	StateDir string `type:"path" env:"MIRRORKIT_STATE_DIR" help:"Where plans and their progress are kept (default: ~/.local/state/mirrorkit)."`
	Discard  bool   `help:"Drop an unfinished plan made with other options, and make a new one."`
}

// planJob is one planned command: where its plan is kept, how a new one is built, and how its steps are carried out.
type planJob struct {
	flags *planFlags
	out   *output
	name  string // the plan file's name, without directory
	build func(ctx context.Context) (*plans.Plan, error)
	// handlers returns the handlers of a plan (a new one, or the unfinished one being resumed).
	handlers func(p *plans.Plan) plans.Handlers
	// conflict says why an unfinished plan cannot be resumed with the options given now ("" when it can).
	conflict func(old *plans.Plan) string
}

func (j *planJob) paths() (planPath, statePath string, err error) {
	dir := j.flags.StateDir
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", "", fmt.Errorf("no --state-dir and no home directory: %w", err)
		}
		dir = filepath.Join(home, ".local", "state", "mirrorkit")
	}
	if !j.flags.DryRun {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", "", fmt.Errorf("state dir: %w", err)
		}
	}
	planPath = filepath.Join(dir, j.name)
	return planPath, planPath + ".state", nil
}

// do undoes the plan of an earlier run (undo), or runs the plan and prints success, or with --json the final state as the
// last line (a dry run prints only the plan).
func (j *planJob) do(ctx context.Context, undo bool, success string) error {
	if undo {
		return j.undo(ctx)
	}
	p, st, err := j.run(ctx)
	if err != nil || st == nil {
		return err
	}
	if j.out.JSON {
		return printDone(map[string]any{"event": "done", "plan": p.ID, "state": st})
	}
	fmt.Println(success)
	return nil
}

// run shows the plan with the live result of every pre-check, then (unless a dry run) executes it, resuming an unfinished
// run of the same plan.
func (j *planJob) run(ctx context.Context) (*plans.Plan, *plans.State, error) {
	planPath, statePath, err := j.paths()
	if err != nil {
		return nil, nil, err
	}
	p, resumed, err := j.load(ctx, planPath, statePath)
	if err != nil {
		return nil, nil, err
	}
	h := j.handlers(p)
	st, _ := plans.LoadState(statePath)
	if resumed && st != nil && st.Finished {
		if !j.out.JSON {
			if err := plans.RenderText(os.Stdout, p, st, nil); err != nil {
				return nil, nil, err
			}
			fmt.Printf("plan %s (%s) is already done; add --discard to make a new plan\n", p.ID, planPath)
		}
		return p, st, nil
	}
	dry, err := plans.DryRun(ctx, p, h)
	if err != nil {
		return nil, nil, err
	}
	if j.out.JSON {
		err = plans.RenderJSON(os.Stdout, p, st, dry)
	} else {
		err = plans.RenderText(os.Stdout, p, st, dry)
	}
	if err != nil {
		return nil, nil, err
	}
	failing := 0
	for _, r := range dry {
		if !r.OK() {
			failing++
		}
	}
	if j.flags.DryRun {
		if failing > 0 {
			return nil, nil, fmt.Errorf("dry run: %d step(s) have failing pre-checks (nothing was changed)", failing)
		}
		if !j.out.JSON {
			fmt.Println("dry run: every pre-check passes; nothing was changed")
		}
		return p, nil, nil
	}
	if resumed && !j.out.JSON {
		fmt.Printf("resuming plan %s (%s)\n", p.ID, planPath)
	}
	if err := j.confirm(); err != nil {
		return nil, nil, err
	}
	if !resumed {
		data, err := p.Encode()
		if err != nil {
			return nil, nil, err
		}
		// The progress of an earlier, finished plan belongs to that plan.
		if err := os.Remove(statePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
		if err := atomicfile.Write(planPath, data, 0o644); err != nil {
			return nil, nil, fmt.Errorf("save the plan: %w", err)
		}
	}
	st, err = plans.Execute(ctx, p, h, statePath, j.out.events())
	if err != nil {
		return nil, nil, fmt.Errorf("%w\nthe plan's progress is kept in %s: run the same command again to resume", err, statePath)
	}
	return p, st, nil
}

// load returns the unfinished plan of an earlier run (resumed), or a new one.
func (j *planJob) load(ctx context.Context, planPath, statePath string) (*plans.Plan, bool, error) {
	data, err := os.ReadFile(planPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, false, err
	default:
		old, err := plans.Decode(data)
		if err != nil {
			return nil, false, fmt.Errorf("plan file %s: %w (remove it, or use --discard)", planPath, err)
		}
		st, err := plans.LoadState(statePath)
		if err != nil && !errors.Is(err, fs.ErrNotExist) && !j.flags.Discard {
			// Progress that exists but cannot be read is never taken for no progress.
			return nil, false, fmt.Errorf("the progress of plan %s cannot be read: %w (add --discard to drop the plan and make a new one)", planPath, err)
		}
		unfinished := err == nil && !st.Finished
		switch {
		case j.flags.Discard && !j.flags.DryRun:
			if err := os.Remove(statePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, false, err
			}
		case err == nil && st.Finished && j.conflict(old) == "":
			// The same command again after it completed (perhaps killed just after its last step): a new plan whose steps
			// find nothing left to do, or — when none can be built from what the finished plan left (a conversion's
			// shadows are gone) — the finished plan, reported done.
			if p, err := j.build(ctx); err == nil {
				return p, false, nil
			}
			return old, true, nil
		case unfinished:
			if why := j.conflict(old); why != "" {
				return nil, false, fmt.Errorf("an unfinished plan %s %s: run it again with the same options to finish it, or add --discard to drop it", planPath, why)
			}
			return old, true, nil
		}
	}
	p, err := j.build(ctx)
	return p, false, err
}

func (j *planJob) confirm() error {
	if j.flags.Yes {
		return nil
	}
	if !isatty.IsTerminal(os.Stdin.Fd()) {
		return usage("not running the plan without confirmation: add --yes (or look first with --dry-run)")
	}
	fmt.Print("Run this plan? [y/N] ")
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return errors.New("not confirmed; nothing was changed")
	}
	return nil
}

// undo walks an earlier plan back, step by step in reverse; like Execute it persists its progress and resumes.
func (j *planJob) undo(ctx context.Context) error {
	planPath, statePath, err := j.paths()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(planPath)
	if err != nil {
		return fmt.Errorf("no plan to undo (%w)", err)
	}
	p, err := plans.Decode(data)
	if err != nil {
		return fmt.Errorf("plan file %s: %w", planPath, err)
	}
	if err := j.confirm(); err != nil {
		return err
	}
	st, err := plans.Undo(ctx, p, j.handlers(p), statePath, j.out.events())
	if err != nil {
		return fmt.Errorf("%w\nthe undo's progress is kept in %s: run the same command again to resume it", err, statePath)
	}
	if j.out.JSON {
		return printDone(map[string]any{"event": "undone", "plan": p.ID, "state": st})
	}
	fmt.Printf("plan %s undone\n", p.ID)
	return nil
}
