package mirror

import (
	"context"
	"fmt"
	"os"
	"slices"
)

// SetMemberType changes a member's type on the primary: demote the backup to DR, or promote a DR async to failover member
// (an existing backup is then demoted to DR). Reporting asyncs can never be promoted.
func (mir *Mirror) SetMemberType(name string, t MemberType) (Config, error) {
	if _, err := ParseMemberType(string(t)); err != nil {
		return Config{}, err
	}
	err := mir.update(func(st *localState) error {
		if mir.role != RolePrimary {
			return fmt.Errorf("member %s is not the primary of mirror %s; change member types on the primary %s", mir.mgr.opts.Self, mir.name, st.Config.Primary)
		}
		i := slices.IndexFunc(st.Config.Members, func(m MemberConfig) bool { return m.Name == name })
		if i < 0 {
			return fmt.Errorf("member %s is not in mirror %s", name, mir.name)
		}
		cur := st.Config.Members[i].Type
		switch {
		case name == st.Config.Primary:
			return fmt.Errorf("member %s is the primary; fail over first", name)
		case cur == t:
			return nil
		case t == Failover && cur != DR:
			return fmt.Errorf("member %s is a %s async; only a DR async can be promoted to failover member", name, cur)
		case t != DR && t != Failover:
			return fmt.Errorf("a failover member can only be demoted to DR async, not to %s", t)
		}
		if t == Failover {
			for j := range st.Config.Members {
				if st.Config.Members[j].Type == Failover && st.Config.Members[j].Name != st.Config.Primary {
					st.Config.Members[j].Type = DR // the old backup becomes a DR async
				}
			}
		}
		st.Config.Members[i].Type = t
		st.Config.Version++
		return st.Config.Validate()
	})
	if err != nil {
		return Config{}, err
	}
	cfg := mir.Config()
	mir.mu.Lock()
	for _, r := range mir.replicas {
		if mc, ok := cfg.Member(r.name); ok && mc.Type != r.typ {
			// The stream restarts with the member's new type (compression, whether the primary waits for it).
			r.typ = mc.Type
			r.active, r.activating = false, false
			r.close()
		}
	}
	mir.notifyLocked()
	mir.mu.Unlock()
	mir.broadcastConfig()
	return cfg, nil
}

// RemoveMember takes a member out of the mirror on the primary.
func (mir *Mirror) RemoveMember(name string) (Config, error) {
	err := mir.update(func(st *localState) error {
		if mir.role != RolePrimary {
			return fmt.Errorf("member %s is not the primary of mirror %s; remove members on the primary %s", mir.mgr.opts.Self, mir.name, st.Config.Primary)
		}
		if name == st.Config.Primary {
			if len(st.Config.Members) > 1 {
				return fmt.Errorf("member %s is the primary of mirror %s and other members remain; remove the asyncs, then the backup, first", name, mir.name)
			}
			return nil
		}
		i := slices.IndexFunc(st.Config.Members, func(m MemberConfig) bool { return m.Name == name })
		if i < 0 {
			return fmt.Errorf("member %s is not in mirror %s", name, mir.name)
		}
		st.Config.Members = slices.Delete(st.Config.Members, i, i+1)
		delete(st.Received, name)
		st.Config.Version++
		return nil
	})
	if err != nil {
		return Config{}, err
	}
	mir.mu.Lock()
	if r, ok := mir.replicas[name]; ok {
		r.close()
		delete(mir.replicas, name)
	}
	mir.mu.Unlock()
	mir.broadcastConfig()
	return mir.Config(), nil
}

// Leave takes this member out of the mirror: the primary drops it (unless this member is the primary and the last member),
// its copies of the mirrored databases become local databases, and its mirror state and journal are deleted.
func (m *Manager) Leave(ctx context.Context, name string) error {
	mir, err := m.Mirror(name)
	if err != nil {
		return err
	}
	cfg := mir.Config()
	if mir.Role() == RolePrimary {
		if _, err := mir.RemoveMember(m.opts.Self); err != nil {
			return err
		}
	} else if p, ok := cfg.Member(cfg.Primary); ok {
		var out Config
		if err := m.PostJSON(ctx, p.AdminAddr, "/api/v1/mirrors/"+mir.name+"/members/"+m.opts.Self+"/remove", struct{}{}, &out); err != nil {
			return fmt.Errorf("remove %s from mirror %s at the primary %s: %w", m.opts.Self, mir.name, cfg.Primary, err)
		}
	}
	mir.stop()
	for _, info := range m.mirroredDatabases(mir.name) {
		if err := m.store.Detach(info.Name); err != nil {
			return err
		}
	}
	m.mu.Lock()
	delete(m.mirrors, mir.name)
	m.mu.Unlock()
	if err := mir.jrn.Close(); err != nil {
		return err
	}
	if err := os.RemoveAll(mir.dir); err != nil {
		return fmt.Errorf("remove mirror %s state: %w", mir.name, err)
	}
	m.log.Info().Str("mirror", mir.name).Msg("left the mirror")
	return nil
}

// RemoveMirror removes the whole mirror from the primary: every async leaves, then the backup, then the primary itself.
func (m *Manager) RemoveMirror(ctx context.Context, name string) error {
	mir, err := m.Mirror(name)
	if err != nil {
		return err
	}
	if mir.Role() != RolePrimary {
		return fmt.Errorf("remove mirror %s on its primary %s", mir.name, mir.Config().Primary)
	}
	cfg := mir.Config()
	order := slices.Clone(cfg.Members)
	slices.SortStableFunc(order, func(a, b MemberConfig) int { return rank(a, cfg) - rank(b, cfg) })
	for _, mc := range order {
		if mc.Name == m.opts.Self {
			continue
		}
		if err := m.PostJSON(ctx, mc.AdminAddr, "/api/v1/mirrors/"+mir.name+"/leave", struct{}{}, nil); err != nil {
			// A member that cannot be reached is removed from the configuration anyway; it is told when it reconnects.
			m.log.Warn().Err(err).Str("peer", mc.Name).Msg("member did not answer the removal; removing it from the configuration")
			if _, err := mir.RemoveMember(mc.Name); err != nil {
				return err
			}
		}
	}
	return m.Leave(ctx, mir.name)
}

// rank orders removal: asyncs first, then the backup, the primary last.
func rank(mc MemberConfig, cfg Config) int {
	switch {
	case mc.Name == cfg.Primary:
		return 2
	case mc.Type == Failover:
		return 1
	}
	return 0
}

// RequestType asks the primary to change this member's type (promote a DR async to failover member, or demote the backup).
func (mir *Mirror) RequestType(ctx context.Context, t MemberType) error {
	cfg := mir.Config()
	if cfg.Primary == mir.mgr.opts.Self {
		return fmt.Errorf("member %s is the primary of mirror %s", mir.mgr.opts.Self, mir.name)
	}
	p, ok := cfg.Member(cfg.Primary)
	if !ok {
		return fmt.Errorf("mirror %s has no known primary", mir.name)
	}
	var out Config
	body := struct {
		Type MemberType `json:"type"`
	}{t}
	if err := mir.mgr.PostJSON(ctx, p.AdminAddr, "/api/v1/mirrors/"+mir.name+"/members/"+mir.mgr.opts.Self+"/type", body, &out); err != nil {
		return fmt.Errorf("ask the primary %s: %w", cfg.Primary, err)
	}
	return mir.applyConfigValue(out)
}
