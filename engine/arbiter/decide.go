package arbiter

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// MirrorState is the arbiter's knowledge of one mirror.
type MirrorState struct {
	Epoch      uint64 // recorded epoch (0: none)
	Primary    string // recorded primary in Epoch ("" if none)
	BackupLost uint64 // epoch in which the primary was allowed to continue without its backup (0: never)
	Members    map[string]MemberSeen
}

// MemberSeen is what the arbiter last heard from a member since it started; nothing of it is persisted.
type MemberSeen struct {
	Last Report    // the member's last report (zero if it only sent requests)
	At   time.Time // when the arbiter last heard from the member: a report or a request
}

// reported reports whether the member has sent a report since the arbiter started.
func (m MemberSeen) reported() bool { return m.Last.Member != "" }

// mirror is the arbiter's state for one mirror. mu is held around every check, persist and answer, so the mirror's
// decisions are linearizable: each takes effect, durably, at one point between its request and its answer.
type mirror struct {
	name string

	mu      sync.Mutex
	rec     record
	members map[string]*MemberSeen
}

// mirror returns the state of the named mirror (canonical name), creating it on first use.
func (s *Server) mirror(name string) *mirror {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mirrors[name]
	if m == nil {
		m = &mirror{name: name, members: map[string]*MemberSeen{}}
		s.mirrors[name] = m
	}
	return m
}

// lookup validates the names of a message and returns the mirror's state and its canonical name.
func (s *Server) lookup(mirrorName, member string) (*mirror, error) {
	name, err := canonicalMirror(mirrorName)
	if err != nil {
		return nil, err
	}
	if err := validMember(member); err != nil {
		return nil, fmt.Errorf("mirror %s: %w", name, err)
	}
	return s.mirror(name), nil
}

// commit makes next the mirror's record, persisting it first when it changes. Called with m.mu held.
func (s *Server) commit(m *mirror, next record) error {
	if next == m.rec {
		return nil
	}
	if err := s.store.save(m.name, next); err != nil {
		return err
	}
	s.log.Info().Str("mirror", m.name).Uint64("epoch", next.Epoch).Str("primary", next.Primary).
		Uint64("backup_lost", next.BackupLost).Msg("recorded")
	m.rec = next
	return nil
}

// heard notes that member was heard from at now. Called with m.mu held.
func (m *mirror) heard(member string, now time.Time) *MemberSeen {
	seen := m.members[member]
	if seen == nil {
		seen = &MemberSeen{}
		m.members[member] = seen
	}
	seen.At = now
	return seen
}

// silence is how long the arbiter has not heard from member. A member not heard from since the arbiter started counts
// from the start: a restarted arbiter must not take the gap in its memory for a member's silence.
func (s *Server) silence(m *mirror, member string, now time.Time) time.Duration {
	if seen := m.members[member]; seen != nil {
		return now.Sub(seen.At)
	}
	return now.Sub(s.started)
}

// qos is the longest QoS timeout reported by any member of the mirror: silence is judged against the most patient one.
func (m *mirror) qos() time.Duration {
	var qos time.Duration
	for _, seen := range m.members {
		qos = max(qos, seen.Last.QoS)
	}
	return qos
}

// othersSilent explains why a member other than requester (or the recorded primary, heard from or not) cannot be
// considered gone, or returns "" when all of them have been silent for at least qos. A member for which harmless returns
// true does not count.
func (s *Server) othersSilent(m *mirror, requester string, qos time.Duration, now time.Time, harmless func(*MemberSeen) bool) string {
	others := make([]string, 0, len(m.members)+1)
	for name := range m.members {
		if name != requester {
			others = append(others, name)
		}
	}
	if p := m.rec.Primary; p != "" && p != requester && m.members[p] == nil {
		others = append(others, p)
	}
	slices.Sort(others)
	for _, name := range others {
		silent := s.silence(m, name, now)
		if silent >= qos || harmless != nil && m.members[name] != nil && harmless(m.members[name]) {
			continue
		}
		role := "member"
		if name == m.rec.Primary {
			role = "primary"
		}
		if m.members[name] == nil {
			return fmt.Sprintf("%s %s has not been heard from since the arbiter started %s ago, less than the QoS timeout %s",
				role, name, round(silent), qos)
		}
		return fmt.Sprintf("%s %s was heard from %s ago, less than the QoS timeout %s", role, name, round(silent), qos)
	}
	return ""
}

