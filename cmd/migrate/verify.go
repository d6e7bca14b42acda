package main

import (
	"fmt"
	"os"

	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/units"
	"github.com/mirrorkit/mirrorkit/restore"
)

type verifyCmd struct {
	stageFlags
	keyFlags
	output
	DB      string `required:"" help:"The database whose backup to verify."`
	Backup  string `help:"Backup ID (default: the newest complete backup)."`
	Level   int    `default:"2" help:"1: objects present with their sizes; 2: every checksum (download, decrypt, decompress); 3: restore into a scratch directory and check the logical hash."`
	Scratch string `type:"path" help:"Scratch directory for level 3 (default: a temporary directory)."`
}

func (c *verifyCmd) Run() error {
	if _, err := store.CanonicalDatabaseName(c.DB); err != nil {
		return usageError{Err: err}
	}
	if c.Level < 1 || c.Level > 3 {
		return usage("--level %d: want 1, 2 or 3", c.Level)
	}
	ctx, cancel := interruptible()
	defer cancel()
	tgt, m, key, err := openBackup(ctx, &c.stageFlags, &c.keyFlags, c.DB, c.Backup)
	if err != nil {
		return err
	}
	scratch := c.Scratch
	if scratch == "" && c.Level == 3 {
		if scratch, err = os.MkdirTemp("", "migrate-verify-"); err != nil {
			return err
		}
		defer os.RemoveAll(scratch)
	}
	rep, err := restore.Verify(ctx, tgt, m, c.Level, key, scratch)
	if err != nil {
		return fmt.Errorf("backup %s FAILED verification at level %d: %w", m.Name(), c.Level, err)
	}
	if c.JSON {
		return printJSON(os.Stdout, rep)
	}
	fmt.Printf("backup %s verified at level %d: %d objects (%s stored)", m.Name(), c.Level, rep.Objects, units.Bytes(rep.StoredBytes))
	if c.Level >= 2 {
		fmt.Printf(", %d chunks checked", rep.Chunks)
	}
	if c.Level == 3 {
		fmt.Printf(", %d files (%s) restored, opened at %s, logical hash matches", rep.Files, units.Bytes(rep.Bytes), m.Position)
	}
	fmt.Println()
	return nil
}
