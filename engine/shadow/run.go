package shadow

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Shadow is one shadow destination on this member.
type Shadow struct {
	mgr *Manager
	log zerolog.Logger
	cfg Config // guarded by mgr.mu

	// run is the running processing loop; guarded by mgr.mu.
	run *runner

	mu  sync.Mutex // guards st
	st  liveStatus
	now func() time.Time
}

type liveStatus struct {
	connected     bool
	sourceMember  string
	sourceEnd     journal.Position
	err           string
	failed        bool // Error state: the loop gave up until the operator acts
	lastApplied   time.Time
	receivedBytes uint64
	wireBytes     uint64
	reconnects    int
}

type runner struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (sh *Shadow) config() Config { return sh.cfg }

// running reports whether the processing loop runs (mgr.mu held); a loop that gave up on an error does not.
func (sh *Shadow) running() bool {
	if sh.run == nil {
		return false
	}
	select {
	case <-sh.run.done:
		return false
	default:
		return true
	}
}

// attachment is how the shadowed copies are written: by the shadow (through ApplyShadow), and by this member's own
// clients through the local journal, which marks them modified.
func (sh *Shadow) attachment() store.Attachment {
	return store.Attachment{Journal: sourceJournal{sh}, Local: sh.mgr.opts.Local}
}

// startLocked starts the processing loop (mgr.mu held), again if it gave up on an error.
func (sh *Shadow) startLocked() {
	if sh.running() || sh.mgr.ctx == nil {
		return
	}
	ctx, cancel := context.WithCancel(sh.mgr.ctx)
	r := &runner{cancel: cancel, done: make(chan struct{})}
	sh.run = r
	sh.mu.Lock()
	sh.st.failed, sh.st.err = false, ""
	sh.mu.Unlock()
	sh.mgr.wg.Add(1)
	go func() {
		defer sh.mgr.wg.Done()
		defer close(r.done)
		sh.loop(ctx)
	}()
}

// stopLocked stops the processing loop and waits for it (mgr.mu held; the loop never takes it).
func (sh *Shadow) stopLocked() {
	if sh.run == nil {
		return
	}
	sh.run.cancel()
	<-sh.run.done
	sh.run = nil
	sh.mu.Lock()
	sh.st.connected = false
	sh.mu.Unlock()
}

func (sh *Shadow) loop(ctx context.Context) {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		progressed, err := sh.session(ctx)
		if ctx.Err() != nil {
			return
		}
		sh.mu.Lock()
		sh.st.connected = false
		if err != nil {
			sh.st.err = err.Error()
		}
		if errors.Is(err, errPermanent) {
			sh.st.failed = true
			sh.mu.Unlock()
			sh.log.Error().Err(err).Msg("shadow stopped by an error; fix it and restart the shadow")
			return
		}
		sh.st.reconnects++
		sh.mu.Unlock()
		sh.log.Warn().Err(err).Msg("shadow lost its source; reconnecting")
		if progressed {
			wait = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, sh.mgr.opts.Retry)
	}
}

// checkpoint is where processing resumes: the lowest applied position of the copies still shadowed (the start position when
// there is none left), and those copies.
func (sh *Shadow) checkpoint() (journal.Position, map[string]*store.Database) {
	var low journal.Position
	dbs := map[string]*store.Database{}
	for i, d := range sh.mgr.opts.Store.ShadowedDatabases(sh.cfg.Name) {
		dbs[d.Name()] = d
		if a := d.ShadowInfo().Applied; i == 0 || a.Less(low) {
			low = a
		}
	}
	if low.IsZero() {
		return sh.cfg.Start, dbs
	}
	return low, dbs
}

