package shadow

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/atomicfile"
)

// States of a shadow.
const (
	Processing = "Processing"
	Suspended  = "Suspended"
	Stopped    = "Stopped"
	Error      = "Error"
)

// What the operator asked a shadow to do; persisted, so a restarted member carries on.
const (
	wantRun     = "run"
	wantSuspend = "suspend"
	wantStop    = "stop"
)

// Mapping maps a source database to the destination database its journal records are applied to.
type Mapping struct {
	Source string `json:"source"`
	Dest   string `json:"dest"`
}

// Config is one shadow as configured on the destination.
type Config struct {
	Name    string           `json:"name"`
	Source  string           `json:"source"` // the source member's data address
	Start   journal.Position `json:"start"`  // where shadowing began
	Map     []Mapping        `json:"map"`
	Want    string           `json:"want"`
	Created time.Time        `json:"created"`
}

// CreateRequest is the body of POST /api/v1/shadows.
type CreateRequest struct {
	Name   string    `json:"name"`
	Source string    `json:"source"`
	Start  string    `json:"start"` // "now" or a position of the source's local journal
	Map    []Mapping `json:"map"`
}

// DBStatus is one mapped database.
type DBStatus struct {
	Source   string           `json:"source"`
	Dest     string           `json:"dest"`
	Applied  journal.Position `json:"applied,omitzero"` // the copy's checkpoint
	Modified bool             `json:"modified"`         // written on this member since shadowing began
	// ToMirror is where the copy joins a mirror, once it has applied the source's move of the database into it.
	ToMirror *store.ToMirror `json:"to_mirror,omitempty"`
	// Joined is the mirror the copy has joined (it is no longer applied by the shadow).
	Joined string `json:"joined,omitempty"`
	// Missing is set when the destination database is not mounted here.
	Missing bool `json:"missing,omitempty"`
}

// Status is a shadow's state.
type Status struct {
	Name         string           `json:"name"`
	Source       string           `json:"source"`
	SourceMember string           `json:"source_member,omitempty"`
	State        string           `json:"state"`
	Error        string           `json:"error,omitempty"` // why it is in Error, or the last connection error while it retries
	Connected    bool             `json:"connected"`
	Start        journal.Position `json:"start"`
	Checkpoint   journal.Position `json:"checkpoint"` // lowest applied position of the databases still shadowed
	SourceEnd    journal.Position `json:"source_end,omitzero"`
	// LatencySeconds is how far behind the source the shadow is in time; BytesBehind in journal bytes.
	LatencySeconds float64    `json:"latency_seconds"`
	BytesBehind    uint64     `json:"bytes_behind"`
	LastApplied    time.Time  `json:"last_applied,omitzero"` // source time of the newest applied record
	ReceivedBytes  uint64     `json:"received_bytes"`        // journal bytes received (uncompressed)
	WireBytes      uint64     `json:"wire_bytes"`            // bytes received on the wire
	Reconnects     int        `json:"reconnects"`
	Databases      []DBStatus `json:"databases"`
	Created        time.Time  `json:"created"`
}

// Options configure a Manager.
type Options struct {
	DataDir string // the shadows are kept in DataDir/shadows.json
	Self    string // this member's name
	Store   *store.Store
	Local   *journal.Journal // this member's local journal: what it serves as a source, and where local writes to copies go
	TLS     *tls.Config      // client side of mutual TLS to sources
	Logger  zerolog.Logger
	Now     func() time.Time
	// Retry bounds the wait between reconnection attempts (default 2s).
	Retry time.Duration
}

// Manager runs the shadows configured on this member and serves its local journal to shadows elsewhere.
type Manager struct {
	opts Options
	log  zerolog.Logger

	mu      sync.Mutex
	shadows map[string]*Shadow
	served  map[*served]struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Errors.
var (
	ErrNoSuchShadow = errors.New("no such shadow")
	errPermanent    = errors.New("the operator must act")
)

var nameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,31}$`)

// Load reads the configured shadows. Start runs them.
func Load(opts Options) (*Manager, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Retry <= 0 {
		opts.Retry = 2 * time.Second
	}
	m := &Manager{opts: opts, log: opts.Logger.With().Str("component", "shadow").Logger(), shadows: map[string]*Shadow{}, served: map[*served]struct{}{}}
	data, err := os.ReadFile(m.path())
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("shadows: %w", err)
	}
	var file struct {
		Version int      `json:"version"`
		Shadows []Config `json:"shadows"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("shadows: %s is damaged: %w", m.path(), err)
	}
	if file.Version != 1 {
		return nil, fmt.Errorf("shadows: %s has version %d, this member reads version 1", m.path(), file.Version)
	}
	for _, c := range file.Shadows {
		m.shadows[c.Name] = &Shadow{mgr: m, cfg: c, log: m.log.With().Str("shadow", c.Name).Logger()}
	}
	return m, nil
}

