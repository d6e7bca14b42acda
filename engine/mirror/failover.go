package mirror

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// ErrNoActiveBackup refuses a planned failover when there is no Active backup to hand over to.
var ErrNoActiveBackup = errors.New("no Active backup")

// Failover hands the primary role to the Active backup: new writes wait, in-flight commits finish (and are on the backup,
// since it is Active), the backup confirms it has every record and becomes primary in the next epoch, then the waiting
// writes are refused with the new primary's address and this member continues as backup.
func (mir *Mirror) Failover(ctx context.Context) error {
	started := time.Now()
	mir.mu.Lock()
	if mir.role != RolePrimary {
		err := fmt.Errorf("member %s is not the primary of mirror %s (the primary is %s)", mir.mgr.opts.Self, mir.name, mir.st.Config.Primary)
		mir.mu.Unlock()
		return err
	}
	r := mir.backupLocked()
	if r == nil || !r.active {
		mir.mu.Unlock()
		return fmt.Errorf("mirror %s: planned failover needs an Active backup: %w", mir.name, ErrNoActiveBackup)
	}
	if mir.blocked {
		mir.mu.Unlock()
		return fmt.Errorf("mirror %s: a failover is already in progress", mir.name)
	}
	qos := mir.st.Config.QoS.Duration
	mir.blocked = true
	mir.notifyLocked()
	// In-flight commits finish (each waits for the backup's ack).
	deadline := time.Now().Add(2 * qos)
	for mir.inflight > 0 {
		if !mir.waitLocked(ctx, time.Until(deadline)) && (ctx.Err() != nil || time.Now().After(deadline)) {
			mir.unblockLocked()
			mir.mu.Unlock()
			return fmt.Errorf("mirror %s: %d commits still in flight after %s; failover abandoned", mir.name, mir.inflight, 2*qos)
		}
	}
	mir.mu.Unlock()

	end := mir.jrn.AppendedEnd()
	if err := mir.jrn.WaitDurable(ctx, end); err != nil {
		mir.abandon()
		return err
	}
	ch := make(chan wire.HandoffDone, 1)
	mir.mu.Lock()
	for r.acked.Less(end) && !r.ended() {
		if !mir.waitLocked(ctx, time.Until(deadline)) && (ctx.Err() != nil || time.Now().After(deadline)) {
			break
		}
	}
	if r.acked.Less(end) || r.ended() {
		mir.unblockLocked()
		mir.mu.Unlock()
		return fmt.Errorf("mirror %s: backup %s has %s of %s; failover abandoned", mir.name, r.name, r.acked, end)
	}
	r.handoff = ch
	epoch := mir.st.Config.Epoch
	mir.mu.Unlock()

	h := wire.Handoff{Epoch: epoch, End: toWire(end)}
	if err := r.conn.WriteFrame(wire.Frame{Kind: wire.KindHandoff, Payload: wire.EncodeHandoff(nil, &h)}); err != nil {
		mir.abandon()
		return fmt.Errorf("mirror %s: handoff to %s: %w", mir.name, r.name, err)
	}
	var done wire.HandoffDone
	select {
	case done = <-ch:
	case <-time.After(2 * qos):
		// The backup may or may not have taken over: this member must not continue as primary on its own.
		return mir.stepDown(r.name, fmt.Errorf("mirror %s: no answer from %s to the handoff within %s", mir.name, r.name, 2*qos))
	case <-ctx.Done():
		return mir.stepDown(r.name, ctx.Err())
	}
	if done.Err != "" {
		mir.abandon()
		return fmt.Errorf("mirror %s: backup %s refused the handoff: %s", mir.name, r.name, done.Err)
	}
	if err := mir.stepDown(r.name, nil); err != nil {
		return err
	}
	mir.log.Info().Str("new_primary", r.name).Uint64("epoch", done.NewEpoch).Dur("took", time.Since(started)).Msg("planned failover done; this member is now backup")
	return nil
}

func (mir *Mirror) unblockLocked() {
	mir.blocked = false
	mir.notifyLocked()
}

