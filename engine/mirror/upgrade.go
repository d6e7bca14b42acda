package mirror

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mirrorkit/mirrorkit/engine/version"
)

// ErrFinalized refuses lowering a mirror's format level below the level it was finalized at.
var ErrFinalized = errors.New("mirror upgrade finalized")

// ErrNotFinalizable refuses a finalize while some member does not run the new format level.
var ErrNotFinalizable = errors.New("mirror cannot be finalized yet")

// levelOr1 reads a recorded level: 0 (not recorded, or written before levels existed) is level 1.
func levelOr1(l int) int { return max(l, 1) }

// describeMember names a member's version as refusals print it.
func describeMember(software string, level int) string {
	if software == "" {
		software = "an unknown version"
	}
	return version.Describe(software, levelOr1(level))
}

// applyRecordFormatLocked makes the mirror journal write the record format of the finalized level (never newer than this
// build's own): version 1 until an upgrade is finalized.
func (mir *Mirror) applyRecordFormatLocked() {
	v := uint8(version.RecordVersion(min(levelOr1(mir.st.Config.FinalizedLevel), version.Level)))
	if mir.jrn.RecordFormat() == v {
		return
	}
	if err := mir.jrn.SetRecordFormat(v, mir.mgr.opts.Self); err != nil {
		mir.log.Error().Err(err).Msg("cannot switch the mirror journal's record format")
		return
	}
	mir.log.Info().Int("record_format", int(v)).Msg("mirror journal record format")
}

// primaryRefusal says why this build may not become primary of a mirror with configuration cfg ("" if it may).
func primaryRefusal(cfg *Config, self string) string {
	if levelOr1(cfg.FinalizedLevel) > version.Level {
		return fmt.Sprintf("member %s runs %s, but mirror %s is finalized at format level %d: upgrade %s before it can serve",
			self, version.Self(), cfg.Name, cfg.FinalizedLevel, self)
	}
	if levelOr1(cfg.PrimaryLevel) > version.Level {
		return fmt.Sprintf("member %s runs %s and may not become primary of mirror %s: its primary has run %s, a newer format level (MIRRORING.md §11); upgrade %s first, or roll the upgrade back (`upgrade rollback`) before finalize",
			self, version.Self(), cfg.Name, describeMember(cfg.PrimarySoftware, cfg.PrimaryLevel), self)
	}
	return ""
}

// noteVersionRefusal persists why the primary refused this member for its version ("" once a primary accepted it).
func (mir *Mirror) noteVersionRefusal(why string) {
	mir.mu.Lock()
	same := mir.st.VersionRefused == why
	mir.mu.Unlock()
	if same {
		return
	}
	if err := mir.update(func(st *localState) error {
		st.VersionRefused = why
		return nil
	}); err != nil {
		mir.log.Warn().Err(err).Msg("cannot record the primary's refusal of this member's version")
	}
}

// notePrimaryLevel records this member's version in cfg as it becomes primary, raising PrimaryLevel.
func notePrimaryLevel(cfg *Config, self string) {
	if version.Level >= levelOr1(cfg.PrimaryLevel) {
		cfg.PrimaryLevel, cfg.PrimarySoftware = version.Level, version.Software
	}
	for i := range cfg.Members {
		if cfg.Members[i].Name == self {
			cfg.Members[i].Software, cfg.Members[i].Level = version.Software, version.Level
		}
	}
}

// streamRefusal says why a member of type t running software at level may not receive this mirror's journal ("" if it
// may). Reporting asyncs may lag behind the primary's level as long as they read the journal's format (the caller
// warns); failover and DR members may not, since they could become primary.
func streamRefusal(cfg *Config, member string, t MemberType, software string, level int) string {
	level = levelOr1(level)
	if f := levelOr1(cfg.FinalizedLevel); level < f {
		return fmt.Sprintf("member %s runs %s, but mirror %s is finalized at format level %d (its journal is written in that format): upgrade %s to a release of format level %d or newer",
			member, describeMember(software, level), cfg.Name, f, member, f)
	}
	if p := levelOr1(cfg.PrimaryLevel); level < p && !t.IsReporting() {
		return fmt.Sprintf("member %s runs %s; mirror %s's primary has run %s since the upgrade began, and a %s member of an older format level may neither receive the journal nor become primary (MIRRORING.md §11): upgrade %s, or roll the upgrade back with `upgrade rollback`",
			member, describeMember(software, level), cfg.Name, describeMember(cfg.PrimarySoftware, p), t, member)
	}
	return ""
}

