package mirror

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// SnapshotFile is one file of a database snapshot.
type SnapshotFile struct {
	Name string `json:"name"` // slash-separated, relative to the snapshot
	Size int64  `json:"size"`
}

// SnapshotInfo describes a consistent copy of a mirrored database that this member holds for another member or a tool to
// fetch (a download, a file copy, a backup): its files and the mirror journal position it has applied.
type SnapshotInfo struct {
	ID       string           `json:"id"`
	Database string           `json:"database"`
	Mirror   string           `json:"mirror"`
	Member   string           `json:"member"`
	Role     string           `json:"role"`
	Position journal.Position `json:"position"`
	Format   int              `json:"format"`
	Files    []SnapshotFile   `json:"files"`
	Bytes    int64            `json:"bytes"`
	Created  time.Time        `json:"created"`
}

// snapshotTTL is how long a snapshot nobody reads is kept: a tool killed mid-copy must not leave checkpoints forever.
const snapshotTTL = 15 * time.Minute

type snapshot struct {
	info     SnapshotInfo
	dir      string
	lastUsed time.Time
	hashOnce sync.Once
	hash     store.LogicalHash
	hashErr  error
	// users counts the readers that open the snapshot's database (the logical hash); dropped is set when the snapshot
	// was released while one was still reading, and the last reader deletes the files. Deleting a checkpoint's tables
	// under an open read-only store would make the store stop the process.
	users   int
	dropped bool
}

type snapshots struct {
	mu   sync.Mutex
	byID map[string]*snapshot
}

func (m *Manager) snapshotRoot() string { return filepath.Join(m.opts.DataDir, "snapshots") }

// ErrNoSnapshot is returned for a snapshot this member does not hold (never taken, released, or expired).
var ErrNoSnapshot = fmt.Errorf("no such snapshot: %w", wire.ErrBadRequest)

// ErrNotCurrent is returned when this member's copy of a database is not one others may copy: not activated, paused,
// dismounted, or not in the mirror.
var ErrNotCurrent = fmt.Errorf("no activated, current copy here: %w", wire.ErrBadRequest)

// CreateSnapshot takes a consistent snapshot (a checkpoint and its applied journal position) of this member's copy of a
// mirrored database, if that copy is activated and current: the primary's, or a backup's or async's that is dejournaling.
func (m *Manager) CreateSnapshot(db string) (SnapshotInfo, error) {
	canon, err := store.CanonicalDatabaseName(db)
	if err != nil {
		return SnapshotInfo{}, err
	}
	info, err := m.store.Get(canon)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if info.Mirror == "" {
		return SnapshotInfo{}, fmt.Errorf("database %s on member %s is not mirrored: %w", canon, m.opts.Self, wire.ErrBadRequest)
	}
	mir, err := m.Mirror(info.Mirror)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if st := mir.databaseState(canon); st != DBNormal && st != DBDejournaling && st != DBCatchupRun {
		return SnapshotInfo{}, fmt.Errorf("database %s on member %s is %q: %w", canon, m.opts.Self, st, ErrNotCurrent)
	}
	id := newSnapshotID()
	dir := filepath.Join(m.snapshotRoot(), id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot of %s: %w", canon, err)
	}
	cp, err := m.store.Checkpoint(canon, filepath.Join(dir, "db"))
	if err != nil {
		os.RemoveAll(dir)
		return SnapshotInfo{}, err
	}
	files, total, err := listFiles(cp.Dir)
	if err != nil {
		os.RemoveAll(dir)
		return SnapshotInfo{}, fmt.Errorf("snapshot of %s: %w", canon, err)
	}
	s := &snapshot{dir: cp.Dir, lastUsed: time.Now(), info: SnapshotInfo{ID: id, Database: canon, Mirror: mir.name, Member: m.opts.Self,
		Role: mir.Role().String(), Position: cp.Applied, Format: cp.Format, Files: files, Bytes: total, Created: time.Now().UTC()}}
	m.snaps.mu.Lock()
	if m.snaps.byID == nil {
		m.snaps.byID = map[string]*snapshot{}
	}
	m.snaps.byID[id] = s
	m.snaps.mu.Unlock()
	mir.log.Info().Str("db", canon).Str("snapshot", id).Str("pos", cp.Applied.String()).Int64("bytes", total).Msg("snapshot taken")
	return s.info, nil
}

