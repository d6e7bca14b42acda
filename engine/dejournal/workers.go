package dejournal

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// task is one database's share of one transaction, queued on the worker of each partition it touches.
type task struct {
	e          *entry
	gen        uint64
	recs       []journal.Record
	parts      []int
	start, end journal.Position
	time       time.Time // journal time of the transaction's last record

	workers  []int
	arrived  atomic.Int32  // workers that have reached the task
	done     chan struct{} // closed once applied (or dropped), for tasks on several workers
	finished bool          // guarded by Dejournaler.mu
}

func newTask(e *entry, s share, start, end journal.Position, t time.Time, workers int) *task {
	tk := &task{e: e, gen: e.gen, recs: s.recs, parts: s.parts, start: start, end: end, time: t}
	for _, p := range s.parts {
		if w := p % workers; !slices.Contains(tk.workers, w) {
			tk.workers = append(tk.workers, w)
		}
	}
	if len(tk.workers) > 1 {
		tk.done = make(chan struct{})
	}
	return tk
}

// queue is one worker's FIFO. Only the main reader pushes, so the order of tasks is the same on every queue that holds
// them, which is what makes the barriers of multi-worker tasks deadlock-free.
type queue struct {
	mu     sync.Mutex
	tasks  []*task
	signal chan struct{}
}

func newQueue() *queue { return &queue{signal: make(chan struct{}, 1)} }

func (q *queue) push(t *task) {
	q.mu.Lock()
	q.tasks = append(q.tasks, t)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// pop returns the next task, or nil once stop is closed.
func (q *queue) pop(stop <-chan struct{}) *task {
	for {
		q.mu.Lock()
		if len(q.tasks) > 0 {
			t := q.tasks[0]
			q.tasks[0] = nil
			q.tasks = q.tasks[1:]
			q.mu.Unlock()
			return t
		}
		q.mu.Unlock()
		select {
		case <-q.signal:
		case <-stop:
			return nil
		}
	}
}

// work runs one worker. A task queued on several workers is applied by the last of them to reach it, while the others wait:
// every earlier task of those partitions is applied by then, and none of their later ones starts before it is.
func (d *Dejournaler) work(q *queue, stop <-chan struct{}) {
	for {
		t := q.pop(stop)
		if t == nil {
			return
		}
		if len(t.workers) > 1 && int(t.arrived.Add(1)) < len(t.workers) {
			select {
			case <-t.done:
				continue
			case <-stop:
				return
			}
		}
		d.execute(t)
		if t.done != nil {
			close(t.done)
		}
	}
}

// execute applies t unless its database was paused, removed or handed over since t was queued.
func (d *Dejournaler) execute(t *task) {
	e := t.e
	d.mu.Lock()
	valid := !d.stopped && !e.removed && !e.paused && e.state == stateLive && e.gen == t.gen
	if valid {
		e.calls++
	}
	d.mu.Unlock()
	var err error
	if valid {
		err = e.target.ApplyReplicated(t.recs, t.end, t.parts)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if valid {
		e.calls--
		d.cond.Broadcast()
		if err != nil {
			d.failLocked(e, fmt.Errorf("apply transaction ending at %s: %w", t.end, err))
		} else {
			e.recordApplied(t.parts, t.end, t.time)
		}
	}
	t.finished = true
	for len(e.inflight) > 0 && e.inflight[0].finished {
		e.inflight[0] = nil
		e.inflight = e.inflight[1:]
	}
	d.inflight--
	d.maybeKickLocked(d.mainIdle && d.inflight == 0)
	d.notifyLocked()
}

// recordApplied notes what the target has just recorded for parts.
func (e *entry) recordApplied(parts []int, end journal.Position, t time.Time) {
	for _, p := range parts {
		e.parts[p] = maxPos(e.parts[p], end)
	}
	if t.After(e.lastApplied) {
		e.lastApplied = t
	}
}

// advance records, when kicked, the position every partition of each database has reached, so that partitions without
// traffic do not hold back the database's lowest applied position (which bounds journal purge and replay after a crash).
func (d *Dejournaler) advance(stop <-chan struct{}) {
	type job struct {
		e   *entry
		pos journal.Position
	}
	for {
		select {
		case <-d.kick:
		case <-stop:
			return
		}
		var jobs []job
		d.mu.Lock()
		for _, e := range d.targets {
			if e.paused || !d.readingLocked() {
				continue
			}
			// Every transaction of e ending at or before pos is applied, and none still to apply starts before it.
			if pos := d.coveredLocked(e); posLess(e.lowest(), pos) {
				e.calls++
				jobs = append(jobs, job{e, pos})
			}
		}
		d.mu.Unlock()
		for _, j := range jobs {
			err := j.e.target.AdvanceApplied(j.pos)
			d.mu.Lock()
			j.e.calls--
			d.cond.Broadcast()
			if err != nil {
				d.failLocked(j.e, fmt.Errorf("record applied position %s: %w", j.pos, err))
			} else {
				j.e.base = maxPos(j.e.base, j.pos)
			}
			d.notifyLocked()
			d.mu.Unlock()
		}
		// Kicks arriving meanwhile are coalesced into the next round.
		select {
		case <-time.After(advanceSpacing):
		case <-stop:
			return
		}
	}
}
