// Command backupbench is the Go side of scripts/bench-backup.sh, which measures backup and restore throughput and peak
// memory of mirrorkit's migrate against pgBackRest and a tar | zstd reference on the same rows:
//
//   - load: fills a database on a member with the benchmark's rows through the Go client;
//   - rows: writes the same rows as PostgreSQL COPY text, for psql to load;
//   - measure: runs one command, timed, with its peak resident set size, and prints the result as a JSON line;
//   - report: writes bench/backup.md from the run's JSON lines, with ratios against the baselines and the targets.
//
// It changes a member only through the client's writes; processes, peers and directories belong to the script.
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
	Load    loadCmd    `cmd:"" help:"Fill a database on a member with the benchmark's rows."`
	Rows    rowsCmd    `cmd:"" help:"Write the benchmark's rows as PostgreSQL COPY text to standard output."`
	Measure measureCmd `cmd:"" help:"Run a command, timed, and print its wall time and peak RSS as a JSON line."`
	Report  reportCmd  `cmd:"" help:"Write the Markdown report from a run's JSON lines."`
}

func main() {
	var c cli
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	kctx := kong.Parse(&c, kong.Name("backupbench"),
		kong.Description("Load, time and report the backup and restore benchmark."),
		kong.BindTo(ctx, (*context.Context)(nil)))
	err := kctx.Run()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "backupbench:", err)
		os.Exit(1)
	}
}