// session streams from the source until the connection breaks or ctx ends.
func (sh *Shadow) session(ctx context.Context) (progressed bool, err error) {
	from, dbs := sh.checkpoint()
	c, accept, err := dialSource(ctx, sh.cfg.Source, sh.mgr.opts.TLS, sh.mgr.opts.Self, sh.cfg.Name, from)
	if err != nil {
		return false, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	sh.mu.Lock()
	sh.st.connected, sh.st.sourceMember, sh.st.err = true, accept.Primary, ""
	sh.mu.Unlock()
	sh.log.Info().Str("source", accept.Primary).Str("from", from.String()).Msg("shadow connected to its source")

	dests := map[string]string{}
	for _, mp := range sh.cfg.Map {
		dests[mp.Source] = mp.Dest
	}
	a := &applier{sh: sh, dests: dests, dbs: dbs}
	acks := make(chan journal.Position, 1)
	ackDone := make(chan struct{})
	go func() {
		defer close(ackDone)
		sh.ackLoop(c, acks)
	}()
	defer func() {
		close(acks)
		<-ackDone
	}()
	var raw []byte
	lastFlush := time.Now()
	for {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		f, err := c.ReadFrame()
		if err != nil {
			return progressed, fmt.Errorf("shadow %s: stream from %s: %w", sh.cfg.Name, sh.cfg.Source, err)
		}
		switch f.Kind {
		case wire.KindJournalBatch:
			b, err := wire.DecodeJournalBatch(f.Payload)
			if err != nil {
				return progressed, err
			}
			if raw, err = wire.Decompress(b.Codec, raw[:0], b.Payload, int(b.RawLen)); err != nil {
				return progressed, fmt.Errorf("shadow %s: journal batch at %s: %w", sh.cfg.Name, fromWire(b.First), err)
			}
			if err := a.apply(raw, fromWire(b.Next)); err != nil {
				return progressed, err
			}
			progressed = true
			sh.mu.Lock()
			sh.st.receivedBytes += uint64(len(raw))
			sh.st.wireBytes += uint64(len(b.Payload))
			if end := fromWire(b.PrimaryDurable); sh.st.sourceEnd.Less(end) {
				sh.st.sourceEnd = end
			}
			sh.mu.Unlock()
		case wire.KindHeartbeat:
			hb, err := wire.DecodeHeartbeat(f.Payload)
			if err != nil {
				return progressed, err
			}
			sh.mu.Lock()
			if end := fromWire(hb.End); sh.st.sourceEnd.Less(end) {
				sh.st.sourceEnd = end
			}
			sh.mu.Unlock()
			if !a.open {
				// Nothing is half-applied: copies without traffic move to where the source's durable journal ends.
				if err := a.advance(fromWire(hb.End)); err != nil {
					return progressed, err
				}
			}
		case wire.KindError:
			we, derr := wire.DecodeError(f.Payload)
			if derr != nil {
				return progressed, derr
			}
			return progressed, fmt.Errorf("shadow %s: the source %s stopped the stream: %s: %w", sh.cfg.Name, sh.cfg.Source, we.Message, errPermanent)
		default:
			return progressed, fmt.Errorf("shadow %s: unexpected frame %s from the source", sh.cfg.Name, f.Kind)
		}
		select {
		case acks <- a.done:
		default:
		}
		if time.Since(lastFlush) > 5*time.Second {
			// Persist the copies (and with them their checkpoints) from time to time, so that a crash refetches little.
			if _, err := sh.mgr.opts.Store.PurgeFloor(store.ShadowJournal(sh.cfg.Name), a.done); err != nil {
				return progressed, err
			}
			lastFlush = time.Now()
		}
	}
}

// ackLoop tells the source the checkpoint, for its status.
func (sh *Shadow) ackLoop(c *wire.Conn, acks <-chan journal.Position) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last, sent journal.Position
	for {
		select {
		case p, ok := <-acks:
			if !ok {
				return
			}
			last = p
			continue
		case <-t.C:
		}
		if last == sent {
			continue
		}
		ack := wire.Ack{Durable: toWire(last), Applied: toWire(last), UnixNano: time.Now().UnixNano()}
		if err := c.WriteFrame(wire.Frame{Kind: wire.KindAck, Payload: wire.EncodeAck(nil, &ack)}); err != nil {
			return
		}
		sent = last
	}
}

