// Command pgbenchlog turns one pgbench run into the benchmark summary shared with the other programs: the rate is pgbench's
// own "tps = … (without initial connection time)" from its report (--report), and the latency percentiles are computed
// from its per-transaction logs (pgbench --log), one file per pgbench thread, given as arguments.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/alecthomas/kong"

	"github.com/mirrorkit/mirrorkit/bench/internal/latency"
)

type cli struct {
	Report  string   `required:"" help:"File holding pgbench's standard output."`
	Clients int      `required:"" help:"Client count of the run (pgbench -c)."`
	System  string   `default:"postgresql" help:"Name to report the run under."`
	JSON    bool     `name:"json" help:"Print the result as one line of JSON."`
	Logs    []string `arg:"" type:"existingfile" help:"pgbench per-transaction log files of the run."`
}

func main() {
	var c cli
	kong.Parse(&c, kong.Name("pgbenchlog"), kong.Description("Summarise a pgbench run from its report and per-transaction logs."))
	if err := c.run(); err != nil {
		fmt.Fprintln(os.Stderr, "pgbenchlog:", err)
		os.Exit(1)
	}
}

func (c *cli) run() error {
	f, err := os.Open(c.Report)
	if err != nil {
		return fmt.Errorf("open pgbench report: %w", err)
	}
	rep, err := parseReport(f)
	if closeErr := f.Close(); err == nil && closeErr != nil {
		err = fmt.Errorf("close %s: %w", c.Report, closeErr)
	}
	if err != nil {
		return fmt.Errorf("pgbench report %s: %w", c.Report, err)
	}
	var samples []time.Duration
	for _, name := range c.Logs {
		if samples, err = readLogFile(name, samples); err != nil {
			return err
		}
	}
	if len(samples) != rep.processed {
		return fmt.Errorf("pgbench logs hold %d transactions, the report says %d were processed", len(samples), rep.processed)
	}
	// The window is the one pgbench measured its rate over, so the summary's rate is pgbench's tps.
	elapsed := time.Duration(float64(rep.processed) / rep.tps * float64(time.Second))
	s, err := latency.Summarize(c.System, c.Clients, elapsed, samples)
	if err != nil {
		return err
	}
	return s.Output(os.Stdout, c.JSON)
}
