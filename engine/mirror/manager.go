package mirror

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/arbiter"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Options configure a Manager.
type Options struct {
	DataDir   string // mirrors live in DataDir/mirrors/<NAME>/ (state.json and journal/)
	Self      string // this member's name
	Addr      string // this member's data address, as other members dial it
	AdminAddr string // this member's admin address
	// Peers overrides how this member reaches other members' data ports (member name → host:port), e.g. through a proxy.
	Peers       map[string]string
	SegmentSize int64
	// Purge retention of mirror journals, and how often purges run (0: never).
	PurgePolicy   journal.PurgePolicy
	PurgeInterval time.Duration
	// TLS is the client side of this member's mutual TLS (nil: plain connections); SelfDN is its certificate's subject DN.
	TLS    *tls.Config
	SelfDN string
	// AgentAddr is the address of the agent supervising this member, recorded in the mirror configuration ("" for none).
	AgentAddr string
	// AgentToken and ArbiterToken are presented to agents and arbiters without TLS.
	AgentToken   string
	ArbiterToken string
	// ArbiterAddr overrides how this member reaches the mirror's arbiter, and Agents how it reaches other members'
	// agents (member name → host:port), e.g. through a proxy.
	ArbiterAddr string
	Agents      map[string]string
	// RollbackLimit is the most journal bytes a divergent tail may hold for this member to roll it back itself (0: 64 MiB);
	// beyond it the member refuses and must be rebuilt.
	RollbackLimit int64
	// LocalJournal takes a read-write reporting async's own writes to mirrored databases.
	LocalJournal store.Journal
	Logger       zerolog.Logger
	Now          func() time.Time
}

// Manager is every mirror of one member.
type Manager struct {
	opts  Options
	log   zerolog.Logger
	store *store.Store

	ackLatency prometheus.Histogram
	httpOnce   sync.Once
	http       *http.Client
	streamOnce sync.Once
	stream     *http.Client

	mu       sync.Mutex
	mirrors  map[string]*Mirror
	arbiters map[string]*arbiter.Client // by address, shared by the mirrors
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	snaps snapshots // database snapshots handed out to other members and tools
}

// Load reads every mirror this member belongs to and opens its copy of each mirror journal. The store is opened next with
// Attachments, then Start brings the mirrors up.
func Load(opts Options) (*Manager, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{opts: opts, log: opts.Logger.With().Str("component", "mirror").Logger(), mirrors: map[string]*Mirror{}, arbiters: map[string]*arbiter.Client{}, ctx: ctx, cancel: cancel,
		ackLatency: newAckLatency()}
	entries, err := os.ReadDir(m.root())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("mirrors: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		st, err := loadState(filepath.Join(m.root(), e.Name()))
		if err != nil {
			m.closeJournals()
			return nil, err
		}
		mir, err := m.openMirror(st)
		if err != nil {
			m.closeJournals()
			return nil, err
		}
		m.mirrors[st.Config.Name] = mir
	}
	return m, nil
}

func (m *Manager) root() string { return filepath.Join(m.opts.DataDir, "mirrors") }

// Attachments is what the store needs to open this member's mirrored databases.
func (m *Manager) Attachments() map[string]store.Attachment {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]store.Attachment{}
	for name, mir := range m.mirrors {
		out[name] = mir.attachment()
	}
	return out
}

// Start brings every mirror up in its persisted role.
func (m *Manager) Start(st *store.Store) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.store = st
	// Snapshots a previous run handed out are gone with it: whoever was copying one takes a new one.
	_ = os.RemoveAll(m.snapshotRoot())
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.expireSnapshots(m.ctx)
	}()
	for _, mir := range m.mirrors {
		mir.forgetPendingHashes()
		mir.start()
	}
	if m.opts.PurgeInterval > 0 {
		m.wg.Add(1)
		go m.purgeLoop(m.opts.PurgeInterval, m.opts.PurgePolicy)
	}
}

