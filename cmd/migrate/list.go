package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/mirrorkit/mirrorkit/adddb"
	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/internal/mirrorctl"
	"github.com/mirrorkit/mirrorkit/internal/units"
)

type listCmd struct {
	mirrorFlags
	stageFlags
	output
	DB string `help:"Only this database's backups."`
}

// listed is one backup as `migrate list` shows it.
type listed struct {
	backup.Entry
	Error string `json:"error,omitempty"`
	// Restorable says whether the backup can still join the mirror (the primary holds the mirror journal from its
	// position); empty when no mirror was named.
	Restorable string `json:"restorable,omitempty"`
}

func (c *listCmd) Run() error {
	ctx, cancel := interruptible()
	defer cancel()
	tgt, err := c.open(ctx)
	if err != nil {
		return err
	}
	entries, err := backup.List(ctx, tgt, c.DB)
	if err != nil {
		return err
	}
	var f *mirrorctl.Fleet
	if len(c.Mirror) > 0 {
		if f, err = c.connect(ctx); err != nil {
			return err
		}
	}
	out := make([]listed, 0, len(entries))
	for _, e := range entries {
		l := listed{Entry: e}
		if e.Err != nil {
			l.Error = e.Err.Error()
		}
		l.Restorable = restorable(ctx, f, e)
		out = append(out, l)
	}
	if c.JSON {
		return printJSON(os.Stdout, out)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DATABASE\tBACKUP\tCREATED\tSIZE\tSTORED\tPOSITION\tSTATE\tRESTORABLE INTO THE MIRROR")
	for _, l := range out {
		state := "complete"
		switch {
		case l.Error != "":
			state = "DAMAGED: " + l.Error
		case !l.Complete:
			state = "incomplete"
		}
		if l.Encrypted {
			state += ", encrypted"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Database, l.ID, l.Created.Local().Format(time.DateTime), units.Bytes(l.Bytes),
			units.Bytes(l.StoredBytes), l.Position, state, orDash(l.Restorable))
	}
	return tw.Flush()
}

func restorable(ctx context.Context, f *mirrorctl.Fleet, e backup.Entry) string {
	switch {
	case f == nil:
		return ""
	case !e.Complete || e.Err != nil:
		return "no (not a complete backup)"
	}
	if err := adddb.Restorable(ctx, f, e.Position); err != nil {
		return "no: " + err.Error()
	}
	return "yes"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
