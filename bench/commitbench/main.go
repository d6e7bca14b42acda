// Command commitbench is the load generator for a running member: --clients goroutines share one client (a pool of --conns
// connections) and each loops, writing a 100-byte value under a random 16-character subscript of ^B with Set and waiting
// for the acknowledgement, which the member gives only once the commit is durable. After --warmup it measures for
// --duration the commits acknowledged in that window: their rate and latency percentiles.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"golang.org/x/sync/errgroup"

	"github.com/mirrorkit/mirrorkit/bench/internal/latency"
	"github.com/mirrorkit/mirrorkit/engine/client"
)

const (
	keyBytes   = 8 // 16 hex characters
	valueBytes = 100
)

type cli struct {
	Member   string        `required:"" help:"Data address of the member (host:port)."`
	DB       string        `name:"db" default:"BENCH" help:"Database to write to; it must exist."`
	Clients  int           `default:"1" help:"Concurrent clients, each with one commit in flight."`
	Duration time.Duration `default:"10s" help:"How long to measure."`
	Warmup   time.Duration `default:"2s" help:"How long to run before measuring."`
	Conns    int           `default:"4" help:"Connections in the client's pool."`
	JSON     bool          `name:"json" help:"Print the result as one line of JSON."`
	System   string        `default:"mirrorkit" help:"Name to report the run under (e.g. mirrorkit-backup when the member has an Active backup)."`
}

func main() {
	var c cli
	kong.Parse(&c, kong.Name("commitbench"), kong.Description("Measure durable commits per second and their latency on a member."))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := c.run(ctx, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "commitbench:", err)
		os.Exit(1)
	}
}

func (c *cli) run(ctx context.Context, out io.Writer) (err error) {
	if c.Clients < 1 || c.Conns < 1 {
		return fmt.Errorf("--clients %d and --conns %d: both must be at least 1", c.Clients, c.Conns)
	}
	if c.Duration <= 0 || c.Warmup < 0 {
		return fmt.Errorf("--duration %v must be positive and --warmup %v not negative", c.Duration, c.Warmup)
	}
	cl, err := client.Dial(ctx, c.Member, client.Options{Conns: c.Conns, Name: "bench"})
	if err != nil {
		return fmt.Errorf("dial member %s: %w", c.Member, err)
	}
	defer func() { err = errors.Join(err, cl.Close()) }()

	from := time.Now().Add(c.Warmup)
	w := window{from: from, to: from.Add(c.Duration)}
	perClient := make([][]time.Duration, c.Clients)
	g, gctx := errgroup.WithContext(ctx)
	seed := uint64(time.Now().UnixNano())
	for i := range c.Clients {
		g.Go(func() error {
			var err error
			perClient[i], err = c.load(gctx, cl, w, rand.New(rand.NewPCG(seed, uint64(i))))
			if err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	s, err := latency.Summarize(c.System, c.Clients, c.Duration, slices.Concat(perClient...))
	if err != nil {
		return fmt.Errorf("database %s on %s: %w", c.DB, c.Member, err)
	}
	return s.Output(out, c.JSON)
}

// window is the measured interval: a commit counts when its acknowledgement arrives within it.
type window struct{ from, to time.Time }

// load is one client: it commits until the window closes and returns the latencies of the commits acknowledged within it.
// Any failed commit ends the run, since a benchmark that skips errors measures something else.
func (c *cli) load(ctx context.Context, cl *client.Client, w window, rng *rand.Rand) ([]time.Duration, error) {
	samples := make([]time.Duration, 0, 4096)
	var key [keyBytes]byte
	for {
		start := time.Now()
		if !start.Before(w.to) {
			return samples, nil
		}
		for i := range key {
			key[i] = byte(rng.Uint32())
		}
		ref := `^B("` + hex.EncodeToString(key[:]) + `")`
		value := make([]byte, valueBytes)
		for i := range value {
			value[i] = byte(rng.Uint32())
		}
		if err := cl.Set(ctx, c.DB, ref, value); err != nil {
			return nil, fmt.Errorf("set %s in database %s: %w", ref, c.DB, err)
		}
		end := time.Now()
		if !end.Before(w.from) && !end.After(w.to) {
			samples = append(samples, end.Sub(start))
		}
	}
}