// epochRefusal explains why a request in epoch cannot be decided against the mirror's record, or returns "".
func (m *mirror) epochRefusal(epoch uint64) string {
	switch {
	case epoch < m.rec.Epoch:
		return fmt.Sprintf("epoch %d is older than the recorded %d", epoch, m.rec.Epoch)
	case epoch > m.rec.Epoch:
		return fmt.Sprintf("epoch %d is newer than the recorded %d; a member's report records a newer epoch", epoch, m.rec.Epoch)
	}
	return ""
}

// primaryRefusal explains why requester is not the primary of epoch (already checked to be the recorded epoch), or
// returns "": it must be the recorded primary, or, with none recorded, have reported being primary in epoch.
func (m *mirror) primaryRefusal(requester string, epoch uint64) string {
	if p := m.rec.Primary; p != "" {
		if p != requester {
			return fmt.Sprintf("member %s is not the primary in epoch %d; %s is", requester, epoch, p)
		}
		return ""
	}
	if seen := m.members[requester]; seen == nil || !seen.Last.Primary || seen.Last.Epoch != epoch {
		return fmt.Sprintf("member %s did not report being the primary in epoch %d", requester, epoch)
	}
	return ""
}

// report records a member's report and answers the arbiter's view. A report of an epoch newer than the record is
// recorded (persisted first): epochs also change without the arbiter (planned failover, agent-controlled takeover,
// an operator's force), and the arbiter must decide in the mirror's current epoch. Likewise a member reporting
// primary in the recorded epoch, with no primary recorded, is recorded as its primary.
func (s *Server) report(r Report) (View, error) {
	m, err := s.lookup(r.Mirror, r.Member)
	if err != nil {
		return View{}, err
	}
	r.Mirror = m.name
	if r.QoS <= 0 {
		return View{}, badRequest("mirror %s: report from member %s: QoS timeout %s is not positive", m.name, r.Member, r.QoS)
	}
	if r.Primary && r.ActiveBackup {
		return View{}, badRequest("mirror %s: member %s reports being both primary and active backup", m.name, r.Member)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := s.now()
	m.heard(r.Member, now).Last = r
	next := m.rec
	switch {
	case r.Epoch > next.Epoch:
		next.Epoch, next.Primary = r.Epoch, ""
		if r.Primary {
			next.Primary = r.Member
		}
	case r.Epoch == next.Epoch && r.Primary && next.Primary == "":
		next.Primary = r.Member
	case r.Epoch == next.Epoch && r.Primary && next.Primary != r.Member:
		s.log.Warn().Str("mirror", m.name).Str("member", r.Member).Uint64("epoch", r.Epoch).Str("primary", next.Primary).
			Msg("member reports being primary in an epoch recorded for another member")
	}
	if err := s.commit(m, next); err != nil {
		return View{}, err
	}
	v := View{Epoch: m.rec.Epoch, Primary: m.rec.Primary, BackupLost: m.rec.BackupLost}
	var peer *MemberSeen
	for name, seen := range m.members {
		if name != r.Member && (peer == nil || seen.At.After(peer.At)) {
			peer = seen
		}
	}
	if peer != nil {
		v.PeerReport = peer.Last
		v.PeerAge = now.Sub(peer.At)
		v.PeerSeen = v.PeerAge < max(r.QoS, peer.Last.QoS)
	}
	return v, nil
}

// takeover decides whether the backup r.Member becomes primary in r.NewEpoch. It is granted only when the recorded
// epoch is r.Epoch, the requester last reported being the Active backup in it, the arbiter has not let the primary
// continue without its backup in it, and every other member (the primary of r.Epoch above all) has been silent for at
// least the QoS timeout. A primary that still reports keeps the role, whatever it says about its backup.
func (s *Server) takeover(r TakeoverRequest) (Decision, error) {
	m, err := s.lookup(r.Mirror, r.Member)
	if err != nil {
		return Decision{}, err
	}
	if r.NewEpoch != r.Epoch+1 {
		return Decision{}, badRequest("mirror %s: takeover by member %s: new epoch %d is not epoch %d + 1", m.name, r.Member, r.NewEpoch, r.Epoch)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := s.now()
	// The requester is heard from only after the decision: two members racing must each be judged on the other's silence
	// before this request, and whichever goes second sees the first one's epoch anyway.
	defer m.heard(r.Member, now)
	if reason := s.takeoverRefusal(m, r, now); reason != "" {
		return s.refuse(m, "takeover", r.Member, reason), nil
	}
	if err := s.commit(m, record{Epoch: r.NewEpoch, Primary: r.Member}); err != nil {
		return Decision{}, err
	}
	return s.grant(m, "takeover", r.Member), nil
}

func (s *Server) takeoverRefusal(m *mirror, r TakeoverRequest, now time.Time) string {
	if reason := m.epochRefusal(r.Epoch); reason != "" {
		return reason
	}
	if r.Member == m.rec.Primary {
		return fmt.Sprintf("member %s is already the primary in epoch %d", r.Member, r.Epoch)
	}
	seen := m.members[r.Member]
	if seen == nil || !seen.reported() || !seen.Last.ActiveBackup || seen.Last.Epoch != r.Epoch {
		return fmt.Sprintf("member %s did not report being the active backup in epoch %d", r.Member, r.Epoch)
	}
	if m.rec.BackupLost == r.Epoch {
		return fmt.Sprintf("the primary %s was allowed to continue without its backup in epoch %d, so member %s is no longer the active backup",
			m.rec.Primary, r.Epoch, r.Member)
	}
	return s.othersSilent(m, r.Member, m.qos(), now, nil)
}

// continueWithout decides whether the primary r.Member continues without its backup in r.Epoch: granted only when the
// recorded epoch is r.Epoch, the requester is its primary and every other member has been silent for at least the QoS
// timeout or last reported being neither primary nor the Active backup. The grant records that the backup is no longer active in r.Epoch, so its takeover in r.Epoch is refused.
func (s *Server) continueWithout(r ContinueRequest) (Decision, error) {
	m, err := s.lookup(r.Mirror, r.Member)
	if err != nil {
		return Decision{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := s.now()
	defer m.heard(r.Member, now)
	reason := m.epochRefusal(r.Epoch)
	if reason == "" {
		reason = m.primaryRefusal(r.Member, r.Epoch)
	}
	if seen := m.members[r.Member]; reason == "" && (seen == nil || !seen.reported()) {
		reason = fmt.Sprintf("member %s has not reported since the arbiter started, so its QoS timeout is unknown", r.Member)
	}
	if reason == "" {
		// A member whose latest report (within the QoS timeout, or it would be silent) says it is neither primary nor the
		// Active backup in this epoch cannot take over in it: the backup confirmed it is no longer active.
		notActive := func(seen *MemberSeen) bool {
			return seen.reported() && seen.Last.Epoch <= r.Epoch && !seen.Last.Primary && !seen.Last.ActiveBackup
		}
		reason = s.othersSilent(m, r.Member, m.qos(), now, notActive)
	}
	if reason != "" {
		return s.refuse(m, "continue without backup", r.Member, reason), nil
	}
	if err := s.commit(m, record{Epoch: r.Epoch, Primary: r.Member, BackupLost: r.Epoch}); err != nil {
		return Decision{}, err
	}
	return s.grant(m, "continue without backup", r.Member), nil
}

// rejoined records that the backup of the primary r.Member is Active again in r.Epoch, so it may take over again.
func (s *Server) rejoined(r RejoinedRequest) (Decision, error) {
	m, err := s.lookup(r.Mirror, r.Member)
	if err != nil {
		return Decision{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.heard(r.Member, s.now())
	reason := m.epochRefusal(r.Epoch)
	if reason == "" {
		reason = m.primaryRefusal(r.Member, r.Epoch)
	}
	if reason != "" {
		return s.refuse(m, "backup rejoined", r.Member, reason), nil
	}
	next := record{Epoch: r.Epoch, Primary: r.Member, BackupLost: m.rec.BackupLost}
	if next.BackupLost == r.Epoch {
		next.BackupLost = 0
	}
	if err := s.commit(m, next); err != nil {
		return Decision{}, err
	}
	return s.grant(m, "backup rejoined", r.Member), nil
}

func (s *Server) grant(m *mirror, what, member string) Decision {
	s.log.Info().Str("mirror", m.name).Str("member", member).Uint64("epoch", m.rec.Epoch).Msg(what + " granted")
	return Decision{Granted: true, Epoch: m.rec.Epoch, Primary: m.rec.Primary}
}

func (s *Server) refuse(m *mirror, what, member, reason string) Decision {
	s.log.Info().Str("mirror", m.name).Str("member", member).Uint64("epoch", m.rec.Epoch).Str("reason", reason).
		Msg(what + " refused")
	return Decision{Epoch: m.rec.Epoch, Primary: m.rec.Primary, Reason: reason}
}

// state returns a copy of the mirror's state.
func (m *mirror) state() MirrorState {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := MirrorState{Epoch: m.rec.Epoch, Primary: m.rec.Primary, BackupLost: m.rec.BackupLost, Members: map[string]MemberSeen{}}
	for name, seen := range m.members {
		st.Members[name] = *seen
	}
	return st
}

func badRequest(format string, args ...any) error {
	return &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

// round shortens a duration for a sentence.
func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
