// Command convertbench is the Go side of scripts/bench-convert.sh, which compares the two ways `migrate convert-shadow`
// turns a shadowing setup into a mirror: shadow copies joining in place, and every database copied from the source
// (--force-copy, or a staged backup and restores):
//
//   - run: writes continuously to databases on the source through the mirror-aware client while it runs one command
//     (the conversion), timed, then reads every acknowledged write back and prints the round's result as a JSON line:
//     the wall time of the command and the longest pause the writers saw;
//   - report: writes bench/convert.md from the run's JSON lines, with the ratios of the copy paths to the in-place path.
//
// It changes a member only through the client's writes; processes, members and directories belong to the script.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
)

type cli struct {
	Run    runCmd    `cmd:"" help:"Write to the source's databases while a command (the conversion) runs; print the round's result."`
	Report reportCmd `cmd:"" help:"Write the Markdown report from a run's JSON lines."`
}

func main() {
	var c cli
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	kctx := kong.Parse(&c, kong.Name("convertbench"),
		kong.Description("Time a shadow conversion under a write probe, and report the conversion benchmark."),
		kong.BindTo(ctx, (*context.Context)(nil)))
	err := kctx.Run()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "convertbench:", err)
		os.Exit(1)
	}
}