func newSnapshotID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// listFiles lists the regular files under dir with slash-separated relative names, in name order.
func listFiles(dir string) ([]SnapshotFile, int64, error) {
	var files []SnapshotFile
	var total int64
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files = append(files, SnapshotFile{Name: filepath.ToSlash(rel), Size: fi.Size()})
		total += fi.Size()
		return nil
	})
	slices.SortFunc(files, func(a, b SnapshotFile) int { return strings.Compare(a.Name, b.Name) })
	return files, total, err
}

func (m *Manager) snapshot(id string) (*snapshot, error) {
	m.snaps.mu.Lock()
	defer m.snaps.mu.Unlock()
	return m.snapshotLocked(id)
}

func (m *Manager) snapshotLocked(id string) (*snapshot, error) {
	s, ok := m.snaps.byID[id]
	if !ok {
		return nil, fmt.Errorf("snapshot %s on member %s: %w", id, m.opts.Self, ErrNoSnapshot)
	}
	s.lastUsed = time.Now()
	return s, nil
}

// Snapshot describes a snapshot this member holds.
func (m *Manager) Snapshot(id string) (SnapshotInfo, error) {
	s, err := m.snapshot(id)
	if err != nil {
		return SnapshotInfo{}, err
	}
	return s.info, nil
}

// OpenSnapshotFile opens one file of a snapshot for reading.
func (m *Manager) OpenSnapshotFile(id, name string) (*os.File, error) {
	s, err := m.snapshot(id)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(s.info.Files, func(f SnapshotFile) bool { return f.Name == name }) {
		return nil, fmt.Errorf("snapshot %s has no file %q: %w", id, name, wire.ErrBadRequest)
	}
	return os.Open(filepath.Join(s.dir, filepath.FromSlash(name)))
}

// SnapshotHash computes (once) the logical hash of a snapshot's database.
func (m *Manager) SnapshotHash(id string) (store.LogicalHash, error) {
	s, err := m.acquireSnapshot(id)
	if err != nil {
		return store.LogicalHash{}, err
	}
	defer m.releaseSnapshot(s)
	s.hashOnce.Do(func() { s.hash, s.hashErr = store.HashDir(s.dir) })
	return s.hash, s.hashErr
}

// acquireSnapshot finds a snapshot for a reader that opens its database; releaseSnapshot must follow.
func (m *Manager) acquireSnapshot(id string) (*snapshot, error) {
	m.snaps.mu.Lock()
	defer m.snaps.mu.Unlock()
	s, err := m.snapshotLocked(id)
	if err == nil {
		s.users++
	}
	return s, err
}

// releaseSnapshot ends one reader's use of s, deleting its files if it was dropped meanwhile.
func (m *Manager) releaseSnapshot(s *snapshot) {
	m.snaps.mu.Lock()
	s.users--
	remove := s.dropped && s.users == 0
	m.snaps.mu.Unlock()
	if remove {
		_ = os.RemoveAll(filepath.Dir(s.dir))
	}
}

// DropSnapshot releases a snapshot and deletes its files.
func (m *Manager) DropSnapshot(id string) error {
	m.snaps.mu.Lock()
	s, ok := m.snaps.byID[id]
	delete(m.snaps.byID, id)
	inUse := ok && s.users > 0
	if inUse {
		s.dropped = true
	}
	m.snaps.mu.Unlock()
	if !ok || inUse {
		return nil
	}
	return os.RemoveAll(filepath.Dir(s.dir))
}

// expireSnapshots drops snapshots unused for snapshotTTL, every minute.
func (m *Manager) expireSnapshots(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.snaps.mu.Lock()
		var old []string
		for id, s := range m.snaps.byID {
			if time.Since(s.lastUsed) > snapshotTTL {
				old = append(old, id)
			}
		}
		m.snaps.mu.Unlock()
		for _, id := range old {
			_ = m.DropSnapshot(id)
		}
	}
}

// databaseState is this member's status of one of the mirror's databases ("" when it has none).
func (mir *Mirror) databaseState(db string) string {
	for _, d := range mir.LocalStatus().Databases {
		if d.Name == db {
			return d.Status
		}
	}
	return ""
}
