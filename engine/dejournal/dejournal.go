package dejournal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// Partitions is the number of partitions of a database. It is part of the on-disk meaning of the per-partition applied
// positions a database stores, so it cannot change without a format change.
const Partitions = 16

const (
	// advanceInterval is how often, while transactions are being applied, databases record the position all their
	// partitions have reached.
	advanceInterval = 200 * time.Millisecond
	// advanceSpacing is the least time between two such rounds, since the reader may catch up after every group commit.
	advanceSpacing = 20 * time.Millisecond
	// maxInflight bounds the shares handed to workers and not yet applied, which bounds how far the main reader runs ahead.
	maxInflight = 1024
	// maxMarks bounds the positions kept to tell the journal time up to which the mirror has applied everything.
	maxMarks = 4096
)

var (
	// ErrUnknownDatabase means a database is not dejournaled by this mirror on this member.
	ErrUnknownDatabase = errors.New("database is not dejournaled here")
	// ErrPaused means dejournaling of a database is paused, by an operator or by an apply error.
	ErrPaused = errors.New("dejournaling paused")
	// ErrStopped means dejournaling of the whole mirror is stopped, by an operator or by an apply error.
	ErrStopped = errors.New("dejournaling stopped")
)

// Target is one local copy of a mirrored database (implemented by *store.Database). Its methods may be called concurrently.
type Target interface {
	Name() string
	// ApplyReplicated applies recs (all for this database, one transaction, in journal order) and records end as the applied
	// position of each listed partition, in one atomic batch.
	ApplyReplicated(recs []journal.Record, end journal.Position, partitions []int) error
	// AdvanceApplied records that every partition is applied at least up to pos (base position), in one small batch.
	AdvanceApplied(pos journal.Position) error
	// AppliedPositions returns the base position and the per-partition positions (each effective position is
	// max(base, part[i])).
	AppliedPositions() (base journal.Position, parts [Partitions]journal.Position)
}

// Source is the member's copy of the mirror journal (implemented by *journal.Journal).
type Source interface {
	NewReader(from journal.Position) (*journal.Reader, error)
	DurableEnd() journal.Position
}

var _ Source = (*journal.Journal)(nil)

// Options configure a Dejournaler.
type Options struct {
	Mirror             string
	Source             Source
	Workers            int  // default Partitions, at most Partitions
	PauseMirrorOnError bool // an apply error stops the whole mirror (reporting async) instead of pausing one database
	Logger             zerolog.Logger
	Now                func() time.Time // paces the recording of applied positions; default time.Now
}

// DBStatus is the dejournaling state of one database.
type DBStatus struct {
	Name string
	// Applied is the lowest effective applied position the database has recorded ("next record to dejournal").
	Applied         journal.Position
	Paused          bool
	Err             string    // last apply error, if paused by one
	LastAppliedTime time.Time // journal time of the last applied record
	CatchingUp      bool      // applied by its own catch-up reader, behind the main reader
}

// Status is the dejournaling state of the mirror.
type Status struct {
	Received         journal.Position // source durable end
	LastReceivedTime time.Time        // journal time of the newest record received (read)
	// LastAppliedTime is the journal time of the newest record up to which every database that is not paused or catching
	// up has applied everything.
	LastAppliedTime time.Time
	Stopped         bool   // whole mirror paused (operator or error)
	Err             string // the apply error that stopped the mirror, naming the database
	Databases       []DBStatus
}

type entryState int

const (
	stateLive       entryState = iota // applied by the main reader's workers
	stateCatchingUp                   // applied by its own catch-up reader
)

// entry is the dejournaler's view of one target. All fields are guarded by Dejournaler.mu.
type entry struct {
	name   string
	target Target

	// base and parts are what the target has recorded (initially read from it, then updated on every successful call).
	base  journal.Position
	parts [Partitions]journal.Position

	state   entryState
	paused  bool
	err     string
	removed bool
	// gen changes whenever work handed out earlier must no longer be applied (pause, resume, removal, mirror stop).
	gen uint64
	// calls counts calls into the target in progress, so that a catch-up starts and a removal returns only without any.
	calls int

	// Live: end of the last transaction handed to a worker per partition, and the shares in flight in dispatch order.
	dispatched [Partitions]journal.Position
	inflight   []*task

	// Catching up: every transaction of this database ending at or before cuSafe is applied.
	cuSafe   journal.Position
	cuCancel context.CancelFunc

	lastApplied time.Time
}

