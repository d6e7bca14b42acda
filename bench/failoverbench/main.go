// Command failoverbench measures a running mirror under commit load, for scripts/bench.sh and scripts/bench-upgrade.sh:
//
//   - wait: until every backup is Active and every async caught up, then print the primary's data address;
//   - failover: planned failovers (`member mirror failover`) while clients write through one mirror-aware client, each
//     round's client-visible pause, and every client error (there must be none);
//   - lag: an async member's lag behind the primary's durable journal while clients commit at full load, sampled from
//     the primary's Mirror Monitor;
//   - unplanned: automatic failovers of a mirror it makes itself (an arbiter and two failover members, processes of the
//     member binary, each member reaching the other and the arbiter through fault proxies in this process): rounds of
//     the primary killed, stopped or isolated while clients write, each round's application-visible unavailability,
//     and every acknowledged write read back at the end;
//   - during: a command (`upgrade apply`, say) run while clients write through one mirror-aware client: the pauses the
//     clients saw from its start until a settling time after it ended, every client error, and every acknowledged
//     write read back at the end from the primary of the time.
//
// wait, failover, lag and during read the members' state only through their admin APIs, and failover changes it only
// through the member command line, as an operator would; during changes nothing itself, only the command it runs does.
// unplanned owns the processes, data directories and proxies of the mirror it makes, and stops them before it exits; it
// never touches a mirror it did not make.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
)

type cli struct {
	Wait     waitCmd     `cmd:"" help:"Wait until every backup is Active and every async caught up; print the primary's data address."`
	Failover failoverCmd `cmd:"" help:"Planned failovers under load: the client-visible pause of each, and client errors."`
	Lag      lagCmd      `cmd:"" help:"An async member's lag behind the primary while clients commit at full load."`
	// Unlike the commands above, which are given a running mirror, unplanned makes its own: its faults kill processes.
	Unplanned unplannedCmd `cmd:"" help:"Unplanned failovers (the primary killed, stopped or isolated) under load, with an arbiter: the unavailability of each."`
	During    duringCmd    `cmd:"" help:"Run a command (given after --) under load: the client-visible pauses until a settling time after it ended, client errors, lost commits."`
}

// mirrorFlags name the mirror under test.
type mirrorFlags struct {
	Members      []string      `required:"" sep:"," help:"Data addresses (host:port) of the mirror's failover members and asyncs, comma-separated."`
	Mirror       string        `default:"MIR" help:"Mirror name."`
	ReadyTimeout time.Duration `default:"60s" help:"How long to wait for every backup to be Active and every async caught up."`
}

// loadFlags shape the commit load, as in commitbench.
type loadFlags struct {
	DB      string        `name:"db" default:"BENCH" help:"Mirrored database to write to; it must exist on every member."`
	Clients int           `default:"64" help:"Concurrent clients, each with one commit in flight."`
	Conns   int           `default:"4" help:"Connections in the client's pool."`
	Warmup  time.Duration `default:"2s" help:"How long to run the load before measuring."`
	JSON    bool          `name:"json" help:"Print the result as one line of JSON."`
}

func (f *loadFlags) validate() error {
	if f.Clients < 1 || f.Conns < 1 {
		return fmt.Errorf("--clients %d and --conns %d: both must be at least 1", f.Clients, f.Conns)
	}
	if f.Warmup < 0 {
		return fmt.Errorf("--warmup %v: must not be negative", f.Warmup)
	}
	return nil
}

func main() {
	var c cli
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	kctx := kong.Parse(&c, kong.Name("failoverbench"),
		kong.Description("Measure planned failovers, async lag and any command (a rolling upgrade) of a running mirror under commit load, and unplanned failovers of a mirror made for it."),
		kong.BindTo(ctx, (*context.Context)(nil)))
	err := kctx.Run()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "failoverbench:", err)
		os.Exit(1)
	}
}

type waitCmd struct {
	mirrorFlags
	Hold time.Duration `help:"Once ready, keep checking every 100ms for this long that the mirror stays so, with the same primary, and fail if it does not (to guard a measurement made meanwhile)."`
}

func (c *waitCmd) Run(ctx context.Context) error {
	mon := newMonitor(c.Mirror, c.Members)
	addr, st, err := mon.waitReady(ctx, c.ReadyTimeout)
	if err != nil {
		return err
	}
	if _, err := fmt.Println(addr); err != nil {
		return err
	}
	return mon.hold(ctx, st.Primary, c.Hold)
}
