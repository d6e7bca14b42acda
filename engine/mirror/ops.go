package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/version"
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
	admin, err := AdminAddrOf(ctx, primaryAddr)
	if err != nil {
		return nil, err
	}
	var cfg Config
	req := JoinRequest{Member: MemberConfig{Name: m.opts.Self, Addr: m.opts.Addr, AdminAddr: m.opts.AdminAddr, Type: t}}
	if err := postJSON(ctx, "http://"+admin+"/api/v1/mirrors/"+canon+"/members", req, &cfg); err != nil {
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

// AdminAddrOf asks a member's data port for its admin address.
func AdminAddrOf(ctx context.Context, dataAddr string) (string, error) {
	nc, err := wire.Dial(ctx, dataAddr, nil)
	if err != nil {
		return "", fmt.Errorf("member at %s: %w", dataAddr, err)
	}
	c := wire.NewConn(nc, wire.DefaultMaxFrame)
	defer c.Close()
	w, err := wire.ClientHandshake(ctx, c, wire.Hello{Software: version.Software, Purpose: wire.PurposeAdmin, Name: "mirror"})
	if err != nil {
		return "", fmt.Errorf("member at %s: %w", dataAddr, err)
	}
	return w.AdminAddr, nil
}

// APIError is an error answer of a member's admin API.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

func postJSON(ctx context.Context, url string, body, out any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			return &APIError{Status: resp.StatusCode, Message: eb.Error}
		}
		return &APIError{Status: resp.StatusCode, Message: resp.Status}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// AddMember adds a member to the mirror (on the primary) and pushes the new configuration to everyone.
func (mir *Mirror) AddMember(mc MemberConfig) (Config, error) {
	if _, err := ParseMemberType(string(mc.Type)); err != nil {
		return Config{}, err
	}
	err := mir.update(func(st *localState) error {
		if mir.role != RolePrimary {
			return fmt.Errorf("member %s is not the primary of mirror %s; join at the primary %s", mir.mgr.opts.Self, mir.name, st.Config.Primary)
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
	mir.broadcastConfig()
	return mir.Config(), nil
}

// CreateDatabase creates a mirrored database: on the primary it is created empty with a journal marker and added to the
// mirror; on another member it is created at the marker's position in this member's copy of the journal and catches up.
func (m *Manager) CreateDatabase(name, mirror string) (store.Info, error) {
	mir, err := m.Mirror(mirror)
	if err != nil {
		return store.Info{}, err
	}
	canon, err := store.CanonicalDatabaseName(name)
	if err != nil {
		return store.Info{}, err
	}
	cfg := mir.Config()
	if mir.Role() == RolePrimary {
		info, err := m.store.CreateWith(canon, store.CreateOptions{Mirror: mir.name, Marker: true})
		if err != nil {
			return store.Info{}, err
		}
		err = mir.update(func(st *localState) error {
			if !slices.Contains(st.Config.Databases, canon) {
				st.Config.Databases = append(st.Config.Databases, canon)
			}
			st.Config.Removed = slices.DeleteFunc(st.Config.Removed, func(s string) bool { return s == canon })
			st.Config.Version++
			return nil
		})
		if err != nil {
			return store.Info{}, err
		}
		mir.broadcastConfig()
		return info, nil
	}
	if !slices.Contains(cfg.Databases, canon) {
		return store.Info{}, fmt.Errorf("database %s is not in mirror %s: create it on the primary %s first", canon, mir.name, cfg.Primary)
	}
	start, err := mir.findCreateMarker(canon)
	if err != nil {
		return store.Info{}, err
	}
	info, err := m.store.CreateWith(canon, store.CreateOptions{Mirror: mir.name, Start: start})
	if err != nil {
		return store.Info{}, err
	}
	if d, err := m.store.Database(canon); err == nil {
		mir.mu.Lock()
		if mir.dj != nil {
			mir.dj.AddTarget(d)
		}
		mir.mu.Unlock()
	}
	return info, nil
}

// findCreateMarker returns the position just after the newest create marker of db in this member's journal copy.
func (mir *Mirror) findCreateMarker(db string) (journal.Position, error) {
	end := mir.jrn.DurableEnd()
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

// SetNoFailover sets or clears the no-failover flag.
func (mir *Mirror) SetNoFailover(on bool) error {
	return mir.update(func(st *localState) error {
		st.NoFailover = on
		return nil
	})
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

// errNotPrimary reports whether err is a not-primary refusal.
func errNotPrimary(err error) bool {
	var we *wire.Error
	return errors.As(err, &we) && we.Code == wire.CodeNotPrimary
}

// RemoveDatabase takes a database out of the mirror on this member. On the primary this is permanent for the mirror (the
// other members then show their copies as Obsolete); anywhere, the local copy becomes a local, non-mirrored database.
func (m *Manager) RemoveDatabase(name, mirror string) error {
	mir, err := m.Mirror(mirror)
	if err != nil {
		return err
	}
	canon, err := store.CanonicalDatabaseName(name)
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
