package main

import (
	"context"
	"fmt"
	"time"

	"github.com/mirrorkit/mirrorkit/adddb"
	"github.com/mirrorkit/mirrorkit/engine/store"
)

type copyCmd struct {
	mirrorFlags
	output
	DB   string        `required:"" help:"The mirrored database to copy."`
	From string        `required:"" help:"Member with an activated, current copy."`
	To   string        `required:"" help:"Member to give the copy (not the primary)."`
	Wait time.Duration `default:"30m" help:"How long to wait for the copy to arrive and catch up."`
}

func (c *copyCmd) Run() error {
	if _, err := store.CanonicalDatabaseName(c.DB); err != nil {
		return usageError{Err: err}
	}
	ctx, cancel := interruptible()
	defer cancel()
	f, err := c.connect(ctx)
	if err != nil {
		return err
	}
	from, err := f.Member(c.From)
	if err != nil {
		return usageError{Err: err}
	}
	to, err := f.Member(c.To)
	if err != nil {
		return usageError{Err: err}
	}
	start := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, c.Wait)
	defer wcancel()
	if err := adddb.Copy(wctx, from, to, c.DB, progress(c.events(), "copy")); err != nil {
		return err
	}
	took := time.Since(start)
	if c.JSON {
		return printDone(map[string]any{"event": "done", "database": c.DB, "from": from.Name, "to": to.Name, "seconds": took.Seconds()})
	}
	fmt.Printf("%s copied from %s to %s in %s; it is dejournaling there\n", c.DB, from.Name, to.Name, took.Round(time.Millisecond))
	return nil
}