func (mir *Mirror) abandon() {
	mir.mu.Lock()
	mir.unblockLocked()
	mir.mu.Unlock()
}

// stepDown makes this member a backup of newPrimary and restarts it in that role. Writes that were waiting are refused with
// the new primary's address. Only the primary is recorded: the epoch and the rest of the configuration (its epoch history
// above all) come from the new primary, which owns them, as soon as this member streams from it — a configuration of a
// later epoch is always taken.
func (mir *Mirror) stepDown(newPrimary string, cause error) error {
	mir.mu.Lock()
	cancel := mir.cancel
	st := mir.st
	st.Config = st.Config.clone()
	st.Config.Primary = newPrimary
	err := mir.saveLocked(st)
	mir.role = mir.roleFromConfig()
	mir.blocked = false
	for _, r := range mir.replicas {
		r.close()
	}
	mir.notifyLocked()
	mir.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	mir.waitRole()
	mir.start()
	if cause != nil {
		return cause
	}
	return err
}

// takeOver runs on the backup when the primary asks it to become primary: it checks that it has every record up to the
// primary's end, applies them, raises the epoch durably with an epoch-start record, and answers.
func (mir *Mirror) takeOver(ctx context.Context, c *wire.Conn, h wire.Handoff) error {
	end := fromWire(h.End)
	answer := func(d wire.HandoffDone) error {
		return c.WriteFrame(wire.Frame{Kind: wire.KindHandoffDone, Payload: wire.EncodeHandoffDone(nil, &d)})
	}
	mir.mu.Lock()
	qos := mir.st.Config.QoS.Duration
	dj := mir.dj
	role := mir.role
	mir.mu.Unlock()
	if role != RoleBackup {
		return answer(wire.HandoffDone{Err: fmt.Sprintf("member %s is not the backup of mirror %s", mir.mgr.opts.Self, mir.name)})
	}
	if got := mir.jrn.AppendedEnd(); got != end {
		return answer(wire.HandoffDone{Err: fmt.Sprintf("member %s has the mirror journal up to %s, the primary up to %s", mir.mgr.opts.Self, got, end)})
	}
	wctx, cancel := context.WithTimeout(ctx, 2*qos)
	defer cancel()
	if err := mir.jrn.WaitDurable(wctx, end); err != nil {
		return answer(wire.HandoffDone{Err: err.Error()})
	}
	if dj != nil {
		if err := dj.WaitApplied(wctx, end); err != nil {
			return answer(wire.HandoffDone{Err: fmt.Sprintf("dejournaling to %s: %v", end, err)})
		}
	}
	newEpoch, restart, err := mir.becomePrimary(h.Epoch)
	if err != nil {
		return answer(wire.HandoffDone{Err: err.Error()})
	}
	mir.mu.Lock()
	mir.countFailoverLocked("planned")
	mir.mu.Unlock()
	// Answer before the receiver (this goroutine's role) is torn down, so the old primary hears it.
	err = answer(wire.HandoffDone{NewEpoch: newEpoch})
	restart()
	return err
}

// becomePrimary raises the epoch past known, writes its epoch-start record, persists the configuration with this member as
// primary and switches the role, so the databases become writable. The returned restart stops the backup role's goroutines
// (dejournaling, the receiver that may be the caller) and starts the primary's.
func (mir *Mirror) becomePrimary(known uint64) (uint64, func(), error) {
	return mir.becomePrimaryWith(known, nil)
}