func (e *entry) effective(p int) journal.Position { return maxPos(e.base, e.parts[p]) }

// lowest is the lowest effective applied position the target has recorded.
func (e *entry) lowest() journal.Position {
	low := e.effective(0)
	for p := 1; p < Partitions; p++ {
		low = minPos(low, e.effective(p))
	}
	return low
}

// mark is the journal time of the record ending at end, for LastAppliedTime.
type mark struct {
	end  journal.Position
	time time.Time
}

// Dejournaler applies one mirror's journal to its local databases.
type Dejournaler struct {
	opts    Options
	log     zerolog.Logger
	workers int
	kick    chan struct{} // asks the advancer to record applied positions
	poll    context.Context

	mu   sync.Mutex
	cond *sync.Cond // broadcast whenever a call into a target returns
	// changed is closed (and replaced) on every change WaitApplied or the main loop may wait for, if someone took it.
	changed      chan struct{}
	changedTaken bool
	targets      map[string]*entry
	running      bool
	stopped      bool
	stopErr      string

	// Main reader state, valid while sessionActive.
	sessionActive bool
	sessionCtx    context.Context
	sessionCancel context.CancelFunc
	queues        []*queue
	mainRead      journal.Position // position after the last record the main reader has processed
	mainSafe      journal.Position // no transaction the main reader has not completed starts before it
	mainIdle      bool             // the main reader has read everything durable
	inflight      int              // shares queued or being applied
	marks         []mark

	lastReceived time.Time
	lastApplied  time.Time
	lastKick     time.Time

	catchups sync.WaitGroup
}

// New returns a Dejournaler; add targets with AddTarget and start it with Run.
func New(opts Options) *Dejournaler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	workers := opts.Workers
	if workers <= 0 || workers > Partitions {
		workers = Partitions
	}
	poll, cancel := context.WithCancel(context.Background())
	cancel() // a done context makes journal.Reader.Next return only what is already durable
	d := &Dejournaler{
		opts:    opts,
		log:     opts.Logger.With().Str("component", "dejournal").Str("mirror", opts.Mirror).Logger(),
		workers: workers,
		kick:    make(chan struct{}, 1),
		poll:    poll,
		changed: make(chan struct{}),
		targets: map[string]*entry{},
	}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// AddTarget starts dejournaling into t from its own applied positions: records whose DB equals t.Name() are applied to it.
// A target of the same name is replaced. While Run is active, a target behind the main reader catches up on its own reader.
func (d *Dejournaler) AddTarget(t Target) {
	base, parts := t.AppliedPositions()
	d.mu.Lock()
	defer d.mu.Unlock()
	name := t.Name()
	if old := d.targets[name]; old != nil {
		d.removeLocked(old)
	}
	e := &entry{name: name, target: t, base: base, parts: parts}
	d.targets[name] = e
	switch {
	case !d.readingLocked():
		e.state = stateLive // the next session of the main reader starts low enough for it
	case !posLess(e.lowest(), d.mainRead):
		d.makeLiveLocked(e)
	default:
		d.startCatchUpLocked(e)
	}
	d.notifyLocked()
}

// RemoveTarget stops dejournaling into the named database. When it returns, no call into that target is in progress and
// none will be made.
func (d *Dejournaler) RemoveTarget(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.targets[name]; e != nil {
		d.removeLocked(e)
		d.notifyLocked()
	}
}

func (d *Dejournaler) removeLocked(e *entry) {
	e.removed = true
	e.gen++
	d.cancelCatchUpLocked(e)
	delete(d.targets, e.name)
	for e.calls > 0 {
		d.cond.Wait()
	}
}

func (d *Dejournaler) lookupLocked(db string) (*entry, error) {
	e := d.targets[db]
	if e == nil {
		return nil, fmt.Errorf("mirror %s: database %s: %w", d.opts.Mirror, db, ErrUnknownDatabase)
	}
	return e, nil
}

// Pause stops applying records to db until Resume.
func (d *Dejournaler) Pause(db string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, err := d.lookupLocked(db)
	if err != nil {
		return err
	}
	if !e.paused {
		d.pauseLocked(e)
		d.log.Info().Str("db", db).Msg("dejournaling paused")
	}
	return nil
}