func (m *Manager) path() string { return filepath.Join(m.opts.DataDir, "shadows.json") }

// saveLocked persists every shadow's configuration.
func (m *Manager) saveLocked() error {
	file := struct {
		Version int      `json:"version"`
		Shadows []Config `json:"shadows"`
	}{Version: 1, Shadows: []Config{}}
	for _, sh := range m.shadows {
		file.Shadows = append(file.Shadows, sh.config())
	}
	slices.SortFunc(file.Shadows, func(a, b Config) int { return strings.Compare(a.Name, b.Name) })
	return atomicfile.WriteJSON(m.path(), file)
}

// Start attaches the shadowed databases to their shadows and runs the shadows the operator left running.
func (m *Manager) Start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ctx, m.cancel = context.WithCancel(context.Background())
	// Copies attached to a shadow that is not configured (a crash while one was created) go back to the local journal.
	for _, info := range m.opts.Store.List() {
		if name, ok := store.ShadowOf(info.Mirror); ok && m.shadows[name] == nil && info.Mounted {
			m.opts.Store.AttachMirror(info.Mirror, store.Attachment{Journal: m.opts.Local})
			if err := m.opts.Store.UnshadowDatabase(info.Name, name); err != nil {
				m.log.Error().Err(err).Str("db", info.Name).Str("shadow", name).Msg("copy of a shadow that does not exist")
				continue
			}
			m.log.Warn().Str("db", info.Name).Str("shadow", name).Msg("copy of a shadow that does not exist is a local database again")
		}
	}
	for _, sh := range m.shadows {
		m.opts.Store.AttachMirror(store.ShadowJournal(sh.cfg.Name), sh.attachment())
		if sh.cfg.Want == wantRun {
			sh.startLocked()
		}
	}
}

