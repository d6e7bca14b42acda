package mirrorctl

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/adminapi"
)

// SnapshotSource is a backup source on a member: a snapshot of its copy of a database, taken on first use and released by
// Close (a member also drops snapshots nobody reads for a while).
type SnapshotSource struct {
	member *Member
	db     string

	mu   sync.Mutex
	snap *mirror.SnapshotInfo
}

var _ backup.Source = (*SnapshotSource)(nil)

// Snapshot returns a backup source over a snapshot of the member's copy of db.
func (m *Member) Snapshot(db string) *SnapshotSource { return &SnapshotSource{member: m, db: db} }

func (s *SnapshotSource) take(ctx context.Context) (*mirror.SnapshotInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap != nil {
		return s.snap, nil
	}
	var info mirror.SnapshotInfo
	if err := s.member.call(ctx, http.MethodPost, "/api/v1/databases/"+url.PathEscape(s.db)+"/snapshots", struct{}{}, &info); err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", s.db, err)
	}
	s.snap = &info
	return s.snap, nil
}

// Info takes the snapshot (once) and describes it.
func (s *SnapshotSource) Info(ctx context.Context) (backup.SourceInfo, error) {
	snap, err := s.take(ctx)
	if err != nil {
		return backup.SourceInfo{}, err
	}
	info := backup.SourceInfo{Database: snap.Database, Mirror: snap.Mirror, Member: snap.Member, Position: snap.Position, Format: snap.Format}
	for _, f := range snap.Files {
		info.Files = append(info.Files, backup.SourceFile{Name: f.Name, Size: f.Size})
	}
	return info, nil
}

// Open reads part of a snapshot file.
func (s *SnapshotSource) Open(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	snap, err := s.take(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.member.AdminURL+"/api/v1/snapshots/"+url.PathEscape(snap.ID)+"/files/"+name, nil)
	if err != nil {
		return nil, err
	}
	if length >= 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	} else if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := s.member.fleet.stream.Do(req)
	if err != nil {
		return nil, fmt.Errorf("member %s: snapshot file %s: %w", s.member.Name, name, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		defer resp.Body.Close()
		return nil, fmt.Errorf("member %s: snapshot file %s: %w", s.member.Name, name, adminapi.ReadError(resp))
	}
	return resp.Body, nil
}

// LogicalHash is the snapshot's logical hash, computed by the member.
func (s *SnapshotSource) LogicalHash(ctx context.Context) (store.LogicalHash, error) {
	snap, err := s.take(ctx)
	if err != nil {
		return store.LogicalHash{}, err
	}
	var h store.LogicalHash
	// Hashing a large database takes a while: no per-call timeout here, the caller's context decides.
	if err := adminapi.Call(ctx, s.member.fleet.stream, http.MethodGet, s.member.AdminURL+"/api/v1/snapshots/"+url.PathEscape(snap.ID)+"/hash", nil, &h); err != nil {
		return h, fmt.Errorf("member %s: hash of snapshot %s: %w", s.member.Name, snap.ID, err)
	}
	return h, nil
}

// Close releases the snapshot on the member.
func (s *SnapshotSource) Close() error {
	s.mu.Lock()
	snap := s.snap
	s.snap = nil
	s.mu.Unlock()
	if snap == nil {
		return nil
	}
	return s.member.call(context.Background(), http.MethodDelete, "/api/v1/snapshots/"+url.PathEscape(snap.ID), nil, nil)
}
