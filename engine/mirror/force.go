package mirror

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/agent"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// TakeoverReport is what an operator's forced takeover (force-primary, or promoting a DR async without a running primary)
// says about the member that became primary.
type TakeoverReport struct {
	Member string `json:"member"`
	// WasActiveBackup says whether this member was the Active backup when it last heard from the primary: if not, the
	// mirror may have lost the primary's latest commits.
	WasActiveBackup bool   `json:"was_active_backup"`
	LastPosition    string `json:"last_position"` // this member's journal end before any journal was fetched
	NewEnd          string `json:"new_end"`       // its journal end once it became primary
	Epoch           uint64 `json:"epoch"`
	// Fetched names the members whose journal was fetched through their agents.
	Fetched []string `json:"fetched,omitempty"`
	// NotValidated lists former failover members that could not be reached: they must not start as primary.
	NotValidated []string `json:"not_validated,omitempty"`
	Warnings     []string `json:"warnings,omitempty"`
}

// ErrOtherPrimary refuses a forced takeover while another member is known to be primary.
var ErrOtherPrimary = errors.New("another member is primary")

// ForcePrimary makes this failover member primary on an operator's word, after a disaster: it refuses while another member
// is known to be primary (this member streams from it, or it answers as primary), then takes the latest journal it can
// get from the old primary's agent, and raises the epoch.
func (mir *Mirror) ForcePrimary(ctx context.Context) (TakeoverReport, error) {
	cfg := mir.Config()
	self, _ := cfg.Member(mir.mgr.opts.Self)
	if self.Type != Failover {
		return TakeoverReport{}, fmt.Errorf("member %s is a %s async of mirror %s: promote it (mirror promote) instead of forcing it", self.Name, self.Type, mir.name)
	}
	if err := mir.checkNoPrimary(ctx, cfg); err != nil {
		return TakeoverReport{}, err
	}
	mir.mu.Lock()
	rep := TakeoverReport{Member: self.Name, WasActiveBackup: mir.fo.flags&wire.StateActive != 0, LastPosition: mir.jrn.AppendedEnd().String()}
	mir.mu.Unlock()
	if !rep.WasActiveBackup {
		rep.Warnings = append(rep.Warnings, "this member was not the Active backup: commits the primary acknowledged after it last caught up may be missing unless its journal could be fetched")
	}
	if old, ok := cfg.Member(cfg.Primary); ok && old.Name != self.Name {
		mir.fetchFromFormer(ctx, old, &rep)
	}
	return rep, mir.forceTakeOver(&rep, "forced", nil)
}

// PromoteWithoutPrimary makes this DR async the primary when no primary runs (MIRRORING.md §7): it takes the last
// primary's journal from its agent (or the backup's), or, with no such partner, the newest journal among the other asyncs'
// agents, warning that data may be lost. Former failover members that could not be reached are marked not-validated.
func (mir *Mirror) PromoteWithoutPrimary(ctx context.Context) (TakeoverReport, error) {
	cfg := mir.Config()
	self, _ := cfg.Member(mir.mgr.opts.Self)
	if self.Type != DR {
		return TakeoverReport{}, fmt.Errorf("member %s is not a DR async of mirror %s (it is %s)", self.Name, mir.name, self.Type)
	}
	if err := mir.checkNoPrimary(ctx, cfg); err != nil {
		return TakeoverReport{}, err
	}
	rep := TakeoverReport{Member: self.Name, LastPosition: mir.jrn.AppendedEnd().String()}
	var failover []MemberConfig
	for _, m := range cfg.Members {
		if m.Type == Failover {
			failover = append(failover, m)
		}
	}
	// The last primary first, then the backup: each reachable agent forces its member down and hands over its journal.
	slices.SortStableFunc(failover, func(a, b MemberConfig) int {
		switch {
		case a.Name == cfg.Primary:
			return -1
		case b.Name == cfg.Primary:
			return 1
		}
		return 0
	})
	partner := false
	for _, m := range failover {
		if mir.fetchFromFormer(ctx, m, &rep) {
			partner = true
		} else {
			rep.NotValidated = append(rep.NotValidated, m.Name)
		}
	}
	if !partner {
		rep.Warnings = append(rep.Warnings, "no former failover member could be reached: the newest journal among the other asyncs is used, and commits the primary acknowledged may be lost")
		mir.gatherFromAsyncs(ctx, cfg, &rep)
	}
	return rep, mir.forceTakeOver(&rep, "promoted", func(c *Config) {
		for i := range c.Members {
			switch {
			case c.Members[i].Name == self.Name:
				c.Members[i].Type = Failover
			case c.Members[i].Type == Failover:
				c.Members[i].Type = DR // former failover members rejoin as DR asyncs
			}
		}
		for _, name := range rep.NotValidated {
			if !slices.Contains(c.NotValidated, name) {
				c.NotValidated = append(c.NotValidated, name)
			}
		}
	})
}

