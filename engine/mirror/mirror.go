package mirror

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/dejournal"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Role is what this member currently is in a mirror.
type Role int

// Roles.
const (
	RoleNone Role = iota
	RolePrimary
	RoleBackup
	RoleAsync
)

func (r Role) String() string {
	switch r {
	case RolePrimary:
		return "primary"
	case RoleBackup:
		return "backup"
	case RoleAsync:
		return "async"
	}
	return "none"
}

// Mirror is one mirror as seen from this member.
type Mirror struct {
	mgr  *Manager
	name string
	dir  string
	jrn  *journal.Journal
	log  zerolog.Logger

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever state below changes; guarded by mu
	st      localState
	role    Role
	// Primary side.
	blocked  bool // a planned failover is handing over: new writes wait
	inflight int  // writes between BeginWrite and their done
	replicas map[string]*replica
	// Backup and async side.
	recv   receiverStatus
	dj     *dejournal.Dejournaler
	cancel context.CancelFunc // stops the current role's goroutines
	wg     sync.WaitGroup
	// The receiver runs under its own context within the role's, so a takeover can stop it first.
	roleCtx    context.Context
	recvCancel context.CancelFunc
	recvWG     sync.WaitGroup
	// Automatic failover (failover members).
	fo         failoverState
	reportKick chan struct{} // wakes the arbiter reports at once (buffered 1)
	// downloads are the database copies being fetched from other members, by database; guarded by mu.
	downloads map[string]*DownloadStatus
	// freshEpoch is set when this member just started its epoch (created the mirror, or took over), so starting the
	// primary role need not raise it again.
	freshEpoch bool
}

func (mir *Mirror) roleFromConfig() Role {
	cfg := &mir.st.Config
	if slices.Contains(cfg.NotValidated, mir.mgr.opts.Self) {
		// A promotion without this member could not reach it: it must not start as primary (MIRRORING.md §7).
		if _, ok := cfg.Member(mir.mgr.opts.Self); ok {
			return RoleAsync
		}
		return RoleNone
	}
	if cfg.Primary == mir.mgr.opts.Self {
		return RolePrimary
	}
	self, ok := cfg.Member(mir.mgr.opts.Self)
	switch {
	case !ok:
		return RoleNone
	case self.Type == Failover:
		return RoleBackup
	default:
		return RoleAsync
	}
}

// Name is the mirror's name.
func (mir *Mirror) Name() string { return mir.name }

// Role is this member's current role.
func (mir *Mirror) Role() Role {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	return mir.role
}

func (mir *Mirror) state() localState {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	st := mir.st
	st.Config = st.Config.clone()
	return st
}

// Config is the mirror configuration as this member last saw it.
func (mir *Mirror) Config() Config { return mir.state().Config }

func (mir *Mirror) noFailover() bool {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	return mir.st.NoFailover
}

// notifyLocked wakes everything waiting on a change. Call with mu held.
func (mir *Mirror) notifyLocked() {
	close(mir.changed)
	mir.changed = make(chan struct{})
}

// waitLocked waits for the next change, ctx, or d (d <= 0: no limit). Called and returns with mu held; false on timeout or ctx.
func (mir *Mirror) waitLocked(ctx context.Context, d time.Duration) bool {
	ch := mir.changed
	mir.mu.Unlock()
	defer mir.mu.Lock()
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	case <-timeout:
		return false
	}
}

// saveLocked persists st as this member's state of the mirror. Call with mu held.
func (mir *Mirror) saveLocked(st localState) error {
	if err := saveState(mir.dir, st); err != nil {
		return fmt.Errorf("mirror %s: save state: %w", mir.name, err)
	}
	mir.st = st
	mir.applyRecordFormatLocked()
	mir.notifyLocked()
	return nil
}

// update applies f to a copy of the state and persists it.
func (mir *Mirror) update(f func(st *localState) error) error {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	st := mir.st
	st.Config = st.Config.clone()
	if err := f(&st); err != nil {
		return err
	}
	return mir.saveLocked(st)
}

// attachment is the journal and write gate the store uses for this mirror's databases. On a read-write reporting async,
// local writes go to the member's local journal instead (its copies are never failover copies).
func (mir *Mirror) attachment() store.Attachment {
	a := store.Attachment{Journal: mirrorJournal{mir}, Gate: mir}
	if self, ok := mir.st.Config.Member(mir.mgr.opts.Self); ok && self.Type == ReportingRW && mir.mgr.opts.LocalJournal != nil {
		a.Local = mir.mgr.opts.LocalJournal
	}
	return a
}

// BeginWrite lets a write to a mirrored database proceed only on the primary; during a planned failover it waits until the
// handover is decided, then proceeds or is refused with the new primary's address.
func (mir *Mirror) BeginWrite(ctx context.Context, db string) (func(), error) {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	for {
		if mir.role != RolePrimary {
			return nil, mir.notPrimaryLocked(db)
		}
		if err := mir.servingErrLocked(db); err != nil {
			return nil, err
		}
		if !mir.blocked {
			mir.inflight++
			return func() {
				mir.mu.Lock()
				mir.inflight--
				mir.notifyLocked()
				mir.mu.Unlock()
			}, nil
		}
		if !mir.waitLocked(ctx, 0) {
			return nil, fmt.Errorf("database %s: waiting for a planned failover of mirror %s: %w", db, mir.name, ctx.Err())
		}
	}
}

