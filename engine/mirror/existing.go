package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/adminapi"
	"github.com/mirrorkit/mirrorkit/internal/atomicfile"
)

// Database statuses of a copy being fetched from another member (automatic download or file copy).
const (
	DBNeedsDownload = "Needs Download"
	DBDownloading   = "Downloading"
)

// AddExistingDatabase adds a database that already holds data under this member's local journal to the mirror, on the
// primary: its updates continue in the mirror journal right after an add marker, whose position the configuration records
// (Config.Added). The other members need a copy of it (backup and restore, file copy, or automatic download). Repeating it
// for a database already added finishes what a crash interrupted.
func (m *Manager) AddExistingDatabase(name, mirror string) (store.Info, error) {
	mir, canon, err := m.mirrorAndDatabase(mirror, name)
	if err != nil {
		return store.Info{}, err
	}
	if mir.Role() != RolePrimary {
		return store.Info{}, fmt.Errorf("member %s is not the primary of mirror %s: add database %s on the primary %s: %w",
			m.opts.Self, mir.name, canon, mir.Config().Primary, wire.ErrBadRequest)
	}
	if slices.Contains(mir.Config().Databases, canon) && mir.Config().Added[canon].IsZero() {
		return store.Info{}, fmt.Errorf("database %s is already in mirror %s (created in it): %w", canon, mir.name, wire.ErrExists)
	}
	if info, err := m.store.Get(canon); err == nil && info.Mirror == mir.name && !mir.Config().Added[canon].IsZero() {
		// Added before: its add position stays the one recorded (copies, backups and shadow markers refer to it).
		return info, nil
	}
	epoch := mir.Config().Epoch
	info, err := m.store.AttachToMirror(canon, mir.name, func(pos journal.Position) error {
		if err := mir.recordDatabase(canon, pos, true); err != nil {
			return err
		}
		return mir.recordAddedHash(epoch, canon, store.LogicalHash{Database: canon}) // pending until the hash is taken
	}, func(h store.LogicalHash, err error) {
		if err != nil {
			mir.log.Warn().Err(err).Str("db", canon).Msg("logical hash at the add position")
			h = store.LogicalHash{Database: canon, SHA256: HashUnavailable}
		}
		if err := mir.recordAddedHash(epoch, canon, h); err != nil {
			mir.log.Warn().Err(err).Str("db", canon).Msg("record the logical hash at the add position")
			return
		}
		mir.broadcastConfig()
	})
	if err != nil {
		return store.Info{}, err
	}
	mir.broadcastConfig()
	return info, nil
}

// HashUnavailable stands for the SHA-256 of Config.AddedHash when the primary could not take the hash at the add position
// (it stopped meanwhile): copies then join in place unverified.
const HashUnavailable = "unavailable"

// recordAddedHash records the logical hash of a database at its add position (an empty SHA256: still being taken), if this
// member has been the primary ever since the epoch in which the database was added: otherwise the configuration is that of
// a primary that marked the hash unavailable when it took over (a change here would put this member's configuration ahead
// of the primary's).
func (mir *Mirror) recordAddedHash(epoch uint64, db string, h store.LogicalHash) error {
	return mir.update(func(st *localState) error {
		if !st.Config.primarySince(mir.mgr.opts.Self, epoch) {
			return fmt.Errorf("member %s is no longer the primary of mirror %s that added %s in epoch %d (epoch %d, primary %s): its hash at the add position is not recorded",
				mir.mgr.opts.Self, mir.name, db, epoch, st.Config.Epoch, st.Config.Primary)
		}
		if st.Config.AddedHash == nil {
			st.Config.AddedHash = map[string]store.LogicalHash{}
		}
		st.Config.AddedHash[db] = h
		st.Config.Version++
		return nil
	})
}

// ErrNeedsCopy is returned when a database is created on a backup or async although it joined the mirror with existing
// data: such a copy cannot start empty; it is downloaded (Download), copied or restored instead.
var ErrNeedsCopy = errors.New("the database joined the mirror with existing data: this member needs a copy of it")