// applier groups the source's records into transactions and applies each one's share to the mapped copies.
type applier struct {
	sh      *Shadow
	dests   map[string]string // source database → destination database
	dbs     map[string]*store.Database
	pending []journal.Record // mapped records of the transaction being read (copies: raw buffers are reused)
	open    bool             // a transaction has begun and not ended
	done    journal.Position // the end of the last complete transaction
}

func (a *applier) apply(frames []byte, next journal.Position) error {
	for len(frames) > 0 {
		rec, n, err := journal.DecodeRecord(frames)
		if err != nil {
			return fmt.Errorf("shadow %s: record from the source: %w: %w", a.sh.cfg.Name, err, errPermanent)
		}
		frames = frames[n:]
		end := rec.Pos
		end.Offset += uint64(n)
		if _, mapped := a.dests[rec.DB]; mapped && rec.DB != "" {
			rec.Key, rec.Value, rec.Before = slices.Clone(rec.Key), slices.Clone(rec.Value), nil
			a.pending = append(a.pending, rec)
		}
		if a.open = !rec.TxnEnd; a.open {
			continue
		}
		if err := a.commit(end, time.Unix(0, rec.Time)); err != nil {
			return err
		}
	}
	if !a.open && a.done.Less(next) {
		a.done = next
	}
	return nil
}

// commit applies the complete transaction ending at end.
func (a *applier) commit(end journal.Position, at time.Time) error {
	txn := a.pending
	a.pending = nil
	a.done = end
	for len(txn) > 0 {
		db := txn[0].DB
		share := slices.DeleteFunc(slices.Clone(txn), func(r journal.Record) bool { return r.DB != db })
		txn = slices.DeleteFunc(txn, func(r journal.Record) bool { return r.DB == db })
		d, err := a.database(a.dests[db])
		if errors.Is(err, errRemounted) {
			return err
		}
		if err != nil {
			continue // not mounted here, or no longer shadowed: the status shows it
		}
		if err := d.ApplyShadow(a.sh.cfg.Name, share, end); err != nil {
			if errors.Is(err, store.ErrNotShadowed) || errors.Is(err, wire.ErrDatabaseDismounted) {
				// Joined a mirror, dismounted or deleted meanwhile: the status shows it; the other copies go on.
				delete(a.dbs, a.dests[db])
				continue
			}
			return fmt.Errorf("shadow %s: apply the source's transaction ending at %s to %s: %w: %w", a.sh.cfg.Name, end, d.Name(), err, errPermanent)
		}
	}
	a.sh.mu.Lock()
	a.sh.st.lastApplied = at
	a.sh.mu.Unlock()
	return nil
}

func (a *applier) database(name string) (*store.Database, error) {
	if d, ok := a.dbs[name]; ok {
		return d, nil
	}
	d, err := a.sh.mgr.opts.Store.Database(name)
	if err != nil {
		return nil, err
	}
	if d.Mirror() != store.ShadowJournal(a.sh.cfg.Name) {
		return nil, store.ErrNotShadowed
	}
	// A copy mounted since this session began (remounted after a dismount) was not part of its checkpoint: it may need
	// records from before where the session started, so the session starts over from the new checkpoint.
	return nil, fmt.Errorf("shadow %s: copy %s: %w", a.sh.cfg.Name, name, errRemounted)
}

// errRemounted ends a session that met a copy mounted since it began.
var errRemounted = errors.New("mounted while the shadow ran: starting again from its checkpoint")

// advance moves every copy to pos (no transaction is half-read).
func (a *applier) advance(pos journal.Position) error {
	if a.done.Less(pos) {
		a.done = pos
	}
	for _, d := range a.sh.mgr.opts.Store.ShadowedDatabases(a.sh.cfg.Name) {
		if a.dbs[d.Name()] != d {
			// Mounted since the session began: it may have missed records, which only a new session from its checkpoint
			// brings; moving it here would skip them.
			return fmt.Errorf("shadow %s: copy %s: %w", a.sh.cfg.Name, d.Name(), errRemounted)
		}
		if err := d.AdvanceShadow(a.sh.cfg.Name, a.done); err != nil {
			return err
		}
	}
	return nil
}

