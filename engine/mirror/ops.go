package mirror

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/dejournal"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// JoinRequest is what a joining member sends to the primary's admin API.
type JoinRequest struct {
	Member MemberConfig `json:"member"`
}

// Join makes this member a member of type t of the mirror whose primary listens on primaryAddr (a data address).
func (m *Manager) Join(ctx context.Context, name, primaryAddr string, t MemberType) (*Mirror, error) {
	canon, err := CanonicalMirrorName(name)
	if err != nil {
		return nil, err
	}
	if _, err := m.Mirror(canon); err == nil {
		return nil, fmt.Errorf("member %s is already in mirror %s: %w", m.opts.Self, canon, wire.ErrExists)
	}
	if err := m.checkMembership(Config{Name: canon}, t); err != nil {
		return nil, err
	}
	admin, err := m.AdminAddrOf(ctx, primaryAddr)
	if err != nil {
		return nil, err
	}
	var cfg Config
	req := JoinRequest{Member: MemberConfig{Name: m.opts.Self, Addr: m.opts.Addr, AdminAddr: m.opts.AdminAddr, Type: t, AgentAddr: m.opts.AgentAddr}}
	if err := m.PostJSON(ctx, admin, "/api/v1/mirrors/"+canon+"/members", req, &cfg); err != nil {
		return nil, fmt.Errorf("join mirror %s at %s: %w", canon, primaryAddr, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("join mirror %s: the primary sent an invalid configuration: %w", canon, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mir, err := m.newMirror(localState{Config: cfg})
	if err != nil {
		return nil, err
	}
	m.mirrors[canon] = mir
	m.store.AttachMirror(canon, mir.attachment())
	mir.start()
	m.log.Info().Str("mirror", canon).Str("type", string(t)).Str("primary", cfg.Primary).Msg("joined mirror")
	return mir, nil
}

// ErrPending is returned while a member's certificate awaits authorization on the primary of a TLS mirror.
var ErrPending = errors.New("pending authorization")

// AddMember adds a member to the mirror (on the primary) and pushes the new configuration to everyone. dn is the verified
// certificate DN the request came with; in a mirror that requires TLS an unauthorized DN only makes the member pending.
func (mir *Mirror) AddMember(mc MemberConfig, dn string) (Config, error) {
	if _, err := ParseMemberType(string(mc.Type)); err != nil {
		return Config{}, err
	}
	pending := false
	err := mir.update(func(st *localState) error {
		if mir.role != RolePrimary {
			return fmt.Errorf("member %s is not the primary of mirror %s; join at the primary %s", mir.mgr.opts.Self, mir.name, st.Config.Primary)
		}
		if st.Config.RequireTLS {
			if dn == "" {
				return fmt.Errorf("mirror %s requires TLS: member %s must join over TLS with a certificate", mir.name, mc.Name)
			}
			if !slices.Contains(st.Config.Authorized, dn) {
				pending = true
				st.Config.Pending = addPending(st.Config.Pending, PendingMember{Member: mc, DN: dn, Since: mir.mgr.opts.Now().UTC()})
				return nil
			}
			mc.DN = dn
		}
		if old, ok := st.Config.Member(mc.Name); ok {
			if old.Type != mc.Type {
				return fmt.Errorf("member %s is already in mirror %s as %s", mc.Name, mir.name, old.Type)
			}
			return nil
		}
		st.Config.Members = append(st.Config.Members, mc)
		st.Config.Version++
		return st.Config.Validate()
	})
	if err != nil {
		return Config{}, err
	}
	if pending {
		return Config{}, fmt.Errorf("member %s (certificate %q) is pending authorization on the primary %s of mirror %s: run `member mirror authorize %s --dn '%s' --member %s` there, then join again: %w",
			mc.Name, dn, mir.mgr.opts.Self, mir.name, mir.name, dn, mir.mgr.opts.Addr, ErrPending)
	}
	mir.broadcastConfig()
	return mir.Config(), nil
}

func addPending(list []PendingMember, p PendingMember) []PendingMember {
	for i, q := range list {
		if q.Member.Name == p.Member.Name {
			list[i] = p
			return list
		}
	}
	return append(list, p)
}

// Authorize authorizes a certificate DN on the primary: a pending member with it may join, and a member whose certificate
// changed to it may stream again.
func (mir *Mirror) Authorize(dn string) (Config, error) {
	err := mir.update(func(st *localState) error {
		if mir.role != RolePrimary {
			return fmt.Errorf("member %s is not the primary of mirror %s; authorize on the primary %s", mir.mgr.opts.Self, mir.name, st.Config.Primary)
		}
		if !st.Config.RequireTLS {
			return fmt.Errorf("mirror %s does not require TLS; there is nothing to authorize", mir.name)
		}
		found := false
		st.Config.Pending = slices.DeleteFunc(st.Config.Pending, func(p PendingMember) bool {
			if p.DN != dn {
				return false
			}
			found = true
			for i := range st.Config.Members {
				if st.Config.Members[i].Name == p.Member.Name {
					st.Config.Members[i].DN = dn // a re-authorized certificate change
				}
			}
			return true
		})
		if !found && !slices.Contains(st.Config.Authorized, dn) {
			return fmt.Errorf("no member of mirror %s is pending with certificate %q (see member mirror pending)", mir.name, dn)
		}
		if !slices.Contains(st.Config.Authorized, dn) {
			st.Config.Authorized = append(st.Config.Authorized, dn)
		}
		st.Config.Version++
		return nil
	})
	if err != nil {
		return Config{}, err
	}
	mir.broadcastConfig()
	return mir.Config(), nil
}

// checkPeerDN refuses a stream whose certificate is not the one authorized for the member, and makes the member pending.
func (mir *Mirror) checkPeerDN(mc MemberConfig, dn string) error {
	mir.mu.Lock()
	requireTLS := mir.st.Config.RequireTLS
	mir.mu.Unlock()
	if !requireTLS || (dn != "" && dn == mc.DN) {
		return nil
	}
	if dn == "" {
		return fmt.Errorf("mirror %s requires TLS; member %s connected without it", mir.name, mc.Name)
	}
	if err := mir.update(func(st *localState) error {
		st.Config.Pending = addPending(st.Config.Pending, PendingMember{Member: mc, DN: dn, Since: mir.mgr.opts.Now().UTC()})
		return nil
	}); err != nil {
		return err
	}
	return fmt.Errorf("member %s presents certificate %q, not the one authorized in mirror %s (%q); authorize the new certificate on the primary: member mirror authorize %s --dn '%s'",
		mc.Name, dn, mir.name, mc.DN, mir.name, dn)
}

// mirrorAndDatabase resolves a mirror of this member and a database name in its canonical form.
func (m *Manager) mirrorAndDatabase(mirror, name string) (*Mirror, string, error) {
	mir, err := m.Mirror(mirror)
	if err != nil {
		return nil, "", err
	}
	canon, err := store.CanonicalDatabaseName(name)
	if err != nil {
		return nil, "", err
	}
	return mir, canon, nil
}

// CreateDatabase creates a mirrored database: on the primary it is created empty with a journal marker and added to the
// mirror; on another member it is created at the marker's position in this member's copy of the journal and catches up.
func (m *Manager) CreateDatabase(name, mirror string) (store.Info, error) {
	mir, canon, err := m.mirrorAndDatabase(mirror, name)
	if err != nil {
		return store.Info{}, err
	}
	cfg := mir.Config()
	if mir.Role() == RolePrimary {
		info, err := m.store.CreateWith(canon, store.CreateOptions{Mirror: mir.name, Marker: true})
		if err != nil {
			return store.Info{}, err
		}
		if err := mir.recordDatabase(canon, info.Applied, false); err != nil {
			return store.Info{}, err
		}
		mir.broadcastConfig()
		return info, nil
	}
	if !mir.waitForDatabase(canon) {
		return store.Info{}, fmt.Errorf("database %s is not in mirror %s: create it on the primary %s first", canon, mir.name, cfg.Primary)
	}
	if !mir.Config().Added[canon].IsZero() {
		return store.Info{}, fmt.Errorf("database %s of mirror %s: %w", canon, mir.name, ErrNeedsCopy)
	}
	// The configuration says where the database starts; the marker there may still be on its way: wait a little for it.
	deadline := time.Now().Add(cfg.QoS.Duration)
	start, err := mir.findCreateMarker(canon, mir.Config().Created[canon])
	for err != nil && time.Now().Before(deadline) {
		select {
		case <-mir.jrn.DurableNotify():
		case <-time.After(time.Until(deadline)):
		}
		start, err = mir.findCreateMarker(canon, mir.Config().Created[canon])
	}
	if err != nil {
		return store.Info{}, err
	}
	info, err := m.store.CreateWith(canon, store.CreateOptions{Mirror: mir.name, Start: start})
	if err != nil {
		return store.Info{}, err
	}
	if d, err := m.store.Database(canon); err == nil {
		mir.track(d)
	}
	return info, nil
}

// waitForDatabase reports whether db is a mirrored database of the mirror, waiting up to the QoS timeout for the primary's
// configuration to arrive (a database created on the primary a moment ago).
func (mir *Mirror) waitForDatabase(db string) bool {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	deadline := time.Now().Add(mir.st.Config.QoS.Duration)
	for !slices.Contains(mir.st.Config.Databases, db) {
		left := time.Until(deadline)
		if left <= 0 || !mir.waitLocked(context.Background(), left) && time.Now().After(deadline) {
			return slices.Contains(mir.st.Config.Databases, db)
		}
	}
	return true
}

// findCreateMarker returns the position just after the newest create marker of db in this member's journal copy. When the
// configuration gives that position (known), only the journal from there on is checked: the marker must have been received.
func (mir *Mirror) findCreateMarker(db string, known journal.Position) (journal.Position, error) {
	end := mir.jrn.DurableEnd()
	if !known.IsZero() {
		if end.Less(known) {
			return journal.Position{}, fmt.Errorf("the creation of database %s (at %s) has not reached this member's copy of the mirror %s journal yet (it ends at %s)", db, known, mir.name, end)
		}
		if known.Less(mir.jrn.FirstPosition()) {
			return journal.Position{}, fmt.Errorf("the creation of database %s (at %s) is purged from this member's copy of the mirror %s journal (it starts at %s): activate a copy of the database instead (db activate)", db, known, mir.name, mir.jrn.FirstPosition())
		}
		return known, nil
	}
	r, err := mir.jrn.NewReader(journal.Position{})
	if err != nil {
		return journal.Position{}, err
	}
	defer r.Close()
	var found journal.Position
	for r.Position().Less(end) {
		rec, err := r.Next(context.Background())
		if err != nil {
			return journal.Position{}, err
		}
		if rec.Type == journal.RecordMarker && rec.DB == db && string(rec.Key) == store.MarkerCreate {
			found = r.Position()
		}
	}
	if found.IsZero() {
		return journal.Position{}, fmt.Errorf("the creation of database %s is not in this member's copy of the mirror %s journal (%s to %s); wait until it has caught up, or restore a copy from a backup if the primary purged it",
			db, mir.name, mir.jrn.FirstPosition(), end)
	}
	return found, nil
}

// SetNoFailover sets or clears the no-failover flag. On the primary it returns once the connected backup has confirmed the
// flag, so a failure right after it is honoured.
func (mir *Mirror) SetNoFailover(on bool) error {
	if err := mir.update(func(st *localState) error {
		st.NoFailover = on
		return nil
	}); err != nil {
		return err
	}
	mir.mu.Lock()
	defer mir.mu.Unlock()
	r := mir.backupLocked()
	if mir.role != RolePrimary || r == nil {
		return nil
	}
	flags := mir.stateFlagsLocked(r)
	r.told, r.toldAt = flags, mir.mgr.opts.Now()
	s := wire.MirrorState{Epoch: mir.st.Config.Epoch, Flags: flags, SentUnixNano: r.noteSentLocked(time.Now())}
	if err := r.conn.WriteFrame(wire.Frame{Kind: wire.KindMirrorState, Payload: wire.EncodeMirrorState(nil, &s)}); err != nil {
		return fmt.Errorf("mirror %s: no-failover is %v here, but telling the backup %s failed: %w", mir.name, on, r.name, err)
	}
	deadline := time.Now().Add(mir.st.Config.QoS.Duration)
	for r.echo&wire.StateNoFailover != flags&wire.StateNoFailover {
		left := time.Until(deadline)
		if left <= 0 || r.ended() {
			return fmt.Errorf("mirror %s: no-failover is %v here, but the backup %s did not confirm it within the QoS timeout", mir.name, on, r.name)
		}
		mir.waitLocked(context.Background(), left)
	}
	return nil
}

// Settings are the mirror-wide settings an operator changes on the primary; nil fields are left as they are.
type Settings struct {
	QoS     *Duration `json:"qos,omitempty"`
	Arbiter *string   `json:"arbiter,omitempty"` // "" removes the arbiter
}

// Set changes mirror-wide settings on the primary and pushes the new configuration to every member.
func (mir *Mirror) Set(s Settings) error {
	if s.QoS != nil && s.QoS.Duration < 200*time.Millisecond {
		return fmt.Errorf("QoS timeout %s is below the minimum of 200ms: %w", s.QoS.Duration, wire.ErrBadRequest)
	}
	if s.Arbiter != nil && *s.Arbiter != "" {
		if _, _, err := net.SplitHostPort(*s.Arbiter); err != nil {
			return fmt.Errorf("arbiter address %q: want host:port: %v: %w", *s.Arbiter, err, wire.ErrBadRequest)
		}
	}
	err := mir.update(func(st *localState) error {
		if mir.role != RolePrimary {
			return fmt.Errorf("member %s is not the primary of mirror %s; change its settings on the primary %s", mir.mgr.opts.Self, mir.name, st.Config.Primary)
		}
		if s.QoS != nil {
			st.Config.QoS = *s.QoS
		}
		if s.Arbiter != nil {
			st.Config.Arbiter = *s.Arbiter
		}
		st.Config.Version++
		return nil
	})
	if err != nil {
		return err
	}
	mir.broadcastConfig()
	mir.mu.Lock()
	mir.fo.kickNow()
	mir.mu.Unlock()
	mir.kickReport()
	return nil
}

// PauseDejournal pauses (or resumes) dejournaling of one database, or of the whole mirror when db is "".
func (mir *Mirror) PauseDejournal(db string, pause bool) error {
	if mir.Role() == RolePrimary {
		return fmt.Errorf("member %s is the primary of mirror %s: there is no dejournaling to pause", mir.mgr.opts.Self, mir.name)
	}
	if db != "" {
		canon, err := store.CanonicalDatabaseName(db)
		if err != nil {
			return err
		}
		db = canon
	}
	err := mir.update(func(st *localState) error {
		if db == "" {
			st.DejournalPaused = pause
			return nil
		}
		st.PausedDatabases = slices.DeleteFunc(st.PausedDatabases, func(s string) bool { return s == db })
		if pause {
			st.PausedDatabases = append(st.PausedDatabases, db)
		}
		return nil
	})
	if err != nil {
		return err
	}
	mir.mu.Lock()
	dj := mir.dj
	mir.mu.Unlock()
	if dj == nil {
		return nil
	}
	switch {
	case db == "" && pause:
		dj.PauseAll()
	case db == "":
		dj.ResumeAll()
	case pause:
		return dj.Pause(db)
	default:
		return dj.Resume(db)
	}
	return nil
}

// SetMirroring stops or starts mirroring on a backup or async; the setting survives restarts.
func (mir *Mirror) SetMirroring(run bool) error {
	if mir.Role() == RolePrimary {
		return fmt.Errorf("member %s is the primary of mirror %s; stop mirroring on a backup or async", mir.mgr.opts.Self, mir.name)
	}
	if err := mir.update(func(st *localState) error {
		st.MirroringStopped = !run
		return nil
	}); err != nil {
		return err
	}
	mir.stop()
	mir.start()
	return nil
}

// RemoveDatabase takes a database out of the mirror on this member. On the primary this is permanent for the mirror (the
// other members then show their copies as Obsolete); anywhere, the local copy becomes a local, non-mirrored database.
func (m *Manager) RemoveDatabase(name, mirror string) error {
	mir, canon, err := m.mirrorAndDatabase(mirror, name)
	if err != nil {
		return err
	}
	info, err := m.store.Get(canon)
	if err != nil {
		return err
	}
	if info.Mirror != mir.name {
		return fmt.Errorf("database %s is not in mirror %s on member %s", canon, mir.name, m.opts.Self)
	}
	if mir.Role() == RolePrimary {
		if err := mir.update(func(st *localState) error {
			st.Config.Databases = slices.DeleteFunc(st.Config.Databases, func(s string) bool { return s == canon })
			if !slices.Contains(st.Config.Removed, canon) {
				st.Config.Removed = append(st.Config.Removed, canon)
			}
			st.Config.Version++
			return nil
		}); err != nil {
			return err
		}
		mir.broadcastConfig()
	}
	mir.mu.Lock()
	dj := mir.dj
	mir.mu.Unlock()
	if dj != nil {
		dj.RemoveTarget(canon)
	}
	return m.store.Detach(canon)
}

// Catchup brings a mirrored database copy back into dejournaling: one paused by an operator or an error resumes; one that
// dejournaling does not track (mounted again after a dismount) is added and catches up from its own applied position.
func (mir *Mirror) Catchup(db string) error {
	canon, err := store.CanonicalDatabaseName(db)
	if err != nil {
		return err
	}
	if err := mir.PauseDejournal(canon, false); err == nil || !errors.Is(err, dejournal.ErrUnknownDatabase) {
		return err
	}
	d, err := mir.mgr.store.Database(canon)
	if err != nil {
		return err
	}
	if d.Mirror() != mir.name {
		return fmt.Errorf("database %s is not in mirror %s", canon, mir.name)
	}
	if !mir.track(d) {
		return fmt.Errorf("mirror %s is not dejournaling on member %s (it is the primary, or mirroring is stopped)", mir.name, mir.mgr.opts.Self)
	}
	return nil
}

// ReleaseDatabase stops dejournaling into a mirrored database copy before it is dismounted; after it is mounted again,
// Catchup brings it back.
func (m *Manager) ReleaseDatabase(db, mirror string) {
	mir, err := m.Mirror(mirror)
	if err != nil {
		return
	}
	mir.mu.Lock()
	dj := mir.dj
	mir.mu.Unlock()
	if dj != nil {
		dj.RemoveTarget(db)
	}
}

// Activate brings a copy of a mirrored database into this member: a copy of its files taken from another member (while
// dismounted there) and placed in this member's database directory. The copy is activated at the journal position it had
// applied and catches up from the mirror journal; if this member's copy of the journal no longer reaches back there, the
// copy is refused: take a newer one.
func (m *Manager) Activate(name, mirror string) (store.Info, error) {
	mir, canon, err := m.mirrorAndDatabase(mirror, name)
	if err != nil {
		return store.Info{}, err
	}
	if mir.Role() == RolePrimary {
		return store.Info{}, fmt.Errorf("member %s is the primary of mirror %s: its databases are the originals; activate copies on the other members", m.opts.Self, mir.name)
	}
	if !mir.waitForDatabase(canon) {
		return store.Info{}, fmt.Errorf("database %s is not in mirror %s: add it on the primary %s first", canon, mir.name, mir.Config().Primary)
	}
	check := func(applied journal.Position) error {
		if mir.jrn.Purged(applied) {
			first := mir.jrn.FirstPosition()
			return fmt.Errorf("the copy of %s has applied the mirror journal up to %s, but this member's copy of the journal starts at %s: the records in between are purged; take a newer backup or copy",
				canon, applied, first)
		}
		return nil
	}
	info, err := m.store.Adopt(canon, mir.name, check)
	if err != nil {
		return store.Info{}, err
	}
	if d, err := m.store.Database(canon); err == nil {
		mir.track(d)
	}
	return info, nil
}

// track adds a database copy to dejournaling, if this member is dejournaling the mirror; it reports whether it did.
func (mir *Mirror) track(d *store.Database) bool {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	if mir.dj == nil {
		return false
	}
	mir.dj.AddTarget(d)
	return true
}