// recordDatabase puts a database into the primary's configuration of the mirror: created empty (its copies start at pos)
// or added with data (withData: its copies need a copy of the data, at pos or later). Recording the same again is a no-op.
func (mir *Mirror) recordDatabase(db string, pos journal.Position, withData bool) error {
	return mir.update(func(st *localState) error {
		cfg := &st.Config
		first, other := &cfg.Created, &cfg.Added
		if withData {
			first, other = &cfg.Added, &cfg.Created
		}
		if slices.Contains(cfg.Databases, db) && (*first)[db] == pos {
			return nil
		}
		if !slices.Contains(cfg.Databases, db) {
			cfg.Databases = append(cfg.Databases, db)
		}
		if *first == nil {
			*first = map[string]journal.Position{}
		}
		(*first)[db] = pos
		delete(*other, db)
		cfg.Removed = slices.DeleteFunc(cfg.Removed, func(s string) bool { return s == db })
		cfg.Version++
		return nil
	})
}

// DownloadRequest is a copy of a database this member is to fetch from another member, persisted until it is done.
type DownloadRequest struct {
	DB   string `json:"db"`
	From string `json:"from,omitempty"` // member name; "" lets this member choose one with an activated, current copy
}

// DownloadStatus is the progress of one download, shown in the database status.
type DownloadStatus struct {
	DB     string `json:"db"`
	Status string `json:"status"` // Needs Download or Downloading
	Source string `json:"source,omitempty"`
	Done   int64  `json:"done"`
	Total  int64  `json:"total"`
	Error  string `json:"error,omitempty"`
}

// Download fetches a copy of a mirrored database from another member (from; "" chooses the backup or an async with an
// activated, current copy, else the primary), activates it here and lets it catch up from the mirror journal. It returns
// at once; the database shows Needs Download, then Downloading, then catches up.
func (mir *Mirror) Download(db, from string) (DownloadStatus, error) {
	canon, err := store.CanonicalDatabaseName(db)
	if err != nil {
		return DownloadStatus{}, err
	}
	if mir.Role() == RolePrimary {
		return DownloadStatus{}, fmt.Errorf("member %s is the primary of mirror %s: its databases are the originals; download copies on the other members: %w", mir.mgr.opts.Self, mir.name, wire.ErrBadRequest)
	}
	if from != "" {
		if from == mir.mgr.opts.Self {
			return DownloadStatus{}, fmt.Errorf("member %s cannot download %s from itself: %w", from, canon, wire.ErrBadRequest)
		}
		if cfg := mir.Config(); !slices.ContainsFunc(cfg.Members, func(mc MemberConfig) bool { return mc.Name == from }) {
			return DownloadStatus{}, fmt.Errorf("no member %s in mirror %s: %w", from, mir.name, wire.ErrBadRequest)
		}
	}
	if !mir.waitForDatabase(canon) {
		return DownloadStatus{}, fmt.Errorf("database %s is not in mirror %s: add it on the primary %s first: %w", canon, mir.name, mir.Config().Primary, wire.ErrBadRequest)
	}
	if info, err := mir.mgr.store.Get(canon); err == nil {
		return DownloadStatus{}, fmt.Errorf("database %s already exists on member %s (mirror %q): remove it first to replace it with a copy: %w", canon, mir.mgr.opts.Self, info.Mirror, wire.ErrExists)
	}
	req := DownloadRequest{DB: canon, From: from}
	if err := mir.update(func(st *localState) error {
		st.Downloads = slices.DeleteFunc(st.Downloads, func(r DownloadRequest) bool { return r.DB == canon })
		st.Downloads = append(st.Downloads, req)
		return nil
	}); err != nil {
		return DownloadStatus{}, err
	}
	mir.mu.Lock()
	defer mir.mu.Unlock()
	mir.startDownloadLocked(req)
	return *mir.downloads[canon], nil
}

