package dejournal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// errRunning is returned by a second concurrent Run.
var errRunning = errors.New("dejournaler is already running")

// Run applies the journal until ctx ends. It returns nil when ctx ends, and an error only when the journal cannot be read
// (then nothing more is applied until Run is called again). Calls into targets still in progress are waited for.
func (d *Dejournaler) Run(ctx context.Context) error {
	if d.opts.Source == nil {
		return fmt.Errorf("mirror %s: dejournal without a journal", d.opts.Mirror)
	}
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return fmt.Errorf("mirror %s: %w", d.opts.Mirror, errRunning)
	}
	d.running = true
	d.queues = make([]*queue, d.workers)
	for i := range d.queues {
		d.queues[i] = newQueue()
	}
	queues := d.queues
	d.mu.Unlock()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, q := range queues {
		wg.Go(func() { d.work(q, stop) })
	}
	wg.Go(func() { d.advance(stop) })

	err := d.loop(ctx)

	close(stop)
	wg.Wait()
	d.catchups.Wait()
	d.mu.Lock()
	// Shares still queued are dropped with the queues; the next Run finds them again from the applied positions.
	d.running = false
	d.queues = nil
	d.inflight = 0
	for _, e := range d.targets {
		e.gen++
		e.inflight = nil
	}
	d.notifyLocked()
	d.mu.Unlock()
	return err
}

// loop runs sessions of the main reader: one from the start, and a new one after each resumption of a stopped mirror.
func (d *Dejournaler) loop(ctx context.Context) error {
	for {
		d.mu.Lock()
		for d.stopped {
			ch := d.changedLocked()
			d.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil
			}
			d.mu.Lock()
		}
		d.mu.Unlock()
		if err := d.session(ctx); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// session runs the main reader from the lowest applied position of the databases that are not paused until the mirror is
// stopped or ctx ends (nil), or the journal fails (the error).
func (d *Dejournaler) session(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r, err := d.startSession(sctx, cancel)
	defer d.endSession()
	if err != nil || r == nil {
		return err
	}
	defer r.Close()

	txns := newTxnTracker(func(*journal.Record) bool { return true })
	for sctx.Err() == nil {
		rec, err := r.Next(d.poll)
		if errors.Is(err, context.Canceled) { // everything durable has been read
			d.mu.Lock()
			d.mainIdle = true
			d.maybeKickLocked(d.inflight == 0)
			d.notifyLocked()
			d.mu.Unlock()
			rec, err = r.Next(sctx)
		}
		if err != nil {
			if sctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("mirror %s: read journal at %s: %w", d.opts.Mirror, r.Position(), err)
		}
		if !d.process(sctx, rec, r.Position(), txns) {
			return nil
		}
	}
	return nil
}

// startSession makes every database that is not paused live and opens the main reader at the lowest of their applied
// positions (at most the durable end). A database whose position cannot be read from (purged, or not a record boundary) is
// paused with that error. It returns a nil reader if the mirror was stopped meanwhile.
func (d *Dejournaler) startSession(sctx context.Context, cancel context.CancelFunc) (*journal.Reader, error) {
	d.mu.Lock()
	for d.anyCallsLocked() {
		d.cond.Wait()
	}
	if d.stopped {
		d.mu.Unlock()
		return nil, nil
	}
	d.sessionActive = true
	d.sessionCtx, d.sessionCancel = sctx, cancel
	d.mainIdle = false
	d.marks = nil
	for _, e := range d.targets {
		if !e.paused {
			d.makeLiveLocked(e)
		}
	}
	for {
		start, from := d.sessionStartLocked()
		// Databases added from now on compare their positions with where this reader starts.
		d.mainRead, d.mainSafe = start, start
		d.mu.Unlock()

		r, err := d.opts.Source.NewReader(start)
		if err == nil {
			d.log.Debug().Str("pos", start.String()).Msg("reading the mirror journal")
			return r, nil
		}
		if len(from) == 0 || !(errors.Is(err, journal.ErrPurged) || errors.Is(err, journal.ErrBadPosition)) {
			return nil, fmt.Errorf("mirror %s: read journal from %s: %w", d.opts.Mirror, start, err)
		}
		d.mu.Lock()
		for _, e := range from {
			d.failLocked(e, startError(start, err))
		}
		if d.stopped {
			d.mu.Unlock()
			return nil, nil
		}
	}
}

// sessionStartLocked is where the main reader starts: the lowest applied position of the live databases, at most the
// durable end, and the databases whose position that is.
func (d *Dejournaler) sessionStartLocked() (journal.Position, []*entry) {
	start, from := d.opts.Source.DurableEnd(), []*entry(nil)
	for _, e := range d.targets {
		if e.paused || e.state != stateLive {
			continue
		}
		switch low := e.lowest(); {
		case posLess(low, start):
			start, from = low, []*entry{e}
		case !posLess(start, low) && from != nil:
			from = append(from, e)
		}
	}
	return readable(start), from
}

func (d *Dejournaler) endSession() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sessionActive = false
	d.sessionCtx, d.sessionCancel = nil, nil
	d.mainIdle = false
	d.notifyLocked()
}