// noteMemberVersion records a connecting member's version in the configuration when it changed, and pushes it.
func (mir *Mirror) noteMemberVersion(name, software string, level int) {
	changed := false
	err := mir.update(func(st *localState) error {
		for i := range st.Config.Members {
			m := &st.Config.Members[i]
			if m.Name == name && (m.Software != software || m.Level != level) {
				m.Software, m.Level = software, level
				st.Config.Version++
				changed = true
			}
		}
		return nil
	})
	if err != nil {
		mir.log.Warn().Err(err).Str("peer", name).Msg("cannot record the member's version")
		return
	}
	if changed {
		mir.broadcastConfig()
	}
}

// FinalizeResult is what a finalize did.
type FinalizeResult struct {
	Mirror  string         `json:"mirror"`
	Level   int            `json:"format_level"`
	Already bool           `json:"already,omitempty"` // it was finalized at this level before
	Members []MemberConfig `json:"members"`
}

// Finalize switches the mirror to this build's format level for good: it is refused, listing them, while any member is
// not connected and running this level or newer. From then on the mirror journal is written in the new record format,
// members of older levels are refused, and the upgrade can no longer be rolled back.
func (mir *Mirror) Finalize() (FinalizeResult, error) {
	mir.mu.Lock()
	if mir.role != RolePrimary {
		err := mir.notPrimaryLocked("(finalize)")
		mir.mu.Unlock()
		return FinalizeResult{}, err
	}
	cfg := mir.st.Config.clone()
	var behind []string
	for _, m := range cfg.Members {
		if m.Name == mir.mgr.opts.Self {
			continue
		}
		r, ok := mir.replicas[m.Name]
		connected := ok && !r.ended()
		switch {
		case levelOr1(m.Level) < version.Level && !connected:
			behind = append(behind, fmt.Sprintf("%s runs %s and is not connected", m.Name, describeMember(m.Software, m.Level)))
		case levelOr1(m.Level) < version.Level:
			behind = append(behind, fmt.Sprintf("%s runs %s", m.Name, describeMember(m.Software, m.Level)))
		case !connected:
			behind = append(behind, fmt.Sprintf("%s is not connected (last seen running %s)", m.Name, describeMember(m.Software, m.Level)))
		}
	}
	mir.mu.Unlock()
	res := FinalizeResult{Mirror: mir.name, Level: version.Level, Members: cfg.Members}
	if len(behind) > 0 {
		return res, fmt.Errorf("%w: mirror %s cannot be finalized at format level %d while %s: upgrade every member to %s or newer first",
			ErrNotFinalizable, mir.name, version.Level, strings.Join(behind, "; "), version.Self())
	}
	if levelOr1(cfg.FinalizedLevel) >= version.Level {
		res.Already = true
		return res, nil
	}
	if err := mir.update(func(st *localState) error {
		st.Config.FinalizedLevel = version.Level
		st.Config.FinalizedAt = mir.mgr.opts.Now().UTC()
		st.Config.PrimaryLevel = max(st.Config.PrimaryLevel, version.Level)
		st.Config.Version++
		return nil
	}); err != nil {
		return res, err
	}
	mir.broadcastConfig()
	mir.log.Info().Int("format_level", version.Level).Msg("mirror upgrade finalized")
	res.Members = mir.Config().Members
	return res, nil
}

// AllowLevel lowers the format level that failover and DR members need to receive the journal and become primary, so that
// an upgrade can be rolled back: members going back to an older binary rejoin, and one can be failed over to. It is
// refused below the finalized level. Raising it is not an operator's business (a member raises it by becoming primary).
func (mir *Mirror) AllowLevel(level int) (Config, error) {
	if level < 1 || level > version.NewestLevel {
		return Config{}, fmt.Errorf("format level %d: want 1..%d", level, version.NewestLevel)
	}
	err := mir.update(func(st *localState) error {
		if mir.role != RolePrimary {
			return mir.notPrimaryLocked("(allow format level)")
		}
		if f := levelOr1(st.Config.FinalizedLevel); level < f {
			return fmt.Errorf("%w: mirror %s was finalized at format level %d on %s; members cannot go back to level %d (an upgrade can be rolled back only before `upgrade finalize`)",
				ErrFinalized, mir.name, f, st.Config.FinalizedAt.Format("2006-01-02 15:04:05 MST"), level)
		}
		if levelOr1(st.Config.PrimaryLevel) <= level {
			return nil
		}
		st.Config.PrimaryLevel = level
		st.Config.PrimarySoftware = "" // not known until a member of that level becomes primary again
		st.Config.Version++
		return nil
	})
	if err != nil {
		return Config{}, err
	}
	mir.broadcastConfig()
	return mir.Config(), nil
}