// startDownloadLocked runs a download for the current role, unless one runs already.
func (mir *Mirror) startDownloadLocked(req DownloadRequest) {
	if mir.downloads == nil {
		mir.downloads = map[string]*DownloadStatus{}
	}
	if _, running := mir.downloads[req.DB]; running || mir.roleCtx == nil {
		return
	}
	mir.downloads[req.DB] = &DownloadStatus{DB: req.DB, Status: DBNeedsDownload}
	ctx := mir.roleCtx
	mir.wg.Add(1)
	go func() {
		defer mir.wg.Done()
		err := mir.runDownload(ctx, req)
		mir.mu.Lock()
		delete(mir.downloads, req.DB)
		mir.notifyLocked()
		mir.mu.Unlock()
		if err == nil {
			_ = mir.update(func(st *localState) error {
				st.Downloads = slices.DeleteFunc(st.Downloads, func(r DownloadRequest) bool { return r.DB == req.DB })
				return nil
			})
		}
	}()
}

func (mir *Mirror) setDownload(db string, f func(d *DownloadStatus)) {
	mir.mu.Lock()
	defer mir.mu.Unlock()
	if d, ok := mir.downloads[db]; ok {
		f(d)
		mir.notifyLocked()
	}
}

// downloadRetry is the pause between attempts when no member can give a copy yet, or a fetch failed.
const downloadRetry = time.Second

// runDownload fetches the copy, retrying until it is activated or the role ends.
func (mir *Mirror) runDownload(ctx context.Context, req DownloadRequest) error {
	for {
		err := mir.downloadOnce(ctx, req)
		if err == nil || ctx.Err() != nil {
			return err
		}
		mir.log.Warn().Err(err).Str("db", req.DB).Msg("download of a database copy failed; retrying")
		mir.setDownload(req.DB, func(d *DownloadStatus) { d.Status, d.Error, d.Done = DBNeedsDownload, err.Error(), 0 })
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(downloadRetry):
		}
	}
}

// downloadSources lists the members to ask for a copy, in order: the one asked for, else the backup and the asyncs (which
// spares the primary), then the primary.
func (mir *Mirror) downloadSources(from string) []MemberConfig {
	cfg := mir.Config()
	var out []MemberConfig
	for _, mc := range cfg.Members {
		if mc.Name == mir.mgr.opts.Self || (from != "" && mc.Name != from) || (from == "" && mc.Name == cfg.Primary) {
			continue
		}
		out = append(out, mc)
	}
	slices.SortStableFunc(out, func(a, b MemberConfig) int { return rank(a, cfg) - rank(b, cfg) })
	if p, ok := cfg.Member(cfg.Primary); ok && from == "" && p.Name != mir.mgr.opts.Self {
		out = append(out, p)
	}
	return out
}

