// Command member runs a mirrorkit member (the database server) and is the command-line client for it: data (kv), databases
// (db), status, and offline journal inspection.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/alecthomas/kong"
)

// Exit codes: 0 success, 1 the operation failed, 2 bad usage or bad configuration.
const (
	exitFailed = 1
	exitUsage  = 2
)

// usageError marks errors caused by how the command was called (bad flags, bad config, bad reference syntax).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usage(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

type cli struct {
	Run     runCmd     `cmd:"" help:"Run the member daemon."`
	Status  statusCmd  `cmd:"" help:"Show a member's status."`
	Version versionCmd `cmd:"" help:"Print version and format information."`
	DB      dbCmd      `cmd:"" name:"db" help:"Manage databases on a member."`
	KV      kvCmd      `cmd:"" name:"kv" help:"Read and write data on a member."`
	Journal journalCmd `cmd:"" help:"Inspect journal files offline."`
	Mirror  mirrorCmd  `cmd:"" help:"Create, join and operate mirrors."`
	Arbiter arbiterCmd `cmd:"" help:"Run an arbiter for the failover members of mirrors."`
	Agent   agentCmd   `cmd:"" help:"Run the host agent that supervises this host's members and serves their journals."`
}

func main() {
	var c cli
	parser, err := kong.New(&c,
		kong.Name("member"),
		kong.Description("mirrorkit member: a journaled database server, and its command-line client."),
		kong.UsageOnError(),
		kong.Exit(func(code int) {
			if code != 0 {
				code = exitUsage
			}
			os.Exit(code)
		}),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "member:", err)
		os.Exit(exitUsage)
	}
	ctx, err := parser.Parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "member:", err)
		os.Exit(exitUsage)
	}
	if err := ctx.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "member:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(exitUsage)
		}
		os.Exit(exitFailed)
	}
}
