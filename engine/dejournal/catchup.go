package dejournal

import (
	"context"
	"fmt"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// startCatchUpLocked gives e its own reader from its own applied position, for as long as it is behind the main reader.
func (d *Dejournaler) startCatchUpLocked(e *entry) {
	d.cancelCatchUpLocked(e)
	e.state = stateCatchingUp
	e.gen++
	e.inflight = nil
	e.cuSafe = e.lowest()
	ctx, cancel := context.WithCancel(d.sessionCtx)
	e.cuCancel = cancel
	gen := e.gen
	d.catchups.Add(1)
	go func() {
		defer d.catchups.Done()
		defer cancel()
		if err := d.catchUp(ctx, e, gen); err != nil {
			d.mu.Lock()
			d.failLocked(e, err)
			d.mu.Unlock()
		}
	}()
}

// catchUp applies e's transactions in journal order, one at a time, until its reader reaches the main reader at a
// transaction boundary; then e is handed over. It stops without error when e is paused, removed or handed over otherwise
// (gen changes) or ctx ends.
func (d *Dejournaler) catchUp(ctx context.Context, e *entry, gen uint64) error {
	d.mu.Lock()
	// A call that was in progress when e was paused may still move its applied positions.
	for e.calls > 0 && e.gen == gen {
		d.cond.Wait()
	}
	if e.gen != gen {
		d.mu.Unlock()
		return nil
	}
	start := e.lowest()
	e.cuSafe = start
	if d.handOverLocked(e, start) {
		d.mu.Unlock()
		return nil
	}
	d.mu.Unlock()

	start = readable(start)
	d.log.Info().Str("db", e.name).Str("pos", start.String()).Msg("catching up")
	r, err := d.opts.Source.NewReader(start)
	if err != nil {
		return startError(start, err)
	}
	defer r.Close()
	txns := newTxnTracker(func(rec *journal.Record) bool { return rec.DB == e.name })
	for ctx.Err() == nil { // a done context still lets Next return durable records
		if txns.empty() {
			d.mu.Lock()
			if e.gen != gen {
				d.mu.Unlock()
				return nil
			}
			e.cuSafe = r.Position()
			handed := d.handOverLocked(e, e.cuSafe)
			d.notifyLocked()
			d.mu.Unlock()
			if handed {
				d.log.Info().Str("db", e.name).Str("pos", r.Position().String()).Msg("caught up")
				return nil
			}
		}
		rec, err := r.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("catch up: read journal at %s: %w", r.Position(), err)
		}
		if txn := txns.add(rec); txn != nil {
			if err := d.catchUpApply(e, gen, txn, r.Position(), time.Unix(0, rec.Time)); err != nil {
				return err
			}
		}
	}
	return nil
}

// catchUpApply applies e's share of a transaction ending at end.
func (d *Dejournaler) catchUpApply(e *entry, gen uint64, txn *pendingTxn, end journal.Position, t time.Time) error {
	d.mu.Lock()
	if e.gen != gen {
		d.mu.Unlock()
		return nil
	}
	s := shareOf(txn.recs, e.name, end, e.effective)
	if len(s.recs) == 0 {
		d.mu.Unlock()
		return nil
	}
	e.calls++
	d.mu.Unlock()
	err := e.target.ApplyReplicated(s.recs, end, s.parts)
	d.mu.Lock()
	defer d.mu.Unlock()
	e.calls--
	d.cond.Broadcast()
	if err != nil {
		return fmt.Errorf("apply transaction ending at %s: %w", end, err)
	}
	e.recordApplied(s.parts, end, t)
	d.maybeKickLocked(false)
	d.notifyLocked()
	return nil
}

// handOverLocked makes e live if the catch-up at pos (a transaction boundary) has reached the main reader: every
// transaction the main reader completed ends at or before its position, hence at or before pos, and is applied; every later
// one will be dispatched to e unless it ends at or before pos.
func (d *Dejournaler) handOverLocked(e *entry, pos journal.Position) bool {
	if !d.readingLocked() || posLess(pos, d.mainRead) {
		return false
	}
	d.makeLiveLocked(e)
	for p := range Partitions {
		e.dispatched[p] = maxPos(e.dispatched[p], pos)
	}
	d.maybeKickLocked(true)
	return true
}