// downloadOnce takes a snapshot on the first source that has an activated, current copy, fetches its files into a
// temporary directory, syncs them, moves them into place and activates the copy.
func (mir *Mirror) downloadOnce(ctx context.Context, req DownloadRequest) error {
	var errs []error
	for _, mc := range mir.downloadSources(req.From) {
		admin, err := mir.mgr.AdminAddrOf(ctx, mc.Addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var snap SnapshotInfo
		if err := mir.mgr.PostJSON(ctx, admin, "/api/v1/databases/"+url.PathEscape(req.DB)+"/snapshots", nil, &snap); err != nil {
			errs = append(errs, fmt.Errorf("member %s: %w", mc.Name, err))
			continue
		}
		err = mir.fetchSnapshot(ctx, mc.Name, admin, snap)
		_ = mir.mgr.deleteRemote(context.WithoutCancel(ctx), admin, "/api/v1/snapshots/"+url.PathEscape(snap.ID))
		return err
	}
	return fmt.Errorf("no member has an activated, current copy of %s to download yet: %w", req.DB, errors.Join(errs...))
}

func (mir *Mirror) fetchSnapshot(ctx context.Context, source, admin string, snap SnapshotInfo) error {
	mir.setDownload(snap.Database, func(d *DownloadStatus) {
		d.Status, d.Source, d.Done, d.Total, d.Error = DBDownloading, source, 0, snap.Bytes, ""
	})
	tmp := filepath.Join(mir.mgr.opts.DataDir, "downloads", snap.Database)
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, f := range snap.Files {
		if err := mir.fetchFile(ctx, admin, snap, f, tmp); err != nil {
			return fmt.Errorf("download %s from member %s: %w", snap.Database, source, err)
		}
	}
	if err := syncTree(tmp); err != nil {
		return err
	}
	final := filepath.Join(mir.mgr.opts.DataDir, "db", snap.Database)
	if info, err := mir.mgr.store.Get(snap.Database); err == nil {
		return fmt.Errorf("download %s: a database of that name appeared on this member meanwhile (mirror %q); it is left alone", snap.Database, info.Mirror)
	}
	// What is there is no database (a copy placed for activation, or the leftover of an interrupted download).
	if err := os.RemoveAll(final); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("download %s: move into place: %w", snap.Database, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(final)); err != nil {
		return err
	}
	if _, err := mir.mgr.Activate(snap.Database, mir.name); err != nil {
		os.RemoveAll(final)
		return err
	}
	mir.log.Info().Str("db", snap.Database).Str("source", source).Str("pos", snap.Position.String()).Int64("bytes", snap.Bytes).
		Msg("database copy downloaded and activated")
	return nil
}

// fetchFile streams one snapshot file into dir.
func (mir *Mirror) fetchFile(ctx context.Context, admin string, snap SnapshotInfo, f SnapshotFile, dir string) error {
	path := filepath.Join(dir, filepath.FromSlash(f.Name))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	body, err := mir.mgr.getStream(ctx, admin, "/api/v1/snapshots/"+url.PathEscape(snap.ID)+"/files/"+f.Name)
	if err != nil {
		return fmt.Errorf("file %s: %w", f.Name, err)
	}
	defer body.Close()
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, &countingReader{r: body, add: func(n int) {
		mir.setDownload(snap.Database, func(d *DownloadStatus) { d.Done += int64(n) })
	}})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != f.Size {
		err = fmt.Errorf("got %d bytes, the snapshot lists %d", n, f.Size)
	}
	if err != nil {
		return fmt.Errorf("file %s: %w", f.Name, err)
	}
	return nil
}

type countingReader struct {
	r   io.Reader
	add func(int)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.add(n)
	}
	return n, err
}

// syncTree fsyncs every file and directory under root.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return atomicfile.SyncDir(path)
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

// getStream reads a streamed answer of another member's admin API.
func (m *Manager) getStream(ctx context.Context, adminAddr, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminapi.BaseURL(adminAddr, m.opts.TLS)+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.streamHTTP().Do(req)
	if err != nil {
		return nil, wire.ExplainTLSError(err, adminAddr)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, adminapi.ReadError(resp)
	}
	return resp.Body, nil
}

func (m *Manager) deleteRemote(ctx context.Context, adminAddr, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return adminapi.Call(ctx, m.peerHTTP(), http.MethodDelete, adminapi.BaseURL(adminAddr, m.opts.TLS)+path, nil, nil)
}

// streamHTTP is the client for long transfers between members: no overall timeout (a large file takes what it takes).
func (m *Manager) streamHTTP() *http.Client {
	m.streamOnce.Do(func() { m.stream = adminapi.NewClient(m.opts.TLS, 0) })
	return m.stream
}

// resumeDownloadsLocked restarts the downloads a previous run (or role) left unfinished.
func (mir *Mirror) resumeDownloadsLocked() {
	for _, req := range mir.st.Downloads {
		mir.startDownloadLocked(req)
	}
}

