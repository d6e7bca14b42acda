package mirror

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/agent"
	"github.com/mirrorkit/mirrorkit/engine/arbiter"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Mode is the failover mode of MIRRORING.md §6.
type Mode uint8

// Failover modes.
const (
	ModeAgent   Mode = iota // Agent Controlled: a takeover needs the primary's agent to confirm it down (or force it down)
	ModeArbiter             // Arbiter Controlled: an Active backup takes over when the arbiter grants it
)

func (m Mode) String() string {
	if m == ModeArbiter {
		return "Arbiter Controlled"
	}
	return "Agent Controlled"
}

// failoverState is a failover member's automatic failover state. Guarded by the mirror's mu.
type failoverState struct {
	kick chan struct{} // wakes the failover loop at once (buffered 1)

	// Arbiter contact (both failover members).
	arbHeard time.Time    // when the last report the arbiter answered was sent
	arbView  arbiter.View // its answer
	arbErr   string       // why the last report failed ("" when it did not)

	// Primary.
	mode          Mode      // the mode this primary runs in
	trouble       bool      // In Trouble: no commits are acknowledged and no reads served
	troubleSince  time.Time // when the Active backup was lost
	troubleMode   Mode      // the mode the lost backup last acknowledged: decides how the trouble ends
	troubleWhy    string
	continued     uint64 // epoch in which the arbiter let this primary continue without its backup
	rejoinPending bool   // the backup is Active again: the arbiter must be told (Rejoined)
	waiting       bool   // restarted as primary, not yet confirmed that no other member took over
	waitWhy       string
	deposed       bool // another member is primary in a later epoch: this one never acknowledges again

	// Backup.
	flags         uint8     // wire.State* flags as last told by the primary
	primaryHeard  time.Time // last frame from the primary (or when the receiver started)
	takingOver    bool
	blockedWhy    string    // why this backup does not take over although it lost the primary
	blockedLogged time.Time // when a reason was last logged

	// Counters for status and metrics.
	failovers map[string]uint64 // by how this member became primary: planned, arbiter, agent, forced, promoted
	troubles  uint64            // trouble episodes
}

func (fo *failoverState) kickNow() {
	select {
	case fo.kick <- struct{}{}:
	default:
	}
}

// automaticLocked reports whether a backup of this mirror can take over without an operator: the mirror has an arbiter,
// or the primary an agent the backup can ask. Without either, losing the backup never puts the primary In Trouble.
func (mir *Mirror) automaticLocked() bool {
	cfg := &mir.st.Config
	if _, ok := cfg.backup(); !ok {
		return false
	}
	if cfg.Arbiter != "" {
		return true
	}
	p, _ := cfg.Member(cfg.Primary)
	return p.AgentAddr != ""
}

// arbiterAddrLocked is how this member reaches the mirror's arbiter ("" when none).
func (mir *Mirror) arbiterAddrLocked() string {
	if mir.st.Config.Arbiter == "" {
		return ""
	}
	if a := mir.mgr.opts.ArbiterAddr; a != "" {
		return a
	}
	return mir.st.Config.Arbiter
}

// agentOf is a client of the agent of member mc, nil when it has none.
func (m *Manager) agentOf(mc MemberConfig) *agent.Client {
	addr := mc.AgentAddr
	if a, ok := m.opts.Agents[mc.Name]; ok {
		addr = a
	}
	if addr == "" {
		return nil
	}
	return agent.NewClient(addr, m.opts.TLS, m.opts.AgentToken)
}

// arbiterClient returns the shared connection to the arbiter at addr, dialling it when there is none.
func (m *Manager) arbiterClient(ctx context.Context, addr string) (*arbiter.Client, error) {
	m.mu.Lock()
	c := m.arbiters[addr]
	m.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := arbiter.Dial(ctx, addr, m.opts.TLS, m.opts.ArbiterToken)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.arbiters[addr]; old != nil {
		c.Close()
		return old, nil
	}
	m.arbiters[addr] = c
	return c, nil
}