// Resume resumes applying records to db from its own applied position, clearing an apply error.
func (d *Dejournaler) Resume(db string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, err := d.lookupLocked(db)
	if err != nil {
		return err
	}
	if !e.paused {
		return nil
	}
	e.paused, e.err = false, ""
	e.gen++
	if d.readingLocked() {
		d.startCatchUpLocked(e)
	} else {
		e.state = stateLive
	}
	d.log.Info().Str("db", db).Msg("dejournaling resumed")
	d.notifyLocked()
	return nil
}

// PauseAll stops dejournaling for the whole mirror until ResumeAll.
func (d *Dejournaler) PauseAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.stopped {
		d.log.Info().Msg("dejournaling stopped")
	}
	d.stopLocked("")
}

// ResumeAll resumes dejournaling for the whole mirror, from the lowest applied position of the databases that are not
// paused, and clears the mirror's error.
func (d *Dejournaler) ResumeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		d.stopped, d.stopErr = false, ""
		d.log.Info().Msg("dejournaling resumed")
		d.notifyLocked()
	}
}

func (d *Dejournaler) pauseLocked(e *entry) {
	e.paused = true
	e.gen++
	e.inflight = nil
	d.cancelCatchUpLocked(e)
	d.notifyLocked()
}

func (d *Dejournaler) stopLocked(errText string) {
	if !d.stopped {
		d.stopped = true
		for _, e := range d.targets {
			e.gen++
			e.inflight = nil
			d.cancelCatchUpLocked(e)
		}
		if d.sessionCancel != nil {
			d.sessionCancel()
		}
	}
	if errText != "" && d.stopErr == "" {
		d.stopErr = errText
	}
	d.notifyLocked()
}

// failLocked handles a failed call into a target: the database, or with PauseMirrorOnError the whole mirror, is paused
// with the error kept for the status. The error of a target removed meanwhile concerns nobody any more.
func (d *Dejournaler) failLocked(e *entry, err error) {
	if e.removed {
		return
	}
	err = fmt.Errorf("database %s: %w", e.name, err)
	if d.opts.PauseMirrorOnError {
		d.log.Error().Err(err).Str("db", e.name).Msg("dejournaling stopped for the mirror by an apply error")
		d.stopLocked(err.Error())
		return
	}
	d.log.Error().Err(err).Str("db", e.name).Msg("dejournaling paused for the database by an apply error")
	if !e.paused {
		d.pauseLocked(e)
	}
	if e.err == "" {
		e.err = err.Error()
	}
}

func (d *Dejournaler) cancelCatchUpLocked(e *entry) {
	if e.cuCancel != nil {
		e.cuCancel()
		e.cuCancel = nil
	}
}

// makeLiveLocked hands e to the main reader: everything it has recorded as applied is skipped.
func (d *Dejournaler) makeLiveLocked(e *entry) {
	e.state = stateLive
	e.gen++
	e.inflight = nil
	d.cancelCatchUpLocked(e)
	for p := range Partitions {
		e.dispatched[p] = e.effective(p)
	}
}

// readingLocked reports whether the main reader is running; otherwise every database that is not paused is made live when
// it starts again.
func (d *Dejournaler) readingLocked() bool { return d.sessionActive && !d.stopped }

// notifyLocked wakes whoever waits on changed.
func (d *Dejournaler) notifyLocked() {
	if d.changedTaken {
		close(d.changed)
		d.changed = make(chan struct{})
		d.changedTaken = false
	}
}

func (d *Dejournaler) changedLocked() <-chan struct{} {
	d.changedTaken = true
	return d.changed
}

// coveredLocked is the position up to which every transaction of e has been applied (not necessarily recorded as a base).
func (d *Dejournaler) coveredLocked(e *entry) journal.Position {
	low := e.lowest()
	if e.paused || e.removed || !d.readingLocked() {
		return low
	}
	var c journal.Position
	switch e.state {
	case stateLive:
		c = d.mainSafe
		if len(e.inflight) > 0 {
			c = minPos(c, e.inflight[0].start)
		}
	case stateCatchingUp:
		c = e.cuSafe
	}
	return maxPos(low, c)
}

