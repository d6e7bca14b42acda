package main

import (
	"context"
	"fmt"
	"time"

	"github.com/mirrorkit/mirrorkit/adddb"
	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/plans"
	"github.com/mirrorkit/mirrorkit/restore"
)

type addDBCmd struct {
	mirrorFlags
	stageFlags
	keyFlags
	output
	planFlags
	DB        string        `required:"" help:"The database to add: it exists on the primary with its data."`
	Method    string        `required:"" enum:"backup,copy,download" help:"How the other members get a copy: backup (staged in --stage, restored on each), copy (member to member), download (each member fetches one itself)."`
	Level     int           `default:"3" help:"zstd level of the backup (backup method)."`
	ChunkSize byteSize      `default:"4MiB" help:"Chunk size of the backup (backup method)."`
	Parallel  int           `default:"4" help:"Chunks in flight during the backup and the restores."`
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
		env.Backup = backup.Options{Level: c.Level, ChunkSize: int64(c.ChunkSize), Parallel: c.Parallel, Key: key}
		env.Restore = restore.Options{Key: key, Parallel: c.Parallel}
	}
	job := &planJob{flags: &c.planFlags, out: &c.output, name: fmt.Sprintf("add-db-%s-%s.plan.json", f.Mirror, canon),
		build:    func(ctx context.Context) (*plans.Plan, error) { return adddb.Build(ctx, env, canon, c.Method) },
		handlers: func(*plans.Plan) plans.Handlers { return adddb.Handlers(env) },
		conflict: func(old *plans.Plan) string {
			if old.Params["method"] != c.Method || old.Params["stage"] != env.Stage {
				return fmt.Sprintf("adds %s by %s (stage %q)", canon, old.Params["method"], old.Params["stage"])
			}
			return ""
		}}
	return job.do(ctx, c.Undo, fmt.Sprintf("database %s is in mirror %s with a current copy on every member", canon, f.Mirror))
}
