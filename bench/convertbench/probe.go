package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
)

const (
	// probeGlobal holds the probe's writes: ^probe("wW","sSSSSSSSSSSSS") for writer W's write number S. String
	// subscripts read back exactly as written.
	probeGlobal = "^probe"
	valueBytes  = 100
	// errorPause keeps a writer whose writes fail at once from spinning.
	errorPause = 10 * time.Millisecond
	// maxErrorSamples bounds the distinct error messages kept for the report.
	maxErrorSamples = 5
)

// writer is one closed-loop writer: one single-Set transaction in flight, the next sent once it is answered. Its
// records are read only after the probe stopped.
type writer struct {
	id       int
	db       string
	acks     []write
	seqs     []int64 // the write number of each ack
	failures []write
	errs     []string // distinct error messages, first seen first
}

// probe is a set of writers on the source's databases, all timed on one clock.
type probe struct {
	cl      *client.Client
	base    time.Time
	halt    atomic.Bool
	wg      sync.WaitGroup
	writers []*writer
}

func probeRef(id int, seq int64) string {
	return fmt.Sprintf(`%s("w%d","s%012d")`, probeGlobal, id, seq)
}

// probeValue is the value of a write: it names the write, so a value read back proves which one landed.
func probeValue(id int, seq int64) []byte {
	v := fmt.Appendf(make([]byte, 0, valueBytes), "writer %d write %d ", id, seq)
	for len(v) < valueBytes {
		v = append(v, '.')
	}
	return v[:valueBytes]
}

// startProbe starts perDB writers on each database.
func startProbe(ctx context.Context, cl *client.Client, dbs []string, perDB int) *probe {
	p := &probe{cl: cl, base: time.Now()}
	for _, db := range dbs {
		for range perDB {
			p.writers = append(p.writers, &writer{id: len(p.writers), db: db})
		}
	}
	for _, w := range p.writers {
		p.wg.Go(func() { p.run(ctx, w) })
	}
	return p
}

// now is the offset of this instant from the probe's start, the clock every record uses.
func (p *probe) now() time.Duration { return time.Since(p.base) }

func (p *probe) run(ctx context.Context, w *writer) {
	w.acks = make([]write, 0, 1<<14)
	for seq := int64(0); !p.halt.Load() && ctx.Err() == nil; seq++ {
		sent := p.now()
		err := p.cl.Set(ctx, w.db, probeRef(w.id, seq), probeValue(w.id, seq))
		done := p.now()
		if err == nil {
			w.acks = append(w.acks, write{sent, done})
			w.seqs = append(w.seqs, seq)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		w.failures = append(w.failures, write{sent, done})
		if msg := fmt.Sprintf("writer %d on %s: %v", w.id, w.db, err); len(w.errs) < maxErrorSamples && !slices.Contains(w.errs, msg) {
			w.errs = append(w.errs, msg)
		}
		t := time.NewTimer(errorPause)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// stop lets every writer finish the write it has in flight (none is cancelled, so stopping causes no error), and
// returns every acknowledged write ordered by acknowledgement, every failed one, and up to maxErrorSamples messages.
func (p *probe) stop() (acks, failures []write, errs []string) {
	p.halt.Store(true)
	p.wg.Wait()
	for _, w := range p.writers {
		acks = append(acks, w.acks...)
		failures = append(failures, w.failures...)
		for _, e := range w.errs {
			if len(errs) < maxErrorSamples {
				errs = append(errs, e)
			}
		}
	}
	byDone(acks)
	return acks, failures, errs
}

// readBack reads the probe's global back from each database on the member the client now talks to, in pages, and
// counts the acknowledged writes found there with their value and those missing or holding another value.
func (p *probe) readBack(ctx context.Context) (found, missing int, err error) {
	want := map[string]map[string][]byte{} // database → reference → value
	for _, w := range p.writers {
		m := want[w.db]
		if m == nil {
			m = map[string][]byte{}
			want[w.db] = m
		}
		for _, seq := range w.seqs {
			m[probeRef(w.id, seq)] = probeValue(w.id, seq)
		}
	}
	for db, m := range want {
		from := ""
		for {
			pairs, more, err := p.cl.Query(ctx, db, probeGlobal, from, 0)
			if err != nil {
				return 0, 0, fmt.Errorf("read back %s in database %s on %s: %w", probeGlobal, db, p.cl.Current(), err)
			}
			for _, kv := range pairs {
				if v, ok := m[kv.Ref]; ok && string(v) == string(kv.Value) {
					found++
					delete(m, kv.Ref)
				}
			}
			if !more || len(pairs) == 0 {
				break
			}
			from = pairs[len(pairs)-1].Ref
		}
		missing += len(m)
	}
	return found, missing, nil
}
