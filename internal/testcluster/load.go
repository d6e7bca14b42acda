package testcluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
)

// LoadOptions shape a Load.
type LoadOptions struct {
	// Client are the mirror-aware client's options.
	Client client.Options
	// DBs are the databases written (default APP); each gets Writers writers.
	DBs     []string
	Writers int
	// SetsOnly makes every write a Set (idempotent, so the client re-sends it across any failover); otherwise every
	// fourth is a transaction with an Incr of ^Count(writer).
	SetsOnly bool
	// Prefix is the global name of the keys written: ^Prefix(writer,seq).
	Prefix string
}

// Load runs writers against a mirror through a mirror-aware client until Finish, recording every acknowledged key; a
// writer stops at its first client error, which WaitAcks and Finish report.
type Load struct {
	mu     sync.Mutex
	acked  map[string]map[string]string // database -> reference -> value
	errs   []error
	n      atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup
	client *client.Client
	slow   []interval // writes that took longer than StallThreshold
}

// StallThreshold is the write latency above which a write counts as the application seeing the mirror unavailable.
const StallThreshold = 50 * time.Millisecond

type interval struct{ from, to time.Time }

// StartLoad dials the mirror through addrs and starts the writers.
func StartLoad(tb testing.TB, addrs []string, o LoadOptions) *Load {
	tb.Helper()
	if len(o.DBs) == 0 {
		o.DBs = []string{"APP"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.DialMirror(ctx, addrs, o.Client)
	if err != nil {
		tb.Fatal(err)
	}
	l := &Load{acked: map[string]map[string]string{}, stop: make(chan struct{}), client: c}
	for _, db := range o.DBs {
		l.acked[db] = map[string]string{}
	}
	// Every database's map exists before any writer runs: they read l.acked.
	for _, db := range o.DBs {
		for w := 0; w < o.Writers; w++ {
			l.wg.Add(1)
			go l.write(db, w, o)
		}
	}
	return l
}

func (l *Load) write(db string, w int, o LoadOptions) {
	defer l.wg.Done()
	for seq := 0; ; seq++ {
		select {
		case <-l.stop:
			return
		default:
		}
		ref, val := fmt.Sprintf(`^%s(%d,%d)`, o.Prefix, w, seq), fmt.Sprintf("w%d-%d", w, seq)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		start := time.Now()
		var err error
		if seq%4 == 0 && !o.SetsOnly {
			_, err = l.client.Txn(db).Set(ref, []byte(val)).Incr(fmt.Sprintf(`^Count(%d)`, w), "1").Commit(ctx)
		} else {
			err = l.client.Set(ctx, db, ref, []byte(val))
		}
		cancel()
		end := time.Now()
		l.mu.Lock()
		if end.Sub(start) > StallThreshold {
			l.slow = append(l.slow, interval{start, end})
		}
		if err != nil {
			l.errs = append(l.errs, fmt.Errorf("%s %s: %w", db, ref, err))
		} else {
			l.acked[db][ref] = val
		}
		l.mu.Unlock()
		if err != nil {
			return
		}
		l.n.Add(1)
	}
}

// WaitAcks waits until at least n more writes have been acknowledged, failing the test at the first client error.
func (l *Load) WaitAcks(tb testing.TB, c *Cluster, n int64) {
	tb.Helper()
	target := l.n.Load() + n
	c.WaitFor(tb, fmt.Sprintf("%d more acknowledged writes", n), 90*time.Second, func() (bool, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.errs) > 0 {
			tb.Fatalf("client error under load: %v", l.errs[0])
		}
		return l.n.Load() >= target, nil
	})
}

// Finish stops the writers and returns what each database acknowledged; any client error fails the test.
func (l *Load) Finish(tb testing.TB) map[string]map[string]string {
	tb.Helper()
	close(l.stop)
	l.wg.Wait()
	l.client.Close()
	if len(l.errs) > 0 {
		tb.Fatalf("%d client errors, first: %v", len(l.errs), l.errs[0])
	}
	return l.acked
}

// Unavailability is how long the application saw the mirror unavailable: the union of the time spans of writes that took
// longer than StallThreshold (writers stalled together count once), and the longest such span.
func (l *Load) Unavailability() (total, longest time.Duration) {
	l.mu.Lock()
	spans := slices.Clone(l.slow)
	l.mu.Unlock()
	slices.SortFunc(spans, func(a, b interval) int { return a.from.Compare(b.from) })
	var cur interval
	flush := func() {
		if d := cur.to.Sub(cur.from); d > 0 {
			total += d
			longest = max(longest, d)
		}
	}
	for i, s := range spans {
		if i > 0 && !s.from.After(cur.to) {
			if s.to.After(cur.to) {
				cur.to = s.to
			}
			continue
		}
		if i > 0 {
			flush()
		}
		cur = s
	}
	if len(spans) > 0 {
		flush()
	}
	return total, longest
}
