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
	"time"

	"github.com/mattn/go-isatty"

	"github.com/mirrorkit/mirrorkit/adddb"
	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/atomicfile"
	"github.com/mirrorkit/mirrorkit/plans"
	"github.com/mirrorkit/mirrorkit/restore"
)

type addDBCmd struct {
	mirrorFlags
	stageFlags
	keyFlags
	output
	DB        string        `required:"" help:"The database to add: it exists on the primary with its data."`
	Method    string        `required:"" enum:"backup,copy,download" help:"How the other members get a copy: backup (staged in --stage, restored on each), copy (member to member), download (each member fetches one itself)."`
	Level     int           `default:"3" help:"zstd level of the backup (backup method)."`
	ChunkSize byteSize      `default:"4MiB" help:"Chunk size of the backup (backup method)."`
	Parallel  int           `default:"4" help:"Chunks in flight during the backup and the restores."`
	DryRun    bool          `help:"Build the plan and run every pre-check against the live mirror; change nothing."`
	Yes       bool          `help:"Run the plan without asking."`
	StateDir  string        `type:"path" env:"MIRRORKIT_STATE_DIR" help:"Where plans and their progress are kept (default: ~/.local/state/mirrorkit)."`
	Discard   bool          `help:"Drop an unfinished plan for this database made with other options, and make a new one."`
	Undo      bool          `help:"Undo the plan of an earlier run for this database, its steps in reverse: copies deleted on the members, the database taken out of the mirror again (it stays a local database on the primary)."`
	Wait      time.Duration `default:"30m" help:"How long a step waits for a copy to catch up."`
}

func (c *addDBCmd) Run() error {
	canon, err := store.CanonicalDatabaseName(c.DB)
	if err != nil {
		return usageError{Err: err}
	}
	if c.Method == adddb.MethodBackup && c.Stage == "" {
		return usage("--method backup needs --stage DIR or --stage s3://bucket/prefix")
	}
	ctx, cancel := interruptible()
	defer cancel()
	f, err := c.connect(ctx)
	if err != nil {
		return err
	}
	env := &adddb.Env{Fleet: f, Stage: c.Stage, Wait: c.Wait}
	if c.Method == adddb.MethodBackup {
		key, err := c.load()
		if err != nil {
			return err
		}
		if env.Target, err = c.open(ctx); err != nil {
			return err
		}
		env.Stage = c.Stage
		env.Backup = backup.Options{Level: c.Level, ChunkSize: int64(c.ChunkSize), Parallel: c.Parallel, Key: key}
		env.Restore = restore.Options{Key: key, Parallel: c.Parallel}
	}
	planPath, err := c.planPath(f.Mirror, canon)
	if err != nil {
		return err
	}
	statePath := planPath + ".state"
	if c.Undo {
		return c.undo(ctx, env, planPath, statePath)
	}
	p, resumed, err := c.plan(ctx, env, canon, planPath, statePath)
	if err != nil {
		return err
	}
	h := adddb.Handlers(env)
	dry, err := plans.DryRun(ctx, p, h)
	if err != nil {
		return err
	}
	st, _ := plans.LoadState(statePath)
	if c.JSON {
		if err := plans.RenderJSON(os.Stdout, p, st, dry); err != nil {
			return err
		}
	} else if err := plans.RenderText(os.Stdout, p, st, dry); err != nil {
		return err
	}
	failing := 0
	for _, r := range dry {
		if !r.OK() {
			failing++
		}
	}
	if c.DryRun {
		if failing > 0 {
			return fmt.Errorf("dry run: %d step(s) have failing pre-checks (nothing was changed)", failing)
		}
		if !c.JSON {
			fmt.Println("dry run: every pre-check passes; nothing was changed")
		}
		return nil
	}
	if resumed && !c.JSON {
		fmt.Printf("resuming plan %s (%s)\n", p.ID, planPath)
	}
	if err := c.confirm(); err != nil {
		return err
	}
	if !resumed {
		data, err := p.Encode()
		if err != nil {
			return err
		}
		// The progress of an earlier, finished plan for this database belongs to that plan.
		if err := os.Remove(statePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := atomicfile.Write(planPath, data, 0o644); err != nil {
			return fmt.Errorf("save the plan: %w", err)
		}
	}
	st, err = plans.Execute(ctx, p, h, statePath, c.events())
	if err != nil {
		return fmt.Errorf("%w\nthe plan's progress is kept in %s: run the same command again to resume", err, statePath)
	}
	if c.JSON {
		return printDone(map[string]any{"event": "done", "plan": p.ID, "state": st})
	}
	fmt.Printf("database %s is in mirror %s with a current copy on every member\n", canon, f.Mirror)
	return nil
}

// planPath is where the plan for this mirror and database is kept.
func (c *addDBCmd) planPath(mirrorName, db string) (string, error) {
	dir := c.StateDir
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no --state-dir and no home directory: %w", err)
		}
		dir = filepath.Join(home, ".local", "state", "mirrorkit")
	}
	if !c.DryRun {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("state dir: %w", err)
		}
	}
	return filepath.Join(dir, fmt.Sprintf("add-db-%s-%s.plan.json", mirrorName, db)), nil
}

// plan returns the unfinished plan of an earlier run of the same command (resumed), or a new one.
func (c *addDBCmd) plan(ctx context.Context, env *adddb.Env, db, planPath, statePath string) (*plans.Plan, bool, error) {
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
		unfinished := err == nil && !st.Finished
		switch {
		case c.Discard && !c.DryRun:
			if err := os.Remove(statePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, false, err
			}
		case unfinished && (old.Params["method"] != c.Method || old.Params["stage"] != env.Stage):
			return nil, false, fmt.Errorf("an unfinished plan %s adds %s by %s (stage %q): run it again with the same options to finish it, or add --discard to drop it",
				planPath, db, old.Params["method"], old.Params["stage"])
		case unfinished:
			return old, true, nil
		}
	}
	p, err := adddb.Build(ctx, env, db, c.Method)
	return p, false, err
}

func (c *addDBCmd) confirm() error {
	if c.Yes {
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
func (c *addDBCmd) undo(ctx context.Context, env *adddb.Env, planPath, statePath string) error {
	data, err := os.ReadFile(planPath)
	if err != nil {
		return fmt.Errorf("no plan to undo for this database (%w)", err)
	}
	p, err := plans.Decode(data)
	if err != nil {
		return fmt.Errorf("plan file %s: %w", planPath, err)
	}
	if err := c.confirm(); err != nil {
		return err
	}
	st, err := plans.Undo(ctx, p, adddb.Handlers(env), statePath, c.events())
	if err != nil {
		return fmt.Errorf("%w\nthe undo's progress is kept in %s: run the same command again to resume it", err, statePath)
	}
	if c.JSON {
		return printDone(map[string]any{"event": "undone", "plan": p.ID, "state": st})
	}
	fmt.Printf("plan %s undone\n", p.ID)
	return nil
}
