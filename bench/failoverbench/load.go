package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
)

const (
	keyBytes   = 8 // 16 hex characters, as in commitbench
	valueBytes = 100
	// errorPause keeps a client whose calls fail at once from spinning; a healthy mirror never gets here.
	errorPause = 10 * time.Millisecond
	// maxErrorSamples bounds the distinct error messages kept for the report.
	maxErrorSamples = 5
)

// call is one acknowledged commit: when it was sent and acknowledged, as offsets from the load's start, and its key.
type call struct {
	start, end time.Duration
	key        [keyBytes]byte
}

// callError is one failed call: when it was sent and when it returned, as offsets from the load's start.
type callError struct {
	start, at time.Duration
	err       error
}

// load is a closed-loop commit load: each client has one Set in flight and sends the next once it is answered. Unlike
// commitbench it does not stop at the first error: against a mirror that is failing over, an error is the finding, so
// every one is kept with its time. Each client records into its own slices; they are read only after stop.
type load struct {
	cl     *client.Client
	db     string
	global string
	base   time.Time
	halt   atomic.Bool
	wg     sync.WaitGroup
	calls  [][]call
	errs   [][]callError
	// ackedStart is the latest start, as an offset from the load's start, of any acknowledged call: while the load runs
	// it tells whether a call sent after some instant has been acknowledged.
	ackedStart atomic.Int64
}

// startLoad starts clients goroutines writing 100-byte values under random subscripts of global ("k" and 16 hex digits).
func startLoad(ctx context.Context, cl *client.Client, db, global string, clients int) *load {
	l := &load{cl: cl, db: db, global: global, base: time.Now(),
		calls: make([][]call, clients), errs: make([][]callError, clients)}
	seed := uint64(l.base.UnixNano())
	for i := range clients {
		l.wg.Go(func() { l.client(ctx, i, rand.New(rand.NewPCG(seed, uint64(i)))) })
	}
	return l
}

// now is the offset of this instant from the load's start, the clock every record uses.
func (l *load) now() time.Duration { return time.Since(l.base) }

// ref is the reference a key is written under. The "k" keeps an all-digit key a string subscript rather than a number,
// so that it reads back exactly as written.
func (l *load) ref(key [keyBytes]byte) string {
	return l.global + `("k` + hex.EncodeToString(key[:]) + `")`
}

func (l *load) client(ctx context.Context, i int, rng *rand.Rand) {
	calls := make([]call, 0, 1<<14)
	var errs []callError
	defer func() { l.calls[i], l.errs[i] = calls, errs }()
	for !l.halt.Load() && ctx.Err() == nil {
		var c call
		for k := range c.key {
			c.key[k] = byte(rng.Uint32())
		}
		value := make([]byte, valueBytes)
		for k := range value {
			value[k] = byte(rng.Uint32())
		}
		c.start = l.now()
		err := l.cl.Set(ctx, l.db, l.ref(c.key), value)
		c.end = l.now()
		if err == nil {
			calls = append(calls, c)
			for at := l.ackedStart.Load(); int64(c.start) > at && !l.ackedStart.CompareAndSwap(at, int64(c.start)); {
				at = l.ackedStart.Load()
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		errs = append(errs, callError{start: c.start, at: c.end, err: fmt.Errorf("client %d: set %s in database %s: %w", i, l.ref(c.key), l.db, err)})
		t := time.NewTimer(errorPause)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// ackedSince reports whether a call sent after t (an offset from the load's start) has been acknowledged.
func (l *load) ackedSince(t time.Duration) bool { return time.Duration(l.ackedStart.Load()) > t }

// stop lets every client finish the call it has in flight (none is cancelled, so no error comes from stopping) and
// returns the acknowledged calls ordered by acknowledgement, and the errors ordered by time.
func (l *load) stop() ([]call, []callError) {
	l.halt.Store(true)
	l.wg.Wait()
	calls := slices.Concat(l.calls...)
	slices.SortFunc(calls, func(a, b call) int { return cmp.Compare(a.end, b.end) })
	errs := slices.Concat(l.errs...)
	slices.SortFunc(errs, func(a, b callError) int { return cmp.Compare(a.at, b.at) })
	return calls, errs
}

// errorSamples returns up to maxErrorSamples distinct error messages, first seen first.
func errorSamples(errs []callError) []string {
	var out []string
	for _, e := range errs {
		if msg := e.err.Error(); !slices.Contains(out, msg) {
			if out = append(out, msg); len(out) == maxErrorSamples {
				break
			}
		}
	}
	return out
}

// missing counts the acknowledged calls whose key the member now serving the client does not hold, reading the global
// back in pages.
func (l *load) missing(ctx context.Context, calls []call) (int, error) {
	want := make(map[string]struct{}, len(calls))
	for _, c := range calls {
		want[l.ref(c.key)] = struct{}{}
	}
	from := ""
	for {
		pairs, more, err := l.cl.Query(ctx, l.db, l.global, from, 0)
		if err != nil {
			return 0, fmt.Errorf("read back %s in database %s on %s: %w", l.global, l.db, l.cl.Current(), err)
		}
		for _, p := range pairs {
			delete(want, p.Ref)
		}
		if !more || len(pairs) == 0 {
			return len(want), nil
		}
		from = pairs[len(pairs)-1].Ref
	}
}
