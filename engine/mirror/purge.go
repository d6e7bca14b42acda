package mirror

import (
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// received is what the primary last knew a member had received, kept across restarts so that a disconnected member still
// holds back purges.
type received struct {
	Pos  journal.Position `json:"pos"`
	Seen time.Time        `json:"seen"`
}

// Purge deletes mirror journal segments that this member's retention policy allows and nobody still needs: its own databases
// (until dejournaled and flushed), and on the primary every member that has not received them yet — except an async
// disconnected for longer than the mirror's async holdback (MIRRORING.md §2).
func (mir *Mirror) Purge(policy journal.PurgePolicy) ([]string, error) {
	// On a serving primary this member wrote the whole journal and applied it: databases nobody writes are up to date at
	// its end and must not hold purges back.
	mir.mu.Lock()
	var written journal.Position
	if mir.role == RolePrimary && !mir.blocked {
		written = mir.jrn.AppendedEnd()
	}
	mir.mu.Unlock()
	if !written.IsZero() {
		if err := mir.mgr.store.AdvanceIdle(mir.name, written); err != nil {
			return nil, err
		}
	}
	floor, err := mir.mgr.store.PurgeFloor(mir.name, mir.jrn.AppendedEnd())
	if err != nil {
		return nil, err
	}
	now := mir.mgr.opts.Now()
	mir.mu.Lock()
	st := mir.st
	if mir.role == RolePrimary {
		known := map[string]received{}
		for name, rc := range st.Received {
			known[name] = rc
		}
		for name, r := range mir.replicas {
			seen := r.lastSeen
			if r.ended() {
				seen = r.disconnectedAt
			}
			known[name] = received{Pos: r.acked, Seen: seen}
		}
		for _, mc := range st.Config.Members {
			if mc.Name == mir.mgr.opts.Self {
				continue
			}
			rc, ok := known[mc.Name]
			if !ok {
				rc = received{Seen: now} // joined but never connected: it needs everything
				known[mc.Name] = rc
			}
			connected := mir.replicas[mc.Name] != nil && !mir.replicas[mc.Name].ended()
			if mc.Type.IsAsync() && !connected && now.Sub(rc.Seen) > st.Config.AsyncHoldback.Duration {
				continue // disconnected too long: no longer holds purges back
			}
			if rc.Pos.Less(floor) {
				floor = rc.Pos
			}
		}
		st.Received = known
		if err := mir.saveLocked(st); err != nil {
			mir.mu.Unlock()
			return nil, err
		}
	}
	mir.mu.Unlock()
	if floor.IsZero() {
		return nil, nil
	}
	return mir.jrn.Purge(policy, floor)
}

// purgeLoop purges on a timer until ctx ends.
func (m *Manager) purgeLoop(every time.Duration, policy journal.PurgePolicy) {
	defer m.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		for _, name := range m.Names() {
			mir, err := m.Mirror(name)
			if err != nil {
				continue
			}
			removed, err := mir.Purge(policy)
			if err != nil {
				mir.log.Error().Err(err).Msg("mirror journal purge")
			} else if len(removed) > 0 {
				mir.log.Info().Strs("segments", removed).Msg("mirror journal segments purged")
			}
		}
	}
}