// status assembles the shadow's state (mgr.mu held: the configuration and the loop change under it).
func (sh *Shadow) status() Status {
	cfg := sh.cfg
	running := sh.running()
	sh.mu.Lock()
	st := sh.st
	sh.mu.Unlock()
	out := Status{Name: cfg.Name, Source: cfg.Source, SourceMember: st.sourceMember, Connected: st.connected && running, Start: cfg.Start,
		SourceEnd: st.sourceEnd, LastApplied: st.lastApplied, ReceivedBytes: st.receivedBytes, WireBytes: st.wireBytes,
		Reconnects: st.reconnects, Created: cfg.Created, Error: st.err}
	switch {
	case st.failed:
		out.State = Error
	case cfg.Want == wantRun:
		out.State = Processing
	case cfg.Want == wantSuspend:
		out.State = Suspended
	default:
		out.State = Stopped
	}
	first := true
	for _, mp := range cfg.Map {
		ds := DBStatus{Source: mp.Source, Dest: mp.Dest}
		info, err := sh.mgr.opts.Store.Get(mp.Dest)
		d, derr := sh.mgr.opts.Store.Database(mp.Dest)
		switch {
		case err != nil || derr != nil:
			ds.Missing = true
		case info.Mirror != store.ShadowJournal(cfg.Name):
			ds.Joined = info.Mirror
		default:
			si := d.ShadowInfo()
			ds.Applied, ds.Modified, ds.ToMirror = si.Applied, si.Modified, si.ToMirror
			if first || si.Applied.Less(out.Checkpoint) {
				out.Checkpoint = si.Applied
			}
			first = false
		}
		out.Databases = append(out.Databases, ds)
	}
	if first {
		out.Checkpoint = cfg.Start
	}
	if out.State == Processing && !st.sourceEnd.IsZero() && out.Checkpoint.Less(st.sourceEnd) {
		out.BytesBehind = bytesBetween(out.Checkpoint, st.sourceEnd)
		if !st.lastApplied.IsZero() {
			out.LatencySeconds = max(0, sh.mgr.opts.Now().Sub(st.lastApplied).Seconds())
		}
	}
	return out
}

// bytesBetween is the journal bytes from a to b, counting whole segments of the default size when they differ (the source's
// segment size is not known here; the figure is for monitoring).
func bytesBetween(a, b journal.Position) uint64 {
	if a.Segment == b.Segment {
		return b.Offset - a.Offset
	}
	return (b.Segment-a.Segment-1)*uint64(journal.DefaultSegmentSize) + b.Offset + uint64(journal.DefaultSegmentSize) - min(a.Offset, uint64(journal.DefaultSegmentSize))
}

// sourceJournal stands for the source's journal where the store expects the journal a shadowed copy is written through:
// the copy's changes are durable on the source, so there is nothing to wait for or sync here.
type sourceJournal struct{ sh *Shadow }

func (j sourceJournal) Append([]journal.Record) (journal.Position, error) {
	return journal.Position{}, fmt.Errorf("shadow %s: the shadow's journal is the source's; this member writes shadowed copies through its local journal", j.sh.cfg.Name)
}
func (sourceJournal) WaitDurable(context.Context, journal.Position) error { return nil }
func (sourceJournal) Sync() error                                         { return nil }
func (j sourceJournal) AppendedEnd() journal.Position                     { return j.DurableEnd() }
func (j sourceJournal) DurableEnd() journal.Position {
	j.sh.mu.Lock()
	defer j.sh.mu.Unlock()
	return j.sh.st.sourceEnd
}

func fromWire(p wire.Position) journal.Position {
	return journal.Position{Epoch: p.Epoch, Segment: p.Segment, Offset: p.Offset}
}

func toWire(p journal.Position) wire.Position {
	return wire.Position{Epoch: p.Epoch, Segment: p.Segment, Offset: p.Offset}
}