// becomePrimaryWith is becomePrimary that also applies edit to the configuration in the same save.
func (mir *Mirror) becomePrimaryWith(known uint64, edit func(*Config)) (uint64, func(), error) {
	mir.mu.Lock()
	newEpoch := max(known, mir.st.Config.Epoch) + 1
	refusal := primaryRefusal(&mir.st.Config, mir.mgr.opts.Self)
	if refusal == "" && mir.st.VersionRefused != "" {
		refusal = fmt.Sprintf("member %s may not become primary of mirror %s: the primary refused it for its version (%s)", mir.mgr.opts.Self, mir.name, mir.st.VersionRefused)
	}
	mir.mu.Unlock()
	if refusal != "" {
		mir.log.Error().Msg(refusal)
		return 0, nil, errors.New(refusal)
	}
	start, err := mir.startEpoch(newEpoch)
	if err != nil {
		return 0, nil, err
	}
	mir.mu.Lock()
	st := mir.st
	st.Config = st.Config.clone()
	if edit != nil {
		edit(&st.Config)
	}
	st.Config.Epoch = newEpoch
	st.Config.Primary = mir.mgr.opts.Self
	// The former primary's hashes at add positions still being taken are not finished here: copies join unverified.
	forgot := st.Config.forgetPendingHashes()
	notePrimaryLevel(&st.Config, mir.mgr.opts.Self)
	st.Config.addEpoch(EpochStart{Epoch: newEpoch, Primary: mir.mgr.opts.Self, Start: start})
	st.Config.Version++
	st.NoFailover = false // cleared when the member becomes primary (MIRRORING.md §7)
	if err := mir.saveLocked(st); err != nil {
		mir.mu.Unlock()
		return 0, nil, err
	}
	cancel := mir.cancel
	mir.role = RolePrimary
	mir.freshEpoch = true
	// Writes wait until the primary role's start has caught the databases up with a dejournaler of its own: a commit racing
	// with dejournaling of the same key could otherwise be overwritten by an older value.
	mir.blocked = true
	mir.dj = nil
	mir.recv.connected = false
	mir.notifyLocked()
	mir.mu.Unlock()
	mir.log.Info().Uint64("epoch", newEpoch).Strs("hashes_forgotten", forgot).Msg("this member is now primary")
	// The receiver goroutine may be the caller: cancelling ends it once it returns, then the new role starts.
	restart := func() {
		if cancel != nil {
			cancel()
		}
		go func() {
			mir.waitRole()
			mir.start()
		}()
	}
	return newEpoch, restart, nil
}

// startEpoch raises the journal's epoch to epoch and writes its epoch-start record; it returns where the epoch starts.
func (mir *Mirror) startEpoch(epoch uint64) (journal.Position, error) {
	if err := mir.jrn.SetEpoch(epoch); err != nil {
		return journal.Position{}, err
	}
	start := mir.jrn.AppendedEnd()
	if _, err := mir.jrn.Commit(context.Background(), []journal.Record{{Type: journal.RecordEpochStart, TxnEnd: true, Value: []byte(mir.mgr.opts.Self), HasValue: true}}); err != nil {
		return journal.Position{}, fmt.Errorf("epoch %d start record: %w", epoch, err)
	}
	return start, nil
}

// startEpochWhenConfirmed runs when a member starts as primary in an epoch it did not just begin (a restart): once it is
// confirmed as primary it begins a new epoch, so that any record another member holds beyond this member's journal (records
// shipped before this member's crash lost them) is recognised as a divergent tail and rolled back there.
func (mir *Mirror) startEpochWhenConfirmed(ctx context.Context) error {
	mir.mu.Lock()
	for mir.fo.waiting {
		if mir.fo.deposed || mir.role != RolePrimary {
			mir.mu.Unlock()
			return errors.New("deposed while waiting to be confirmed as primary")
		}
		if !mir.waitLocked(ctx, 0) {
			mir.mu.Unlock()
			return ctx.Err()
		}
	}
	if mir.fo.deposed || mir.role != RolePrimary {
		mir.mu.Unlock()
		return errors.New("deposed while waiting to be confirmed as primary")
	}
	epoch := mir.st.Config.Epoch + 1
	mir.mu.Unlock()
	start, err := mir.startEpoch(epoch)
	if err != nil {
		return err
	}
	err = mir.update(func(st *localState) error {
		st.Config.Epoch = epoch
		st.Config.addEpoch(EpochStart{Epoch: epoch, Primary: mir.mgr.opts.Self, Start: start})
		st.Config.Version++
		return nil
	})
	if err != nil {
		return err
	}
	mir.log.Info().Uint64("epoch", epoch).Msg("restarted as primary in a new epoch")
	go mir.broadcastConfig()
	return nil
}
