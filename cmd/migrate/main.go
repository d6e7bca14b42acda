// Command migrate brings existing databases into a mirror and keeps their backups: add-db (a plan covering every member,
// shown first, resumable), backup, restore, copy, verify, list, prune and keygen.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/alecthomas/kong"
)

// Exit codes: 0 success, 1 the operation failed (or a dry run found failing checks), 2 bad usage.
const (
	exitFailed = 1
	exitUsage  = 2
)

type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usage(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

type cli struct {
	AddDB   addDBCmd   `cmd:"" name:"add-db" help:"Add an existing database (with data) to a mirror and give every member a verified copy, by backup/restore, file copy or download; shows the plan first and resumes when re-run."`
	Backup  backupCmd  `cmd:"" help:"Back up a mirrored database from a member (the backup or a current async by default) to a stage."`
	Restore restoreCmd `cmd:"" help:"Restore a backup onto a member (it is activated and catches up) or into a local directory."`
	Copy    copyCmd    `cmd:"" help:"Copy a database from one member to another, member to member with no staging; it is activated and catches up."`
	Verify  verifyCmd  `cmd:"" help:"Verify a backup: 1 objects and sizes, 2 every checksum, 3 a full restore into a scratch directory and its logical hash."`
	List    listCmd    `cmd:"" help:"List the backups in a stage, and whether each can still be restored into the mirror."`
	Prune   pruneCmd   `cmd:"" help:"Delete old backups from a stage (a dry run unless --confirm)."`
	Keygen  keygenCmd  `cmd:"" help:"Write a new backup key file (32 random bytes, mode 0600)."`
}

func main() {
	var c cli
	parser, err := kong.New(&c,
		kong.Name("migrate"),
		kong.Description("mirrorkit migrate: bring existing databases into a mirror, and back them up."),
		kong.UsageOnError(),
		kong.Exit(func(code int) {
			if code != 0 {
				code = exitUsage
			}
			os.Exit(code)
		}),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "migrate:", err)
		os.Exit(exitUsage)
	}
	ctx, err := parser.Parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "migrate:", err)
		os.Exit(exitUsage)
	}
	if err := ctx.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "migrate:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(exitUsage)
		}
		os.Exit(exitFailed)
	}
}