// servingErrLocked refuses a read or write on the primary while it cannot serve: waiting to confirm its role after a
// restart, In Trouble, or outside its lease. The request was not executed, so a client may send it elsewhere.
func (mir *Mirror) servingErrLocked(db string) error {
	fo := &mir.fo
	var why string
	switch {
	case fo.deposed:
		return mir.notPrimaryLocked(db)
	case fo.waiting:
		why = "is Waiting to confirm it is still primary: " + fo.waitWhy
	case fo.trouble:
		why = "is In Trouble: " + fo.troubleWhy
	case !mir.leaseLocked():
		why = "has not heard from its backup or the arbiter within half the QoS timeout (lease expired)"
	default:
		return nil
	}
	return &wire.Error{Code: wire.CodeInTrouble, Message: fmt.Sprintf("database %s: the primary %s of mirror %s %s", db, mir.mgr.opts.Self, mir.name, why)}
}

// leaseLocked reports whether the primary holds its lease (MIRRORING.md §6): needed only while its backup acts in Arbiter
// Controlled mode and the arbiter has not let it continue without the backup, since only then can the backup take over
// without forcing this member down first.
func (mir *Mirror) leaseLocked() bool {
	fo := &mir.fo
	cfg := &mir.st.Config
	if cfg.Arbiter == "" || fo.continued == cfg.Epoch {
		return true
	}
	b, ok := cfg.backup()
	if !ok {
		return true
	}
	r := mir.replicas[b.Name]
	if r == nil || !r.mayActInArbiterMode() {
		return true
	}
	heard := fo.arbHeard
	if !r.ended() && r.followedAt.After(heard) {
		heard = r.followedAt
	}
	// Measured on the monotonic clock: both times were taken here with time.Now.
	return time.Since(heard) < cfg.QoS.Duration/2
}

// mayActInArbiterMode reports whether the backup may act in Arbiter Controlled mode should it lose this primary: it said
// so, or was told so and its echo may not have arrived yet.
func (r *replica) mayActInArbiterMode() bool {
	return (r.echo|r.told)&wire.StateArbiterMode != 0
}

// heldByNoFailover reports whether the backup has confirmed the no-failover flag this primary still tells it: it will not
// take over on its own, so losing it is no reason to stop committing. A flag told but not yet echoed, or one cleared
// since, does not count: the backup may not know it, or may already have seen it cleared.
func (r *replica) heldByNoFailover() bool {
	return r.echo&r.told&wire.StateNoFailover != 0
}

// Serving reports whether this member is the primary and serves reads and writes now.
func (mir *Mirror) Serving() bool {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	return mir.role == RolePrimary && !mir.blocked && mir.servingErrLocked("") == nil
}

// backupLostLocked is called when the Active backup's stream ends or it fails to acknowledge within the QoS timeout.
// When the backup may take over on its own, the primary is In Trouble until it knows the backup did not.
func (mir *Mirror) backupLostLocked(r *replica, why string) {
	if r.typ != Failover || !r.active || mir.role != RolePrimary || mir.fo.trouble || !mir.automaticLocked() {
		return
	}
	if r.heldByNoFailover() {
		mir.log.Info().Str("backup", r.name).Str("reason", why).Msg("lost the Active backup under no-failover: it does not take over, so the primary goes on without it")
		return
	}
	fo := &mir.fo
	fo.trouble, fo.troubleSince = true, mir.mgr.opts.Now()
	fo.troubleMode = ModeAgent
	if r.mayActInArbiterMode() {
		fo.troubleMode = ModeArbiter
	}
	fo.troubleWhy = fmt.Sprintf("lost the Active backup %s (%s) in %s mode", r.name, why, fo.troubleMode)
	fo.troubles++
	mir.log.Warn().Str("backup", r.name).Str("reason", why).Str("mode", fo.troubleMode.String()).Msg("primary is In Trouble")
	mir.notifyLocked()
	fo.kickNow()
}

func (mir *Mirror) endTroubleLocked(how string) {
	fo := &mir.fo
	if !fo.trouble {
		return
	}
	fo.trouble, fo.troubleWhy = false, ""
	mir.log.Info().Str("how", how).Dur("after", mir.mgr.opts.Now().Sub(fo.troubleSince)).Msg("primary is no longer In Trouble")
	mir.notifyLocked()
}