// Stop ends every mirror's streams and dejournaling. With handoff, a primary whose backup is Active first hands the primary
// role to it (planned failover), unless its no-failover flag is set.
func (m *Manager) Stop(ctx context.Context, handoff bool) {
	m.mu.Lock()
	mirrors := make([]*Mirror, 0, len(m.mirrors))
	for _, mir := range m.mirrors {
		mirrors = append(mirrors, mir)
	}
	m.mu.Unlock()
	if handoff {
		for _, mir := range mirrors {
			if mir.Role() == RolePrimary && !mir.noFailover() && mir.backupActive() {
				if err := mir.Failover(ctx); err != nil {
					mir.log.Warn().Err(err).Msg("planned failover at shutdown failed; stopping as primary")
				}
			}
		}
	}
	m.cancel()
	for _, mir := range mirrors {
		mir.stop()
	}
	m.wg.Wait()
	m.mu.Lock()
	for addr, c := range m.arbiters {
		c.Close()
		delete(m.arbiters, addr)
	}
	m.mu.Unlock()
}

// CloseJournals closes every mirror journal; call after the store is closed (its flushes sync these journals).
func (m *Manager) CloseJournals() error {
	return m.closeJournals()
}

func (m *Manager) closeJournals() error {
	var errs []error
	for _, mir := range m.mirrors {
		errs = append(errs, mir.jrn.Close())
	}
	return errors.Join(errs...)
}

// Mirror returns the named mirror.
func (m *Manager) Mirror(name string) (*Mirror, error) {
	canon, err := CanonicalMirrorName(name)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mir, ok := m.mirrors[canon]
	if !ok {
		return nil, fmt.Errorf("member %s is not in mirror %s: %w", m.opts.Self, canon, ErrNoMirror)
	}
	return mir, nil
}

// ErrNoMirror is returned for a mirror this member does not belong to.
var ErrNoMirror = errors.New("no such mirror")

// Names lists this member's mirrors.
func (m *Manager) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.mirrors))
	for n := range m.mirrors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// peerAddr is how this member reaches another member's data port.
func (m *Manager) peerAddr(mc MemberConfig) string {
	if a, ok := m.opts.Peers[mc.Name]; ok {
		return a
	}
	return mc.Addr
}

// CreateOptions are the settings of a new mirror.
type CreateOptions struct {
	QoS                 time.Duration
	CompressionFailover string
	CompressionAsync    string
	RequireTLS          bool
	AsyncHoldback       time.Duration
	Arbiter             string // the arbiter's address ("" for none)
}