func (d *Dejournaler) anyCallsLocked() bool {
	for _, e := range d.targets {
		if e.calls > 0 {
			return true
		}
	}
	return false
}

// readable turns the zero position (nothing applied) into the start of the first segment, so that a database that needs
// the whole journal gets ErrPurged rather than silently starting at the oldest segment still present.
func readable(pos journal.Position) journal.Position {
	if pos.IsZero() {
		return journal.Position{Segment: 1, Offset: journal.HeaderSize}
	}
	return pos
}

// startError explains why a database cannot be dejournaled from its applied position.
func startError(start journal.Position, err error) error {
	if errors.Is(err, journal.ErrPurged) {
		return fmt.Errorf("mirror journal from %s is purged; take a newer backup of the database: %w", start, err)
	}
	return fmt.Errorf("read journal from the applied position %s: %w", start, err)
}

// process handles one record read by the main reader; end is the position after it. It returns false if the session ended
// while waiting for room among the shares in flight.
func (d *Dejournaler) process(sctx context.Context, rec journal.Record, end journal.Position, txns *txnTracker) bool {
	done := txns.add(rec)
	d.mu.Lock()
	defer d.mu.Unlock()
	for done != nil && d.inflight >= maxInflight {
		ch := d.changedLocked()
		d.mu.Unlock()
		select {
		case <-ch:
		case <-sctx.Done():
			d.mu.Lock()
			return false
		}
		d.mu.Lock()
	}
	if sctx.Err() != nil {
		return false
	}
	// The read position moves together with the dispatch of what completed there, so that a catch-up reader handing its
	// database over at or after this position never misses a transaction.
	d.mainRead, d.mainSafe, d.mainIdle = end, txns.safe(end), false
	t := time.Unix(0, rec.Time)
	if t.After(d.lastReceived) {
		d.lastReceived = t
	}
	if done != nil {
		d.dispatchLocked(done, end, t)
	}
	if done != nil || !isData(&rec) {
		d.pushMarkLocked(end, t)
	}
	if done != nil {
		d.maybeKickLocked(false)
	}
	d.notifyLocked()
	return true
}

// dispatchLocked hands each live database's share of a completed transaction to the workers of its partitions.
func (d *Dejournaler) dispatchLocked(txn *pendingTxn, end journal.Position, t time.Time) {
	for _, db := range databasesOf(txn.recs) {
		e := d.targets[db]
		if e == nil || e.paused || e.state != stateLive {
			continue
		}
		s := shareOf(txn.recs, db, end, func(p int) journal.Position { return e.dispatched[p] })
		if len(s.recs) == 0 {
			continue
		}
		for _, p := range s.parts {
			e.dispatched[p] = end
		}
		tk := newTask(e, s, txn.start, end, t, d.workers)
		e.inflight = append(e.inflight, tk)
		d.inflight++
		for _, w := range tk.workers {
			d.queues[w].push(tk)
		}
	}
}
