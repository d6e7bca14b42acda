package main

import (
	"fmt"
	"os"
	"time"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/internal/units"
)

type pruneCmd struct {
	stageFlags
	output
	DB        string        `help:"Only this database's backups."`
	Keep      int           `help:"Keep the newest N complete backups of each database."`
	OlderThan time.Duration `help:"Delete complete backups older than this (the newest one is always kept)."`
	Confirm   bool          `help:"Really delete; without it, only show what would be deleted."`
}

func (c *pruneCmd) Run() error {
	if c.Keep == 0 && c.OlderThan == 0 {
		return usage("say what to keep: --keep N and/or --older-than DURATION")
	}
	if c.Keep < 0 || c.OlderThan < 0 {
		return usage("--keep and --older-than must be positive")
	}
	rule := backup.PruneRule{Keep: c.Keep, OlderThan: c.OlderThan}
	if rule.Keep == 0 {
		rule.Keep = 1
	}
	ctx, cancel := interruptible()
	defer cancel()
	tgt, err := c.open(ctx)
	if err != nil {
		return err
	}
	gone, err := backup.Prune(ctx, tgt, c.DB, rule, time.Now(), c.Confirm)
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSON(os.Stdout, map[string]any{"confirmed": c.Confirm, "backups": gone})
	}
	verb := "would delete"
	if c.Confirm {
		verb = "deleted"
	}
	for _, e := range gone {
		fmt.Printf("%s %s (created %s, %s stored)\n", verb, e.Database+"/"+e.ID, e.Created.Local().Format(time.DateTime), units.Bytes(e.StoredBytes))
	}
	if len(gone) == 0 {
		fmt.Println("nothing to prune")
	} else if !c.Confirm {
		fmt.Println("dry run: add --confirm to delete them")
	}
	return nil
}