// BeginRead lets a read of a mirrored database proceed on the primary (waiting while it hands over, so no read can miss a
// write the new primary has acknowledged) and on asyncs; a backup refuses with the primary's address, so a mirror-aware
// client always reads what the primary has.
func (mir *Mirror) BeginRead(ctx context.Context, db string) error {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	for {
		switch {
		case mir.role == RoleBackup:
			return mir.notPrimaryLocked(db)
		case mir.role != RolePrimary:
			return nil
		}
		if err := mir.servingErrLocked(db); err != nil {
			return err
		}
		if !mir.blocked {
			return nil
		}
		if !mir.waitLocked(ctx, 0) {
			return fmt.Errorf("database %s: waiting for a planned failover of mirror %s: %w", db, mir.name, ctx.Err())
		}
	}
}

func (mir *Mirror) notPrimaryLocked(db string) error {
	cfg := &mir.st.Config
	primary, ok := cfg.Member(cfg.Primary)
	redirect := ""
	if ok && primary.Name != mir.mgr.opts.Self && (mir.role != RoleBackup || mir.recv.connected) {
		// A backup that has lost its primary does not send clients to it: it may be down, hung or deposed.
		redirect = primary.Addr
	}
	return &wire.Error{Code: wire.CodeNotPrimary, Redirect: redirect,
		Message: fmt.Sprintf("database %s of mirror %s is read-only on member %s (%s); the primary is %s (%s)", db, mir.name, mir.mgr.opts.Self, mir.role, cfg.Primary, redirect)}
}

// mirrorJournal is the store's view of the mirror journal: on the primary, a commit is durable only once the active backup
// has acknowledged it too.
type mirrorJournal struct{ mir *Mirror }

func (j mirrorJournal) Append(recs []journal.Record) (journal.Position, error) {
	return j.mir.jrn.Append(recs)
}

func (j mirrorJournal) WaitDurable(ctx context.Context, pos journal.Position) error {
	if err := j.mir.jrn.WaitDurable(ctx, pos); err != nil {
		return err
	}
	return j.mir.waitBackup(ctx, pos)
}

// WaitReadable makes a read wait until what it may have seen is as safe as an acknowledged commit: durable here and, on the
// primary, acknowledged by an Active backup. A read on a primary that is deposed meanwhile is refused like any request to
// a member that is not the primary, and the client retries at the new one.
func (j mirrorJournal) WaitReadable(ctx context.Context, pos journal.Position) error {
	if err := j.mir.jrn.WaitDurable(ctx, pos); err != nil {
		return err
	}
	if j.mir.Role() != RolePrimary {
		return nil
	}
	err := j.mir.waitBackup(ctx, pos)
	var we *wire.Error
	if errors.As(err, &we) && we.Code == wire.CodeOutcomeUnknown {
		j.mir.mu.Lock()
		defer j.mir.mu.Unlock()
		e := j.mir.notPrimaryLocked("")
		e.(*wire.Error).Message = fmt.Sprintf("member %s stopped being the primary of mirror %s while a read waited for the backup; the primary is %s",
			j.mir.mgr.opts.Self, j.mir.name, j.mir.st.Config.Primary)
		return e
	}
	return err
}

func (j mirrorJournal) Sync() error                   { return j.mir.jrn.Sync() }
func (j mirrorJournal) AppendedEnd() journal.Position { return j.mir.jrn.AppendedEnd() }
func (j mirrorJournal) DurableEnd() journal.Position  { return j.mir.jrn.DurableEnd() }

// start launches the goroutines of the current role.
func (mir *Mirror) start() {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	mir.startLocked()
}