// checkNoPrimary refuses while another member is known to be primary: this member streams from it, or a failover member
// answers that it is primary.
func (mir *Mirror) checkNoPrimary(ctx context.Context, cfg Config) error {
	mir.mu.Lock()
	role, connected, from := mir.role, mir.recv.connected, mir.recv.primary
	mir.mu.Unlock()
	if role == RolePrimary {
		return fmt.Errorf("member %s is already the primary of mirror %s", mir.mgr.opts.Self, mir.name)
	}
	if connected {
		return fmt.Errorf("mirror %s: this member receives the journal from the primary %s: %w", mir.name, from, ErrOtherPrimary)
	}
	for _, m := range cfg.Members {
		if m.Name == mir.mgr.opts.Self || m.Type != Failover {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var sts []Status
		err := mir.mgr.GetJSON(actx, m.AdminAddr, "/api/v1/mirror/local", &sts)
		cancel()
		if err != nil {
			continue
		}
		for _, st := range sts {
			if st.Mirror == mir.name && st.Role == RolePrimary.String() {
				return fmt.Errorf("mirror %s: member %s answers as primary in epoch %d: %w", mir.name, m.Name, st.Epoch, ErrOtherPrimary)
			}
		}
	}
	return nil
}

// fetchFromFormer asks the agent of a former failover member to force it down and appends what its journal holds beyond
// this member's. It returns whether the agent answered.
func (mir *Mirror) fetchFromFormer(ctx context.Context, m MemberConfig, rep *TakeoverReport) bool {
	ac := mir.mgr.agentOf(m)
	if ac == nil {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("member %s has no agent: its journal could not be fetched", m.Name))
		return false
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := ac.Member(actx, m.Name); err != nil {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("agent of %s: %v", m.Name, err))
		return false
	}
	if err := ac.Kill(actx, m.Name); err != nil {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("the agent of %s could not force it down: %v", m.Name, err))
		return false
	}
	if err := mir.fetchFromAgent(actx, ac, m.Name); err != nil {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("journal of %s from its agent: %v", m.Name, err))
		return true
	}
	rep.Fetched = append(rep.Fetched, m.Name)
	return true
}

// gatherFromAsyncs fetches the newest journal among the other asyncs, through their agents.
func (mir *Mirror) gatherFromAsyncs(ctx context.Context, cfg Config, rep *TakeoverReport) {
	type candidate struct {
		m  MemberConfig
		ac *agent.Client
	}
	var cands []candidate
	for _, m := range cfg.Members {
		if m.Name == mir.mgr.opts.Self || m.Type == Failover {
			continue
		}
		if ac := mir.mgr.agentOf(m); ac != nil {
			cands = append(cands, candidate{m, ac})
		}
	}
	for _, c := range cands {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		before := mir.jrn.AppendedEnd()
		err := mir.fetchFromAgent(actx, c.ac, c.m.Name)
		cancel()
		switch {
		case err != nil:
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("journal of async %s: %v", c.m.Name, err))
		case before.Less(mir.jrn.AppendedEnd()):
			rep.Fetched = append(rep.Fetched, c.m.Name)
		}
	}
}

// forceTakeOver stops receiving and makes this member primary; edit changes the configuration first (member types).
func (mir *Mirror) forceTakeOver(rep *TakeoverReport, how string, edit func(*Config)) error {
	mir.mu.Lock()
	stopRecv := mir.recvCancel
	mir.fo.takingOver = true
	mir.mu.Unlock()
	if stopRecv != nil {
		stopRecv()
	}
	mir.recvWG.Wait()
	epoch, restart, err := mir.becomePrimaryWith(mir.Config().Epoch, edit)
	if err != nil {
		mir.mu.Lock()
		mir.fo.takingOver = false
		mir.mu.Unlock()
		mir.restartReceiver()
		return err
	}
	mir.mu.Lock()
	mir.countFailoverLocked(how)
	mir.mu.Unlock()
	rep.Epoch, rep.NewEnd = epoch, mir.jrn.AppendedEnd().String()
	mir.log.Warn().Str("how", how).Uint64("epoch", epoch).Strs("fetched", rep.Fetched).Strs("not_validated", rep.NotValidated).
		Strs("warnings", rep.Warnings).Msg("an operator made this member primary")
	restart()
	return nil
}
