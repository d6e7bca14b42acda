package main

import (
	"context"
	"fmt"
	"time"

	"github.com/mirrorkit/mirrorkit/adddb"
	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/units"
	"github.com/mirrorkit/mirrorkit/plans"
	"github.com/mirrorkit/mirrorkit/restore"
)

type restoreCmd struct {
	mirrorFlags
	stageFlags
	keyFlags
	output
	DB       string `required:"" help:"The database whose backup to restore."`
	Backup   string `help:"Backup ID (default: the newest complete backup of the database)."`
	To       string `help:"Member to restore onto (not the primary); the copy is activated there and catches up. Needs --mirror."`
	Dir      string `type:"path" help:"Restore into this local directory instead (disaster recovery, inspection)."`
	Delta    bool   `help:"Keep files of an older copy already there whose checksums match the backup."`
	Parallel int    `default:"4" help:"Chunks fetched and written at once."`
}

func (c *restoreCmd) Run() error {
	if _, err := store.CanonicalDatabaseName(c.DB); err != nil {
		return usageError{Err: err}
	}
	if (c.To == "") == (c.Dir == "") {
		return usage("give either --to MEMBER (with --mirror) or --dir PATH")
	}
	ctx, cancel := interruptible()
	defer cancel()
	tgt, m, key, err := openBackup(ctx, &c.stageFlags, &c.keyFlags, c.DB, c.Backup)
	if err != nil {
		return err
	}
	ev := c.events()
	opts := restore.Options{Key: key, Parallel: c.Parallel, Progress: progress(ev, "restore")}
	start := time.Now()
	where := c.Dir
	if c.Dir != "" {
		sink, err := restore.NewDirSink(c.Dir, c.Delta)
		if err == nil {
			err = restore.Run(ctx, tgt, m, sink, opts)
		}
		if err != nil {
			ev.Event(plans.Event{Time: time.Now(), Kind: "restore", Phase: plans.PhaseFailed, Message: err.Error()})
			return err
		}
	} else {
		f, err := c.connect(ctx)
		if err != nil {
			return err
		}
		to, err := f.Member(c.To)
		if err != nil {
			return usageError{Err: err}
		}
		if _, err := adddb.Restore(ctx, f, to, tgt, m, c.Delta, opts); err != nil {
			ev.Event(plans.Event{Time: time.Now(), Kind: "restore", Phase: plans.PhaseFailed, Message: err.Error()})
			return err
		}
		where = "member " + to.Name
	}
	took := time.Since(start)
	if c.JSON {
		return printDone(map[string]any{"event": "done", "id": m.ID, "database": m.Database, "position": m.Position, "bytes": m.Bytes,
			"seconds": took.Seconds(), "to": where})
	}
	fmt.Printf("backup %s of %s restored into %s at %s: %s in %s (%s/s)\n", m.ID, m.Database, where, m.Position, units.Bytes(m.Bytes),
		took.Round(time.Millisecond), units.Bytes(int64(float64(m.Bytes)/took.Seconds())))
	return nil
}

// openBackup loads the key file, opens the stage and reads the manifest of backup id of db (of its newest complete backup
// when id is "").
func openBackup(ctx context.Context, s *stageFlags, k *keyFlags, db, id string) (backup.Target, *backup.Manifest, []byte, error) {
	key, err := k.load()
	if err != nil {
		return nil, nil, nil, err
	}
	tgt, err := s.open(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	var m *backup.Manifest
	if id == "" {
		m, err = backup.Latest(ctx, tgt, db)
	} else {
		m, err = backup.LoadManifest(ctx, tgt, db, id)
	}
	return tgt, m, key, err
}