// Close stops every shadow and every stream served to other members.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.cancel != nil {
		m.cancel()
	}
	for s := range m.served {
		s.conn.Close()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func (m *Manager) get(name string) (*Shadow, error) {
	sh, ok := m.shadows[name]
	if !ok {
		return nil, fmt.Errorf("shadow %q is not configured on this member: %w", name, ErrNoSuchShadow)
	}
	return sh, nil
}

func badRequest(format string, args ...any) error {
	return &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

// Create configures a shadow: it resolves the start position against the source, creates the destination databases that
// do not exist yet and attaches every destination database to the shadow. The shadow is Stopped until started.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (Status, error) {
	if !nameRE.MatchString(req.Name) {
		return Status{}, &wire.Error{Code: wire.CodeInvalidName, Message: fmt.Sprintf("shadow name %q: use a letter, then up to 31 letters, digits, '-' or '_'", req.Name)}
	}
	if req.Source == "" {
		return Status{}, badRequest("shadow %s: the source's data address is needed (--source HOST:PORT)", req.Name)
	}
	if len(req.Map) == 0 {
		return Status{}, badRequest("shadow %s: map at least one database (--map SRC=DST)", req.Name)
	}
	mapping, err := canonicalMap(req.Map)
	if err != nil {
		return Status{}, err
	}
	m.mu.Lock()
	if _, ok := m.shadows[req.Name]; ok {
		m.mu.Unlock()
		return Status{}, &wire.Error{Code: wire.CodeExists, Message: fmt.Sprintf("shadow %s already exists on this member", req.Name)}
	}
	for _, other := range m.shadows {
		for _, mp := range other.cfg.Map {
			for _, want := range mapping {
				if mp.Dest == want.Dest {
					m.mu.Unlock()
					return Status{}, badRequest("database %s is already the destination of shadow %s", want.Dest, other.cfg.Name)
				}
			}
		}
	}
	m.mu.Unlock()
	for _, mp := range mapping {
		if info, err := m.opts.Store.Get(mp.Dest); err == nil && info.Mirror != "" {
			return Status{}, badRequest("database %s belongs to %s; a shadow can only write to local databases", mp.Dest, info.Mirror)
		} else if err == nil && !info.Mounted {
			return Status{}, badRequest("database %s is dismounted; mount it first", mp.Dest)
		}
	}
	var start journal.Position
	switch s := strings.TrimSpace(req.Start); s {
	case "", "now":
		probe, err := probeSource(ctx, req.Source, m.opts.TLS, m.opts.Self, req.Name)
		if err != nil {
			return Status{}, badRequest("shadow %s: ask the source %s for its journal end: %v", req.Name, req.Source, err)
		}
		start = probe
	default:
		if start, err = journal.ParsePosition(s); err != nil || start.IsZero() {
			return Status{}, badRequest("shadow %s: start %q: want now or a position of the source's local journal (EPOCH:SEGMENT:OFFSET)", req.Name, req.Start)
		}
	}
	sh := &Shadow{mgr: m, cfg: Config{Name: req.Name, Source: req.Source, Start: start, Map: mapping, Want: wantStop, Created: m.opts.Now().UTC()},
		log: m.log.With().Str("shadow", req.Name).Logger()}
	m.opts.Store.AttachMirror(store.ShadowJournal(req.Name), sh.attachment())
	// A failure half way gives the copies attached so far back to the local journal.
	undo := func() {
		for _, d := range m.opts.Store.ShadowedDatabases(req.Name) {
			_ = m.opts.Store.UnshadowDatabase(d.Name(), req.Name)
		}
	}
	for _, mp := range mapping {
		if _, err := m.opts.Store.Get(mp.Dest); errors.Is(err, wire.ErrNoSuchDatabase) {
			if _, err := m.opts.Store.Create(mp.Dest); err != nil {
				undo()
				return Status{}, fmt.Errorf("shadow %s: create database %s: %w", req.Name, mp.Dest, err)
			}
		}
		if err := m.opts.Store.ShadowDatabase(mp.Dest, req.Name, start, sh.attachment()); err != nil {
			undo()
			return Status{}, fmt.Errorf("shadow %s: %w", req.Name, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.shadows[req.Name] = sh
	if err := m.saveLocked(); err != nil {
		delete(m.shadows, req.Name)
		undo()
		return Status{}, err
	}
	sh.log.Info().Str("source", req.Source).Str("start", start.String()).Msg("shadow created")
	return sh.status(), nil
}

func canonicalMap(in []Mapping) ([]Mapping, error) {
	out := make([]Mapping, 0, len(in))
	srcs, dsts := map[string]bool{}, map[string]bool{}
	for _, mp := range in {
		src, err := store.CanonicalDatabaseName(mp.Source)
		if err != nil {
			return nil, badRequest("map %s=%s: %v", mp.Source, mp.Dest, err)
		}
		dst, err := store.CanonicalDatabaseName(mp.Dest)
		if err != nil {
			return nil, badRequest("map %s=%s: %v", mp.Source, mp.Dest, err)
		}
		if srcs[src] {
			return nil, badRequest("map: source database %s is mapped twice", src)
		}
		if dsts[dst] {
			return nil, badRequest("map: destination database %s is the target of two source databases", dst)
		}
		srcs[src], dsts[dst] = true, true
		out = append(out, Mapping{Source: src, Dest: dst})
	}
	return out, nil
}

// change applies an operator action to a shadow and persists what it wants.
func (m *Manager) change(name string, f func(sh *Shadow) error) (Status, error) {
	m.mu.Lock()
	sh, err := m.get(name)
	if err != nil {
		m.mu.Unlock()
		return Status{}, err
	}
	if err := f(sh); err != nil {
		m.mu.Unlock()
		return Status{}, err
	}
	if err := m.saveLocked(); err != nil {
		m.mu.Unlock()
		return Status{}, err
	}
	st := sh.status()
	m.mu.Unlock()
	return st, nil
}

// Start begins (or continues) processing from the checkpoint, or from a new position when from is set (only while stopped:
// every shadowed copy then restarts at it).
func (m *Manager) StartShadow(name string, from *journal.Position) (Status, error) {
	return m.change(name, func(sh *Shadow) error {
		if from != nil {
			if sh.running() {
				return badRequest("shadow %s is running; stop it before choosing a new start position", name)
			}
			for _, d := range m.opts.Store.ShadowedDatabases(name) {
				if err := m.opts.Store.UnshadowDatabase(d.Name(), name); err != nil {
					return err
				}
				if err := m.opts.Store.ShadowDatabase(d.Name(), name, *from, sh.attachment()); err != nil {
					return err
				}
			}
			sh.cfg.Start = *from
		}
		sh.cfg.Want = wantRun
		sh.startLocked()
		return nil
	})
}

// Suspend pauses a running shadow; Resume continues it.
func (m *Manager) Suspend(name string) (Status, error) {
	return m.change(name, func(sh *Shadow) error {
		if sh.cfg.Want != wantRun {
			return badRequest("shadow %s is not processing (it is %s)", name, sh.status().State)
		}
		sh.cfg.Want = wantSuspend
		sh.stopLocked()
		return nil
	})
}

// Resume continues a suspended shadow from its checkpoint.
func (m *Manager) Resume(name string) (Status, error) {
	return m.change(name, func(sh *Shadow) error {
		if sh.cfg.Want != wantSuspend {
			return badRequest("shadow %s is not suspended (it is %s); use start", name, sh.status().State)
		}
		sh.cfg.Want = wantRun
		sh.startLocked()
		return nil
	})
}

// Stop stops a shadow; its copies keep their checkpoints.
func (m *Manager) Stop(name string) (Status, error) {
	return m.change(name, func(sh *Shadow) error {
		sh.cfg.Want = wantStop
		sh.stopLocked()
		return nil
	})
}

// Restart stops a shadow and starts it again from its checkpoint (clearing an error).
func (m *Manager) Restart(name string) (Status, error) {
	return m.change(name, func(sh *Shadow) error {
		sh.stopLocked()
		sh.cfg.Want = wantRun
		sh.startLocked()
		return nil
	})
}

// Remove deletes a stopped shadow; the copies it still shadowed become plain local databases with the data they have.
func (m *Manager) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	sh, err := m.get(name)
	if err != nil {
		return err
	}
	if sh.cfg.Want != wantStop {
		return badRequest("shadow %s is %s; stop it first", name, sh.status().State)
	}
	for _, d := range m.opts.Store.ShadowedDatabases(name) {
		if err := m.opts.Store.UnshadowDatabase(d.Name(), name); err != nil {
			return err
		}
	}
	delete(m.shadows, name)
	if err := m.saveLocked(); err != nil {
		m.shadows[name] = sh
		return err
	}
	sh.log.Info().Msg("shadow removed")
	return nil
}

// Status returns one shadow's status.
func (m *Manager) Status(name string) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sh, err := m.get(name)
	if err != nil {
		return Status{}, err
	}
	return sh.status(), nil
}

// List returns every shadow's status, by name.
func (m *Manager) List() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.shadows))
	for _, sh := range m.shadows {
		out = append(out, sh.status())
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// JoinMirror turns the shadowed copy of a source database into a copy of the mirrored database at pos (the position the
// mirror recorded when the source added it), with no copying, after checking it against the primary's logical hash at that
// position when expect is given. The caller then activates it in the mirror.
func (m *Manager) JoinMirror(name, db, mirror string, pos journal.Position, expect *store.LogicalHash) (store.LogicalHash, error) {
	m.mu.Lock()
	sh, err := m.get(name)
	m.mu.Unlock()
	if err != nil {
		return store.LogicalHash{}, err
	}
	canon, err := store.CanonicalDatabaseName(db)
	if err != nil {
		return store.LogicalHash{}, err
	}
	var dest string
	for _, mp := range sh.cfg.Map {
		if mp.Source == canon {
			dest = mp.Dest
		}
	}
	if dest == "" {
		return store.LogicalHash{}, badRequest("shadow %s does not map database %s", name, canon)
	}
	if dest != canon {
		return store.LogicalHash{}, badRequest("shadow %s applies %s to %s: a copy joins a mirror under the name it has on the primary", name, canon, dest)
	}
	h, err := m.opts.Store.JoinMirrorAt(dest, name, mirror, pos, expect)
	if err != nil {
		return h, err
	}
	sh.log.Info().Str("db", dest).Str("mirror", mirror).Str("pos", pos.String()).Bool("verified", expect != nil).Msg("shadowed copy joined the mirror without a copy")
	return h, nil
}