// Create makes a new mirror with this member as its first failover member and primary in epoch 1.
func (m *Manager) Create(name string, o CreateOptions) (*Mirror, error) {
	canon, err := CanonicalMirrorName(name)
	if err != nil {
		return nil, err
	}
	if o.QoS == 0 {
		o.QoS = DefaultQoS
	}
	if o.QoS < 200*time.Millisecond {
		return nil, fmt.Errorf("QoS timeout %s is below the minimum of 200ms", o.QoS)
	}
	if o.AsyncHoldback == 0 {
		o.AsyncHoldback = DefaultAsyncHoldback
	}
	if o.Arbiter != "" {
		if _, _, err := net.SplitHostPort(o.Arbiter); err != nil {
			return nil, fmt.Errorf("arbiter address %q: want host:port: %w", o.Arbiter, err)
		}
	}
	for _, c := range []string{o.CompressionFailover, o.CompressionAsync} {
		if c != "" {
			if _, err := wire.ParseCodec(c); err != nil {
				return nil, err
			}
		}
	}
	if o.RequireTLS && m.opts.TLS == nil {
		return nil, fmt.Errorf("mirror %s requires TLS, but member %s has no certificate configured ([tls] cert, key, ca)", canon, m.opts.Self)
	}
	cfg := Config{Name: canon, Version: 1, Epoch: 1, Primary: m.opts.Self, QoS: Duration{o.QoS},
		CompressionFailover: o.CompressionFailover, CompressionAsync: o.CompressionAsync, RequireTLS: o.RequireTLS,
		AsyncHoldback: Duration{o.AsyncHoldback}, Arbiter: o.Arbiter,
		Members: []MemberConfig{{Name: m.opts.Self, Addr: m.opts.Addr, AdminAddr: m.opts.AdminAddr, Type: Failover, DN: m.opts.SelfDN, AgentAddr: m.opts.AgentAddr}}}
	notePrimaryLevel(&cfg, m.opts.Self)
	if err := m.checkMembership(cfg, Failover); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.mirrors[canon]; ok {
		return nil, fmt.Errorf("member %s is already in mirror %s: %w", m.opts.Self, canon, wire.ErrExists)
	}
	mir, err := m.newMirror(localState{Config: cfg})
	if err != nil {
		return nil, err
	}
	// The journal of a new mirror starts with the epoch-start record of epoch 1.
	if _, err := mir.jrn.Commit(context.Background(), []journal.Record{{Type: journal.RecordEpochStart, TxnEnd: true, Value: []byte(m.opts.Self), HasValue: true}}); err != nil {
		return nil, fmt.Errorf("mirror %s: epoch start: %w", canon, err)
	}
	m.mirrors[canon] = mir
	m.store.AttachMirror(canon, mir.attachment())
	mir.freshEpoch = true
	mir.start()
	m.log.Info().Str("mirror", canon).Msg("mirror created; this member is primary in epoch 1")
	return mir, nil
}

// checkMembership enforces the per-member limits of MIRRORING.md §1 for joining cfg as type t: a failover or DR member
// belongs to one mirror only; a reporting async to at most ten.
func (m *Manager) checkMembership(cfg Config, t MemberType) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	reporting := 0
	for name, mir := range m.mirrors {
		st := mir.state()
		self, _ := st.Config.Member(m.opts.Self)
		if !self.Type.IsReporting() || !t.IsReporting() {
			return fmt.Errorf("member %s is a %s member of mirror %s; a failover or DR member belongs to one mirror only", m.opts.Self, self.Type, name)
		}
		reporting++
	}
	if reporting >= MaxReportingMirror {
		return fmt.Errorf("member %s is already a reporting async of %d mirrors, the maximum", m.opts.Self, reporting)
	}
	return nil
}

// newMirror persists st and opens the mirror's journal.
func (m *Manager) newMirror(st localState) (*Mirror, error) {
	dir := filepath.Join(m.root(), st.Config.Name)
	if err := os.RemoveAll(filepath.Join(dir, "journal")); err != nil {
		return nil, err
	}
	if err := saveState(dir, st); err != nil {
		return nil, err
	}
	return m.openMirror(st)
}

func (m *Manager) openMirror(st localState) (*Mirror, error) {
	dir := filepath.Join(m.root(), st.Config.Name)
	log := m.log.With().Str("mirror", st.Config.Name).Logger()
	jrn, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{
		SegmentSize: m.opts.SegmentSize, Epoch: st.Config.Epoch, Logger: log.With().Str("component", "mirror-journal").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("mirror %s journal: %w", st.Config.Name, err)
	}
	mir := &Mirror{mgr: m, name: st.Config.Name, dir: dir, jrn: jrn, log: log, st: st, changed: make(chan struct{}), replicas: map[string]*replica{},
		reportKick: make(chan struct{}, 1)}
	mir.fo.kick = make(chan struct{}, 1)
	mir.role = mir.roleFromConfig()
	mir.applyRecordFormatLocked()
	return mir, nil
}

// mirroredDatabases lists this member's databases that belong to the mirror.
func (m *Manager) mirroredDatabases(mirror string) []store.Info {
	var out []store.Info
	for _, info := range m.store.List() {
		if info.Mirror == mirror {
			out = append(out, info)
		}
	}
	return out
}

func containsFold(list []string, s string) bool {
	return slices.Contains(list, s)
}