// runFailover is a failover member's automatic failover loop: it reports to the arbiter, decides the mode, resolves
// trouble and waiting on the primary, and takes over on the backup.
func (mir *Mirror) runFailover(ctx context.Context, role Role) {
	go mir.runArbiterReports(ctx)
	for ctx.Err() == nil {
		mir.mu.Lock()
		qos := mir.st.Config.QoS.Duration
		kick := mir.fo.kick
		mir.mu.Unlock()
		var stop bool
		if role == RolePrimary {
			stop = mir.primaryTick(ctx)
		} else {
			stop = mir.backupTick(ctx)
		}
		if stop {
			return
		}
		// A backup that has lost its primary asks often: the arbiter grants the takeover the moment the primary has been
		// silent for the QoS timeout, and every tick of delay is unavailability.
		interval := max(qos/10, 20*time.Millisecond)
		mir.mu.Lock()
		if role == RoleBackup && mir.fo.blockedWhy != "" {
			interval = min(interval, 25*time.Millisecond)
		}
		mir.mu.Unlock()
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
		case <-kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// runArbiterReports reports this member's view to the arbiter every QoS/4 and at once when kicked.
func (mir *Mirror) runArbiterReports(ctx context.Context) {
	for ctx.Err() == nil {
		mir.mu.Lock()
		addr := mir.arbiterAddrLocked()
		qos := mir.st.Config.QoS.Duration
		rep := arbiter.Report{Mirror: mir.name, Member: mir.mgr.opts.Self, Epoch: mir.st.Config.Epoch, QoS: qos}
		switch mir.role {
		case RolePrimary:
			rep.Primary = !mir.fo.deposed
			if r := mir.backupLocked(); r != nil {
				rep.SeesPeer = true
			}
		case RoleBackup:
			rep.ActiveBackup = mir.fo.flags&wire.StateActive != 0
			rep.SeesPeer = mir.recv.connected
		}
		mir.mu.Unlock()
		if addr != "" {
			sent := time.Now()
			rctx, cancel := context.WithTimeout(ctx, max(qos/4, 50*time.Millisecond))
			c, err := mir.mgr.arbiterClient(rctx, addr)
			var v arbiter.View
			if err == nil {
				v, err = c.Report(rctx, rep)
			}
			cancel()
			mir.mu.Lock()
			if err != nil {
				if mir.fo.arbErr == "" && ctx.Err() == nil {
					mir.log.Warn().Err(err).Str("arbiter", addr).Msg("lost contact with the arbiter")
				}
				mir.fo.arbErr = err.Error()
			} else {
				if mir.fo.arbErr != "" {
					mir.log.Info().Str("arbiter", addr).Msg("arbiter contact restored")
				}
				mir.fo.arbErr = ""
				later := v.Epoch > rep.Epoch && v.Primary != "" && v.Primary != mir.mgr.opts.Self
				if !later || mir.role != RolePrimary {
					// For a primary the arbiter's answer counts as contact (its lease) only when it does not record
					// another member as primary in a later epoch.
					mir.fo.arbHeard = sent
				}
				if v.Epoch != mir.fo.arbView.Epoch || v.PeerSeen != mir.fo.arbView.PeerSeen {
					mir.fo.kickNow()
				}
				mir.fo.arbView = v
				mir.notifyLocked()
				if later && mir.role == RolePrimary && rep.Primary {
					mir.mu.Unlock()
					mir.depose(v.Epoch, v.Primary, fmt.Sprintf("the arbiter records %s as primary in epoch %d", v.Primary, v.Epoch))
					mir.mu.Lock()
				}
			}
			mir.mu.Unlock()
		}
		t := time.NewTimer(max(qos/4, 50*time.Millisecond))
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-mir.reportKick:
		}
		t.Stop()
	}
}

// arbiterFreshLocked reports whether the arbiter answered a report within the QoS timeout.
func (mir *Mirror) arbiterFreshLocked(now time.Time) bool {
	return mir.st.Config.Arbiter != "" && !mir.fo.arbHeard.IsZero() && now.Sub(mir.fo.arbHeard) < mir.st.Config.QoS.Duration
}

// primaryTick runs one round of the primary's failover logic. It returns true when the role changes.
func (mir *Mirror) primaryTick(ctx context.Context) bool {
	now := mir.mgr.opts.Now()
	mir.mu.Lock()
	if mir.role != RolePrimary || mir.fo.deposed {
		mir.mu.Unlock()
		return true
	}
	cfg := &mir.st.Config
	epoch, qos := cfg.Epoch, cfg.QoS.Duration
	fo := &mir.fo
	v := fo.arbView
	// A later epoch recorded by the arbiter for another member: this member was deposed.
	if mir.arbiterFreshLocked(now) && v.Epoch > epoch && v.Primary != "" && v.Primary != mir.mgr.opts.Self {
		mir.mu.Unlock()
		mir.depose(v.Epoch, v.Primary, fmt.Sprintf("the arbiter records %s as primary in epoch %d", v.Primary, v.Epoch))
		return true
	}
	r := mir.backupLocked()
	// The mode: Arbiter Controlled while both failover members are connected to each other and to the arbiter, with the
	// backup Active.
	mode := ModeAgent
	if r != nil && r.active && mir.arbiterFreshLocked(now) && v.PeerSeen {
		mode = ModeArbiter
	}
	if mode != fo.mode {
		mir.log.Info().Str("mode", mode.String()).Msg("failover mode changed")
		fo.mode = mode
		mir.notifyLocked()
	}
	var send *replica
	var flags uint8
	var sentNano int64
	if r != nil {
		flags = mir.stateFlagsLocked(r)
		// Sent often, so its echo keeps the lease (QoS/2) fresh with a margin.
		if flags != r.told || now.Sub(r.toldAt) >= max(qos/8, 25*time.Millisecond) {
			send, r.told, r.toldAt = r, flags, now
			sentNano = r.noteSentLocked(time.Now())
		}
	}
	// A backup that is Active again after the arbiter let this member continue without it may take over again once the
	// arbiter knows: this member holds its lease again from now on (before asking, since the answer may be lost), and asks
	// until the arbiter has recorded it.
	if r != nil && r.active && fo.continued == epoch {
		fo.continued, fo.rejoinPending = 0, true
	}
	rejoin := fo.rejoinPending && mir.arbiterFreshLocked(now)
	waiting, trouble := fo.waiting, fo.trouble
	troubleMode, troubleSince := fo.troubleMode, fo.troubleSince
	self := mir.mgr.opts.Self
	backupCfg, hasBackup := cfg.backup()
	arbAddr := mir.arbiterAddrLocked()
	arbFresh := mir.arbiterFreshLocked(now)
	// A backup streaming from this member since the trouble (or the restart) began accepts it as primary in its epoch.
	reconnected := r != nil && r.connected.After(troubleSince)
	mir.mu.Unlock()

	if send != nil {
		s := wire.MirrorState{Epoch: epoch, Flags: flags, SentUnixNano: sentNano}
		send.conn.WriteFrame(wire.Frame{Kind: wire.KindMirrorState, Payload: wire.EncodeMirrorState(nil, &s)})
	}
	if rejoin {
		if d, err := mir.arbiterDecide(ctx, arbAddr, qos, func(c *arbiter.Client, ctx context.Context) (arbiter.Decision, error) {
			return c.Rejoined(ctx, arbiter.RejoinedRequest{Mirror: mir.name, Member: self, Epoch: epoch})
		}); err == nil && (d.Granted || d.Epoch != epoch) {
			mir.mu.Lock()
			fo.rejoinPending = false
			mir.mu.Unlock()
		}
	}

	switch {
	case waiting:
		mir.resolveWaiting(ctx, epoch, qos, r, hasBackup, backupCfg, arbAddr, arbFresh)
	case trouble:
		switch {
		case reconnected:
			mir.mu.Lock()
			mir.endTroubleLocked("the backup reconnected, so it did not take over")
			mir.mu.Unlock()
		case troubleMode == ModeArbiter:
			if !arbFresh {
				mir.mu.Lock()
				fo.troubleWhy = "lost both the Active backup and the arbiter: it cannot tell whether the backup took over (until one of them is back, or an operator acts)"
				mir.mu.Unlock()
				break
			}
			d, err := mir.arbiterDecide(ctx, arbAddr, qos, func(c *arbiter.Client, ctx context.Context) (arbiter.Decision, error) {
				return c.Continue(ctx, arbiter.ContinueRequest{Mirror: mir.name, Member: self, Epoch: epoch})
			})
			mir.mu.Lock()
			switch {
			case err != nil:
				fo.troubleWhy = "lost the Active backup; asking the arbiter to continue without it failed: " + err.Error()
			case d.Granted:
				fo.continued = epoch
				mir.endTroubleLocked("the arbiter confirmed the backup is no longer active")
			case d.Epoch > epoch && d.Primary != "" && d.Primary != self:
				mir.mu.Unlock()
				mir.depose(d.Epoch, d.Primary, "the arbiter granted "+d.Primary+" the takeover")
				return true
			default:
				fo.troubleWhy = "lost the Active backup; the arbiter has not confirmed it is no longer active: " + d.Reason
			}
			mir.mu.Unlock()
		default:
			// Agent Controlled: the backup takes over only after forcing this member down through its agent, so after
			// 2 × QoS without it this member continues alone. The backup's agent can confirm sooner that it is down.
			confirmed := false
			if hasBackup && now.Sub(troubleSince) < 2*qos {
				if ac := mir.mgr.agentOf(backupCfg); ac != nil {
					actx, cancel := context.WithTimeout(ctx, qos/4)
					ms, err := ac.Member(actx, backupCfg.Name)
					cancel()
					confirmed = err == nil && !ms.Running
				}
			}
			mir.mu.Lock()
			switch {
			case confirmed:
				mir.endTroubleLocked("the backup's agent reports it down")
			case now.Sub(troubleSince) >= 2*qos:
				mir.endTroubleLocked("2 × QoS passed in Agent Controlled mode")
			}
			mir.mu.Unlock()
		}
	}
	return false
}

// stateFlagsLocked is what the primary tells backup r.
func (mir *Mirror) stateFlagsLocked(r *replica) uint8 {
	var f uint8
	if r.active {
		f |= wire.StateActive
	}
	if mir.fo.mode == ModeArbiter && r.active {
		f |= wire.StateArbiterMode
	}
	if mir.st.NoFailover {
		f |= wire.StateNoFailover
	}
	return f
}

// arbiterDecide sends one request to the arbiter with a timeout of QoS/2.
func (mir *Mirror) arbiterDecide(ctx context.Context, addr string, qos time.Duration,
	call func(*arbiter.Client, context.Context) (arbiter.Decision, error)) (arbiter.Decision, error) {
	if addr == "" {
		return arbiter.Decision{}, errors.New("the mirror has no arbiter")
	}
	ctx, cancel := context.WithTimeout(ctx, max(qos/2, 100*time.Millisecond))
	defer cancel()
	c, err := mir.mgr.arbiterClient(ctx, addr)
	if err != nil {
		return arbiter.Decision{}, err
	}
	return call(c, ctx)
}

// resolveWaiting confirms that a primary that restarted is still primary: its backup streams from it, the arbiter lets it
// continue, or the backup's agent shows the backup down and not primary. It steps down when another member is primary
// in a later epoch.
func (mir *Mirror) resolveWaiting(ctx context.Context, epoch uint64, qos time.Duration, r *replica, hasBackup bool, backupCfg MemberConfig, arbAddr string, arbFresh bool) {
	self := mir.mgr.opts.Self
	done := func(how string) {
		mir.mu.Lock()
		if mir.fo.waiting {
			mir.fo.waiting, mir.fo.waitWhy = false, ""
			mir.log.Info().Str("how", how).Msg("confirmed as primary")
			mir.notifyLocked()
			mir.fo.kickNow()
		}
		mir.mu.Unlock()
	}
	if r != nil || !hasBackup {
		done("the backup streams from this member")
		return
	}
	var whys []string
	// The backup's own view, through its admin API.
	pctx, cancel := context.WithTimeout(ctx, max(qos/2, 500*time.Millisecond))
	var sts []Status
	err := mir.mgr.GetJSON(pctx, backupCfg.AdminAddr, "/api/v1/mirror/local", &sts)
	cancel()
	if err == nil {
		for _, st := range sts {
			if st.Mirror != mir.name {
				continue
			}
			if st.Role == RolePrimary.String() && st.Epoch > epoch {
				mir.depose(st.Epoch, backupCfg.Name, fmt.Sprintf("%s answers as primary in epoch %d", backupCfg.Name, st.Epoch))
				return
			}
			if st.Role != RolePrimary.String() && st.Epoch <= epoch && arbAddr == "" {
				// Not primary, and without an arbiter it cannot take over without forcing this member down through its
				// agent first. (With an arbiter it might still hold an arbiter grant in flight from before this member's
				// restart: then only the arbiter, or the backup streaming from this member, confirms.)
				done(fmt.Sprintf("the backup %s answers as %s in epoch %d", backupCfg.Name, st.Role, st.Epoch))
				return
			}
			whys = append(whys, fmt.Sprintf("the backup %s answers as %s in epoch %d", backupCfg.Name, st.Role, st.Epoch))
		}
	} else {
		mir.mu.Lock()
		automatic := mir.automaticLocked()
		mir.mu.Unlock()
		if !automatic {
			// Without an arbiter or agents the backup never takes over by itself; only an operator's force could have
			// made it primary, and then it would answer.
			done("no automatic failover is configured and the backup does not answer")
			return
		}
		whys = append(whys, fmt.Sprintf("the backup %s does not answer: %v", backupCfg.Name, err))
	}
	if arbFresh {
		d, err := mir.arbiterDecide(ctx, arbAddr, qos, func(c *arbiter.Client, ctx context.Context) (arbiter.Decision, error) {
			return c.Continue(ctx, arbiter.ContinueRequest{Mirror: mir.name, Member: self, Epoch: epoch})
		})
		switch {
		case err != nil:
			whys = append(whys, "arbiter: "+err.Error())
		case d.Granted:
			mir.mu.Lock()
			mir.fo.continued = epoch
			mir.mu.Unlock()
			done("the arbiter let it continue without its backup")
			return
		case d.Epoch > epoch && d.Primary != "" && d.Primary != self:
			mir.depose(d.Epoch, d.Primary, "the arbiter records "+d.Primary+" as primary")
			return
		default:
			whys = append(whys, "arbiter: "+d.Reason)
		}
	} else if arbAddr != "" {
		whys = append(whys, "the arbiter does not answer")
	}
	if ac := mir.mgr.agentOf(backupCfg); ac != nil {
		actx, cancel := context.WithTimeout(ctx, qos/2)
		ms, err := ac.Member(actx, backupCfg.Name)
		cancel()
		if err != nil {
			whys = append(whys, "backup's agent: "+err.Error())
		} else {
			for _, mr := range ms.Mirrors {
				if mr.Mirror != mir.name {
					continue
				}
				switch {
				case mr.Epoch > epoch && mr.Primary != self:
					mir.depose(mr.Epoch, mr.Primary, "the backup's agent shows "+mr.Primary+" primary in a later epoch")
					return
				case !ms.Running && mr.Role != "primary":
					done("the backup's agent shows it down and not primary")
					return
				}
			}
			whys = append(whys, fmt.Sprintf("backup %s is running but does not stream from this member", backupCfg.Name))
		}
	} else {
		whys = append(whys, fmt.Sprintf("backup %s does not stream from this member and has no agent to ask", backupCfg.Name))
	}
	mir.mu.Lock()
	mir.fo.waitWhy = strings.Join(whys, "; ")
	mir.mu.Unlock()
}

// depose makes a primary that learnt of a later epoch a backup of the new primary; commits waiting for acknowledgement
// fail with an unknown outcome, and nothing is acknowledged from now on.
func (mir *Mirror) depose(epoch uint64, primary, why string) {
	mir.mu.Lock()
	if mir.role != RolePrimary || mir.fo.deposed {
		mir.mu.Unlock()
		return
	}
	// From now on this member refuses every read and every acknowledgement; stepping down follows.
	mir.fo.deposed = true
	mir.notifyLocked()
	mir.mu.Unlock()
	mir.log.Warn().Uint64("epoch", epoch).Str("new_primary", primary).Str("why", why).Msg("deposed: another member is primary in a later epoch; rejoining as backup")
	go func() {
		if err := mir.stepDown(primary, nil); err != nil {
			mir.log.Error().Err(err).Msg("stepping down")
		}
	}()
}

// backupTick runs one round of the backup's failover logic. It returns true when this member became primary.
func (mir *Mirror) backupTick(ctx context.Context) bool {
	now := mir.mgr.opts.Now()
	mir.mu.Lock()
	if mir.role != RoleBackup || mir.fo.takingOver {
		mir.mu.Unlock()
		return mir.role != RoleBackup
	}
	cfg := mir.st.Config.clone()
	fo := &mir.fo
	qos := cfg.QoS.Duration
	// While the divergent tail is rolled back the receiver does not run: the primary is not lost for that.
	if mir.st.RollbackTo != nil || mir.st.RollbackRefused != "" {
		fo.primaryHeard = now
	}
	lost := now.Sub(fo.primaryHeard) >= qos
	arbView := fo.arbView
	flags := fo.flags
	stopped := mir.st.MirroringStopped
	versionRefused := mir.st.VersionRefused
	arbFresh := mir.arbiterFreshLocked(now)
	arbAddr := mir.arbiterAddrLocked()
	mir.mu.Unlock()
	block := func(why string) bool {
		mir.mu.Lock()
		if fo.blockedWhy != why {
			// Reasons carry figures that change at each round: log a new kind of reason at once, the same kind once per QoS.
			kind, _, _ := strings.Cut(why, ":")
			oldKind, _, _ := strings.Cut(fo.blockedWhy, ":")
			if why != "" && (kind != oldKind || now.Sub(fo.blockedLogged) >= qos) {
				mir.log.Warn().Str("why", why).Msg("lost the primary but not taking over")
				fo.blockedLogged = now
			}
			fo.blockedWhy = why
			mir.notifyLocked()
		}
		mir.mu.Unlock()
		return false
	}
	if !lost {
		return block("")
	}
	primary, _ := cfg.Member(cfg.Primary)
	switch {
	case stopped:
		return block("mirroring is stopped on this member")
	case flags&wire.StateNoFailover != 0:
		return block(fmt.Sprintf("no-failover is set on the primary %s", primary.Name))
	case slices.Contains(cfg.NotValidated, mir.mgr.opts.Self):
		return block("this member is marked not-validated: it must not become primary")
	case versionRefused != "":
		// It could not become primary anyway: it must not force down the primary that refused it either.
		return block("the primary refused this member for its version: " + versionRefused)
	}
	if why := primaryRefusal(&cfg, mir.mgr.opts.Self); why != "" {
		return block(why)
	}
	if why := mir.takeoverPreconditions(cfg); why != "" {
		return block(why)
	}
	if flags&wire.StateArbiterMode != 0 && flags&wire.StateActive != 0 && cfg.Arbiter != "" {
		if !arbFresh {
			return block("lost the primary and the arbiter in Arbiter Controlled mode: the primary may still be running")
		}
		epoch := cfg.Epoch
		d, err := mir.arbiterDecide(ctx, arbAddr, qos, func(c *arbiter.Client, ctx context.Context) (arbiter.Decision, error) {
			return c.Takeover(ctx, arbiter.TakeoverRequest{Mirror: mir.name, Member: mir.mgr.opts.Self, Epoch: epoch, NewEpoch: epoch + 1})
		})
		switch {
		case err != nil:
			return block("asking the arbiter for the takeover: " + err.Error())
		case d.Granted || d.Primary == mir.mgr.opts.Self && d.Epoch == epoch+1:
			return mir.takeOverUnplanned(ctx, epoch+1, "arbiter", nil)
		default:
			mir.mu.Lock()
			v, heard := fo.arbView, fo.arbHeard
			if d.Epoch == epoch && v.PeerSeen && v.PeerAge < qos/2 && now.Sub(heard) < qos/2 {
				// The arbiter hears the primary although this member lost it: they lost each other. This member gives up
				// being Active, so the primary may continue without it, and reconnects.
				fo.flags &^= wire.StateActive | wire.StateArbiterMode
				mir.mu.Unlock()
				mir.kickReport()
				return block("the primary still reports to the arbiter; this member is no longer Active and reconnects")
			}
			mir.mu.Unlock()
			return block("the arbiter refused the takeover: " + d.Reason)
		}
	}
	// Agent Controlled (or not Active): ask the primary's agent. But a primary that still reports to the arbiter is alive:
	// it is not forced down (this member reconnects).
	if arbFresh && arbView.PeerSeen && arbView.PeerReport.Primary && arbView.PeerReport.Member == primary.Name && arbView.PeerAge < qos/2 {
		return block(fmt.Sprintf("the primary %s still reports to the arbiter; reconnecting", primary.Name))
	}
	ac := mir.mgr.agentOf(primary)
	if ac == nil {
		return block(fmt.Sprintf("the primary %s has no agent to confirm it is down, and the mode is Agent Controlled", primary.Name))
	}
	actx, cancel := context.WithTimeout(ctx, qos)
	defer cancel()
	if _, err := ac.Member(actx, primary.Name); err != nil {
		return block(fmt.Sprintf("cannot reach the agent of the primary %s: %v", primary.Name, err))
	}
	// The agent answers but the primary has not for the QoS timeout: it is down, hung or cut off. Force it down (this also
	// keeps the agent from restarting it) and take the rest of its journal.
	kctx, kcancel := context.WithTimeout(ctx, 2*qos)
	err := ac.Kill(kctx, primary.Name)
	kcancel()
	if err != nil {
		return block(fmt.Sprintf("the agent of the primary %s could not force it down: %v", primary.Name, err))
	}
	mir.log.Warn().Str("primary", primary.Name).Msg("the primary's agent forced it down")
	return mir.takeOverUnplanned(ctx, 0, "agent", func() error { return mir.fetchFromAgent(ctx, ac, primary.Name) })
}

func (mir *Mirror) kickReport() {
	select {
	case mir.reportKick <- struct{}{}:
	default:
	}
}

// takeoverPreconditions explains why this member cannot serve as primary yet ("" when it can): every mirrored database
// must be on it and tracked by dejournaling.
func (mir *Mirror) takeoverPreconditions(cfg Config) string {
	have := map[string]bool{}
	for _, info := range mir.mgr.mirroredDatabases(mir.name) {
		have[info.Name] = true
	}
	for _, db := range cfg.Databases {
		if slices.Contains(cfg.Removed, db) {
			continue
		}
		if !have[db] {
			return fmt.Sprintf("mirrored database %s is not activated on this member", db)
		}
	}
	return ""
}

// fetchFromAgent appends whatever the old primary's journal holds beyond this member's, read from its disk by its agent.
func (mir *Mirror) fetchFromAgent(ctx context.Context, ac *agent.Client, member string) error {
	for {
		from := mir.jrn.AppendedEnd()
		frames, end, err := ac.Journal(ctx, member, mir.name, from)
		if errors.Is(err, journal.ErrBadPosition) {
			// Its journal on disk ends before this member's (records shipped before its crash lost them): nothing to take.
			mir.log.Warn().Err(err).Str("member", member).Msg("the old primary's journal holds nothing beyond this member's")
			break
		}
		if err != nil {
			return err
		}
		if len(frames) > 0 {
			if _, _, err := mir.jrn.AppendEncoded(frames); err != nil {
				return fmt.Errorf("journal of %s from its agent at %s: %w", member, from, err)
			}
			mir.log.Info().Str("from", from.String()).Str("to", end.String()).Int("bytes", len(frames)).Msg("fetched the rest of the old primary's journal from its agent")
		}
		if len(frames) == 0 || !mir.jrn.AppendedEnd().Less(end) {
			break
		}
	}
	return mir.jrn.WaitDurable(ctx, mir.jrn.AppendedEnd())
}

// takeOverUnplanned makes this backup primary after the primary was lost: it stops receiving, runs fetch (the old
// primary's journal through its agent) when given, and raises the epoch (to granted when the arbiter granted it).
func (mir *Mirror) takeOverUnplanned(ctx context.Context, granted uint64, how string, fetch func() error) bool {
	mir.mu.Lock()
	mir.fo.takingOver = true
	mir.notifyLocked()
	stopRecv := mir.recvCancel
	mir.mu.Unlock()
	fail := func(err error) bool {
		mir.mu.Lock()
		mir.fo.takingOver = false
		mir.fo.blockedWhy = "takeover failed: " + err.Error()
		mir.notifyLocked()
		mir.mu.Unlock()
		mir.log.Error().Err(err).Msg("takeover failed")
		if how == "arbiter" {
			// The arbiter recorded this member as primary: nobody else can become primary in this epoch, so keep trying.
			return false
		}
		mir.restartReceiver()
		return false
	}
	if stopRecv != nil {
		stopRecv()
	}
	mir.recvWG.Wait()
	if fetch != nil {
		if err := fetch(); err != nil {
			return fail(err)
		}
	}
	known := mir.Config().Epoch
	if granted > 0 {
		known = granted - 1
	}
	newEpoch, restart, err := mir.becomePrimary(known)
	if err != nil {
		return fail(err)
	}
	mir.mu.Lock()
	mir.countFailoverLocked(how)
	mir.mu.Unlock()
	mir.log.Warn().Uint64("epoch", newEpoch).Str("how", how).Msg("took over as primary after losing the primary")
	restart()
	return true
}

func (mir *Mirror) countFailoverLocked(how string) {
	if mir.fo.failovers == nil {
		mir.fo.failovers = map[string]uint64{}
	}
	mir.fo.failovers[how]++
}

// restartReceiver starts the receiver again after a takeover that did not happen.
func (mir *Mirror) restartReceiver() {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	if mir.role == RoleBackup && mir.roleCtx != nil && mir.roleCtx.Err() == nil && !mir.st.MirroringStopped {
		mir.startReceiverLocked(mir.roleCtx)
	}
}
