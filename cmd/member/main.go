// Command member runs a mirrorkit member (the database server) and is the command-line client for it: data (kv), databases
// (db), status, and offline journal inspection.
package main

import (
	"github.com/mirrorkit/mirrorkit/internal/cli"
)

// usageError marks errors caused by how the command was called: exit code 2.
type usageError = cli.UsageError

var usage = cli.Usage

type commands struct {
	Run     runCmd     `cmd:"" help:"Run the member daemon."`
	Status  statusCmd  `cmd:"" help:"Show a member's status."`
	Version versionCmd `cmd:"" help:"Print version and format information."`
	DB      dbCmd      `cmd:"" name:"db" help:"Manage databases on a member."`
	KV      kvCmd      `cmd:"" name:"kv" help:"Read and write data on a member."`
	Journal journalCmd `cmd:"" help:"Inspect journal files offline."`
	Mirror  mirrorCmd  `cmd:"" help:"Create, join and operate mirrors."`
	Shadow  shadowCmd  `cmd:"" help:"Shadowing: apply another member's local journal to databases here (the older replication a mirror replaces)."`
	Arbiter arbiterCmd `cmd:"" help:"Run an arbiter for the failover members of mirrors."`
	Agent   agentCmd   `cmd:"" help:"Run the host agent that supervises this host's members and serves their journals."`
}

func main() {
	cli.Main("member", "mirrorkit member: a journaled database server, and its command-line client.", &commands{})
}
