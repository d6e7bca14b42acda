// Command migrate brings existing databases into a mirror and keeps their backups: add-db (a plan covering every member,
// shown first, resumable), backup, restore, copy, verify, list, prune and keygen.
package main

import (
	"github.com/mirrorkit/mirrorkit/internal/cli"
)

// usageError marks errors caused by how the command was called: exit code 2.
type usageError = cli.UsageError

var usage = cli.Usage

type commands struct {
	Convert convertCmd `cmd:"" name:"convert-shadow" help:"Convert a shadow source and its shadow destinations into a mirror, online: copies that are current and untouched join in place with no data copied; shows the plan first and resumes when re-run."`
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
	cli.Main("migrate", "mirrorkit migrate: bring existing databases into a mirror, and back them up.", &commands{})
}