func (mir *Mirror) startLocked() {
	ctx, cancel := context.WithCancel(mir.mgr.ctx)
	mir.cancel = cancel
	mir.roleCtx = ctx
	fresh := mir.freshEpoch
	mir.freshEpoch = false
	// A backup counts the primary as heard at the start of its role: it has QoS to reach it before it considers it lost.
	mir.fo = failoverState{kick: make(chan struct{}, 1), failovers: mir.fo.failovers, troubles: mir.fo.troubles, primaryHeard: mir.mgr.opts.Now()}
	if mir.reportKick == nil {
		mir.reportKick = make(chan struct{}, 1)
	}
	self, _ := mir.st.Config.Member(mir.mgr.opts.Self)
	switch mir.role {
	case RolePrimary:
		mir.updateOwnDNLocked()
		// A primary that restarts waits until it knows its backup did not become primary meanwhile (automatically, or by an
		// operator's force).
		_, hasBackup := mir.st.Config.backup()
		mir.fo.waiting = !fresh && hasBackup
		if mir.fo.waiting {
			mir.fo.waitWhy = "looking for the backup and the arbiter"
		}
		// Databases must have applied the whole journal (after a crash, or after serving as backup) before they are written.
		mir.blocked = true
		mir.wg.Add(1)
		go func() {
			defer mir.wg.Done()
			err := mir.catchUpAsPrimary(ctx)
			if err == nil && !fresh {
				err = mir.startEpochWhenConfirmed(ctx)
			}
			mir.mu.Lock()
			defer mir.mu.Unlock()
			if err != nil {
				if ctx.Err() == nil {
					mir.log.Error().Err(err).Msg("catching up the mirrored databases before serving as primary failed")
				}
				return
			}
			mir.blocked = false
			mir.notifyLocked()
		}()
	case RoleBackup, RoleAsync:
		if mir.st.RollbackTo != nil {
			// Cut the divergent tail first, with nothing reading the journal; the rest of the role starts after it.
			mir.wg.Add(1)
			go func() {
				defer mir.wg.Done()
				if err := mir.rollBack(ctx); err != nil {
					if ctx.Err() == nil {
						mir.log.Error().Err(err).Msg("rolling back the divergent journal tail failed; this member must be rebuilt from a backup")
					}
					return
				}
				mir.mu.Lock()
				defer mir.mu.Unlock()
				if ctx.Err() == nil {
					mir.startReplicaLocked(ctx)
				}
			}()
			break
		}
		mir.startReplicaLocked(ctx)
	}
	if mir.role != RolePrimary {
		mir.resumeDownloadsLocked()
	}
	if self.Type == Failover && mir.role != RoleNone {
		role := mir.role
		mir.wg.Add(1)
		go func() {
			defer mir.wg.Done()
			mir.runFailover(ctx, role)
		}()
	}
}

// startReplicaLocked starts dejournaling and the receiver of a backup or async.
func (mir *Mirror) startReplicaLocked(ctx context.Context) {
	mir.startDejournalLocked(ctx)
	if !mir.st.MirroringStopped {
		mir.startReceiverLocked(ctx)
	}
}

// startReceiverLocked starts the receiver under its own context, a child of ctx.
func (mir *Mirror) startReceiverLocked(ctx context.Context) {
	rctx, cancel := context.WithCancel(ctx)
	mir.recvCancel = cancel
	mir.fo.primaryHeard = mir.mgr.opts.Now()
	mir.recvWG.Add(1)
	go func() {
		defer mir.recvWG.Done()
		mir.runReceiver(rctx)
	}()
}

// updateOwnDNLocked records a changed certificate of the primary in the configuration, which then reaches every member.
func (mir *Mirror) updateOwnDNLocked() {
	dn := mir.mgr.opts.SelfDN
	if dn == "" {
		return
	}
	st := mir.st
	st.Config = st.Config.clone()
	for i := range st.Config.Members {
		if st.Config.Members[i].Name == mir.mgr.opts.Self && st.Config.Members[i].DN != dn {
			st.Config.Members[i].DN = dn
			st.Config.Version++
			if err := mir.saveLocked(st); err != nil {
				mir.log.Error().Err(err).Msg("recording this member's new certificate")
			}
			return
		}
	}
}

// stop ends the current role's goroutines and waits for them.
func (mir *Mirror) stop() {
	mir.mu.Lock()
	cancel := mir.cancel
	for _, r := range mir.replicas {
		r.close()
	}
	mir.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	mir.waitRole()
}

// waitRole waits for the current role's goroutines, the receiver included.
func (mir *Mirror) waitRole() {
	mir.wg.Wait()
	mir.recvWG.Wait()
}

// startDejournalLocked runs a dejournaler over the mirror journal for this member's copies of the mirrored databases.
func (mir *Mirror) startDejournalLocked(ctx context.Context) {
	self, _ := mir.st.Config.Member(mir.mgr.opts.Self)
	dj := dejournal.New(dejournal.Options{Mirror: mir.name, Source: mir.jrn, Workers: dejournal.Partitions,
		PauseMirrorOnError: self.Type.IsReporting(), Logger: mir.log.With().Str("component", "dejournal").Logger(), Now: mir.mgr.opts.Now})
	for _, info := range mir.mgr.mirroredDatabases(mir.name) {
		if d, err := mir.mgr.store.Database(info.Name); err == nil {
			dj.AddTarget(d)
		}
	}
	if mir.st.DejournalPaused {
		dj.PauseAll()
	}
	for _, db := range mir.st.PausedDatabases {
		dj.Pause(db)
	}
	mir.dj = dj
	mir.wg.Add(1)
	go func() {
		defer mir.wg.Done()
		if err := dj.Run(ctx); err != nil {
			mir.log.Error().Err(err).Msg("dejournaling stopped")
		}
	}()
}

// catchUpAsPrimary applies whatever the mirrored databases have not applied of the journal, then stops dejournaling.
func (mir *Mirror) catchUpAsPrimary(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mir.mu.Lock()
	mir.startDejournalLocked(ctx)
	dj := mir.dj
	mir.mu.Unlock()
	err := dj.WaitApplied(ctx, mir.jrn.DurableEnd())
	cancel()
	mir.mu.Lock()
	mir.dj = nil
	mir.mu.Unlock()
	return err
}
