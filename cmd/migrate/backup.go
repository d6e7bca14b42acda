package main

import (
	"fmt"
	"time"

	"github.com/mirrorkit/mirrorkit/adddb"
	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/units"
	"github.com/mirrorkit/mirrorkit/plans"
)

type backupCmd struct {
	mirrorFlags
	stageFlags
	keyFlags
	output
	DB        string   `required:"" help:"The mirrored database to back up."`
	From      string   `help:"Member to take the snapshot on (default: the backup or a DR async whose copy is dejournaling, else the primary)."`
	Level     int      `default:"3" help:"zstd compression level, 1 (fastest) to 22."`
	ChunkSize byteSize `default:"4MiB" help:"Plaintext size of a chunk."`
	Parallel  int      `default:"4" help:"Chunks compressed and uploaded at once (memory: about chunk size × (2 × parallel + 2))."`
	ID        string   `help:"Resume (or start) the backup with this ID (default: resume the newest unfinished backup of the database, else start one)."`
}

func (c *backupCmd) Run() error {
	if _, err := store.CanonicalDatabaseName(c.DB); err != nil {
		return usageError{Err: err}
	}
	if c.Level < 1 || c.Level > 22 {
		return usage("--level %d: want 1 to 22", c.Level)
	}
	ctx, cancel := interruptible()
	defer cancel()
	key, err := c.load()
	if err != nil {
		return err
	}
	f, err := c.connect(ctx)
	if err != nil {
		return err
	}
	src, err := adddb.BackupSource(ctx, f, c.DB, c.From)
	if err != nil {
		return err
	}
	tgt, err := c.open(ctx)
	if err != nil {
		return err
	}
	ev := c.events()
	start := time.Now()
	m, err := adddb.Backup(ctx, src, c.DB, tgt, backup.Options{Level: c.Level, ChunkSize: int64(c.ChunkSize), Parallel: c.Parallel, Key: key, ID: c.ID,
		Progress: progress(ev, "backup")})
	if err != nil {
		ev.Event(plans.Event{Time: time.Now(), Kind: "backup", Phase: plans.PhaseFailed, Message: err.Error()})
		return err
	}
	took := time.Since(start)
	if c.JSON {
		return printDone(map[string]any{"event": "done", "id": m.ID, "database": m.Database, "member": m.Member, "position": m.Position,
			"bytes": m.Bytes, "stored_bytes": m.StoredBytes, "encrypted": m.Encrypted(), "seconds": took.Seconds(), "stage": c.Stage})
	}
	fmt.Printf("backup %s of %s taken on %s at %s: %s stored as %s (%.1fx) in %s (%s/s)%s\n", m.ID, m.Database, m.Member, m.Position,
		units.Bytes(m.Bytes), units.Bytes(m.StoredBytes), ratio(m.Bytes, m.StoredBytes), took.Round(time.Millisecond),
		units.Bytes(int64(float64(m.Bytes)/took.Seconds())), map[bool]string{true: ", encrypted", false: ""}[m.Encrypted()])
	return nil
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