// JoinInPlace makes a copy this member already holds — a shadowed copy that applied the source's move of the database into
// this mirror — a copy of the mirrored database without copying anything: join switches it to the mirror journal at the
// position the mirror recorded when the database was added with its data, and it is then dejournaled from there.
func (m *Manager) JoinInPlace(db, mirror string, join func(pos journal.Position, expect *store.LogicalHash) (JoinResult, error)) (JoinResult, error) {
	mir, canon, err := m.mirrorAndDatabase(mirror, db)
	if err != nil {
		return JoinResult{}, err
	}
	if mir.Role() == RolePrimary {
		return JoinResult{}, fmt.Errorf("member %s is the primary of mirror %s: its databases are the originals: %w", m.opts.Self, mir.name, wire.ErrBadRequest)
	}
	if !mir.waitForDatabase(canon) {
		return JoinResult{}, fmt.Errorf("database %s is not in mirror %s: add it on the primary %s first: %w", canon, mir.name, mir.Config().Primary, wire.ErrBadRequest)
	}
	pos := mir.Config().Added[canon]
	if pos.IsZero() {
		return JoinResult{}, fmt.Errorf("database %s was created in mirror %s, not added with its data: there is no position to join it at: %w", canon, mir.name, wire.ErrBadRequest)
	}
	if info, err := m.store.Get(canon); err == nil && info.Mirror == mir.name {
		return JoinResult{Info: info, Already: true}, nil
	}
	if mir.jrn.Purged(pos) {
		first := mir.jrn.FirstPosition()
		return JoinResult{}, fmt.Errorf("database %s joins mirror %s at %s, but this member's copy of the mirror journal starts at %s: the records in between are purged; copy the database instead: %w",
			canon, mir.name, pos, first, wire.ErrBadRequest)
	}
	var expect *store.LogicalHash
	switch h, ok := mir.Config().AddedHash[canon]; {
	case ok && h.SHA256 == "":
		return JoinResult{}, fmt.Errorf("the primary %s is still taking the logical hash of %s at its add position, which the copy is checked against; try again shortly: %w",
			mir.Config().Primary, canon, ErrHashPending)
	case ok && h.SHA256 != HashUnavailable:
		expect = &h
	}
	res, err := join(pos, expect)
	if err != nil {
		return JoinResult{}, err
	}
	if d, err := m.store.Database(canon); err == nil {
		mir.track(d)
	}
	res.Info, err = m.store.Get(canon)
	return res, err
}

// ErrHashPending is returned by JoinInPlace while the primary is still hashing the database at its add position.
var ErrHashPending = errors.New("hash pending")

// JoinResult is what JoinInPlace did: the copy, its logical hash at the join position, and whether the primary's hash at
// the add position was there to check it against (it always matched: a mismatch refuses the join).
type JoinResult struct {
	store.Info
	Hash     store.LogicalHash `json:"hash,omitzero"`
	Verified bool              `json:"verified"`
	Already  bool              `json:"already,omitempty"` // it had joined before: nothing was done
}

// forgetPendingHashes marks the hashes at add positions that a primary was taking when it stopped as unavailable: nothing
// will finish them.
func (mir *Mirror) forgetPendingHashes() {
	if cfg := mir.Config(); mir.roleFromConfig() != RolePrimary || !cfg.hashesPending() {
		return
	}
	var forgot []string
	err := mir.update(func(st *localState) error {
		if forgot = st.Config.forgetPendingHashes(); len(forgot) > 0 {
			st.Config.Version++
		}
		return nil
	})
	if err != nil {
		mir.log.Warn().Err(err).Strs("databases", forgot).Msg("forget the hashes the primary was taking at the add positions")
	}
}

// primarySince reports whether member has been the primary from epoch on: it is the primary, and no later epoch was begun
// by another member.
func (c *Config) primarySince(member string, epoch uint64) bool {
	if c.Primary != member {
		return false
	}
	for _, e := range c.Epochs {
		if e.Epoch > epoch && e.Primary != member {
			return false
		}
	}
	return true
}

// hashesPending reports whether a hash at an add position is still being taken.
func (c *Config) hashesPending() bool {
	for _, h := range c.AddedHash {
		if h.SHA256 == "" {
			return true
		}
	}
	return false
}

// forgetPendingHashes marks every hash at an add position still being taken as unavailable, and returns their databases: a
// primary that restarted, or a member that became primary in its place, will not finish them, and copies waiting for them
// to join in place would wait for ever.
func (c *Config) forgetPendingHashes() []string {
	var dbs []string
	for db, h := range c.AddedHash {
		if h.SHA256 == "" {
			c.AddedHash[db] = store.LogicalHash{Database: db, SHA256: HashUnavailable}
			dbs = append(dbs, db)
		}
	}
	slices.Sort(dbs)
	return dbs
}