// WaitApplied blocks until every target has applied everything before pos (or ctx ends). A paused target or a stopped
// mirror is an error naming it, since waiting could last forever.
func (d *Dejournaler) WaitApplied(ctx context.Context, pos journal.Position) error {
	for {
		d.mu.Lock()
		done, err := d.appliedThroughLocked(pos)
		ch := d.changedLocked()
		d.mu.Unlock()
		if done || err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("mirror %s: wait for databases to apply %s: %w", d.opts.Mirror, pos, ctx.Err())
		}
	}
}

func (d *Dejournaler) appliedThroughLocked(pos journal.Position) (bool, error) {
	if d.stopped {
		if d.stopErr != "" {
			return false, fmt.Errorf("mirror %s: %w: %s", d.opts.Mirror, ErrStopped, d.stopErr)
		}
		return false, fmt.Errorf("mirror %s: %w", d.opts.Mirror, ErrStopped)
	}
	done := true
	for _, e := range d.sortedLocked() {
		if e.paused {
			if e.err != "" {
				return false, fmt.Errorf("mirror %s: database %s: %w: %s", d.opts.Mirror, e.name, ErrPaused, e.err)
			}
			return false, fmt.Errorf("mirror %s: database %s: %w", d.opts.Mirror, e.name, ErrPaused)
		}
		if posLess(d.coveredLocked(e), pos) {
			done = false
		}
	}
	return done, nil
}

func (d *Dejournaler) sortedLocked() []*entry {
	out := make([]*entry, 0, len(d.targets))
	for _, e := range d.targets {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *entry) int { return strings.Compare(a.name, b.name) })
	return out
}

// Status returns the data behind the Dejournaling status of the mirror and its databases.
func (d *Dejournaler) Status() Status {
	var received journal.Position
	if d.opts.Source != nil {
		received = d.opts.Source.DurableEnd()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.popMarksLocked()
	st := Status{
		Received:         received,
		LastReceivedTime: d.lastReceived,
		LastAppliedTime:  d.lastApplied,
		Stopped:          d.stopped,
		Err:              d.stopErr,
	}
	for _, e := range d.sortedLocked() {
		st.Databases = append(st.Databases, DBStatus{
			Name:            e.name,
			Applied:         e.lowest(),
			Paused:          e.paused,
			Err:             e.err,
			LastAppliedTime: e.lastApplied,
			CatchingUp:      d.readingLocked() && !e.paused && e.state == stateCatchingUp,
		})
	}
	return st
}

// popMarksLocked moves the mirror's LastAppliedTime up to the newest record every live database has got past.
func (d *Dejournaler) popMarksLocked() {
	if !d.readingLocked() {
		return
	}
	all := d.mainSafe
	for _, e := range d.targets {
		if !e.paused && e.state == stateLive {
			all = minPos(all, d.coveredLocked(e))
		}
	}
	n := 0
	for n < len(d.marks) && !posLess(all, d.marks[n].end) {
		if d.marks[n].time.After(d.lastApplied) {
			d.lastApplied = d.marks[n].time
		}
		n++
	}
	d.marks = d.marks[n:]
}

func (d *Dejournaler) pushMarkLocked(end journal.Position, t time.Time) {
	if len(d.marks) >= maxMarks {
		d.marks[len(d.marks)-1] = mark{end: end, time: t}
		return
	}
	d.marks = append(d.marks, mark{end: end, time: t})
}

// maybeKickLocked asks the advancer to record applied positions when forced (caught up) or when the interval has passed.
func (d *Dejournaler) maybeKickLocked(force bool) {
	now := d.opts.Now()
	if !force && now.Sub(d.lastKick) < advanceInterval {
		return
	}
	d.lastKick = now
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// posLess orders positions by place in the journal. Epochs are ignored: one place holds one record, so two positions of the
// same place differ in epoch only when one of them was built from a segment header rather than read from a record.
func posLess(a, b journal.Position) bool {
	if a.Segment != b.Segment {
		return a.Segment < b.Segment
	}
	return a.Offset < b.Offset
}

func minPos(a, b journal.Position) journal.Position {
	if posLess(b, a) {
		return b
	}
	return a
}

func maxPos(a, b journal.Position) journal.Position {
	if posLess(a, b) {
		return b
	}
	return a
}
