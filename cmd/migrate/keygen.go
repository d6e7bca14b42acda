package main

import (
	"fmt"

	"github.com/mirrorkit/mirrorkit/backup"
)

type keygenCmd struct {
	File string `arg:"" type:"path" help:"Key file to write (refused if it exists)."`
}

func (c *keygenCmd) Run() error {
	if err := backup.GenerateKeyFile(c.File); err != nil {
		return err
	}
	fmt.Printf("key file %s written (keep a copy: without it, backups encrypted with it cannot be restored)\n", c.File)
	return nil
}
