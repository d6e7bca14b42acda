package backup

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
)

// Source is a consistent snapshot of one database to back up: a local checkpoint directory, or one on a member.
type Source interface {
	// Info describes the snapshot: its identity, journal position, format and files.
	Info(ctx context.Context) (SourceInfo, error)
	// Open reads length bytes of a file from offset.
	Open(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error)
	// LogicalHash digests the snapshot's content; it may block until computed.
	LogicalHash(ctx context.Context) (store.LogicalHash, error)
}

// SourceInfo describes a snapshot.
type SourceInfo struct {
	Database string           `json:"database"`
	Mirror   string           `json:"mirror,omitempty"`
	Member   string           `json:"member,omitempty"`
	Position journal.Position `json:"position"`
	Format   int              `json:"format"`
	Files    []SourceFile     `json:"files"`
}

// SourceFile is one file of a snapshot, named by its slash path relative to the database directory.
type SourceFile struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// DirSource is a Source over a local database directory that nothing writes to (a checkpoint). Its identity, position and
// format come from the directory; the non-zero fields of overrides replace them (Mirror and Member are only known to the
// caller). Files are not overridable.
func DirSource(dir string, overrides ...SourceInfo) Source {
	return &dirSource{dir: dir, overrides: overrides}
}

type dirSource struct {
	dir       string
	overrides []SourceInfo
}

func (s *dirSource) Info(ctx context.Context) (SourceInfo, error) {
	di, err := store.InspectDir(s.dir)
	if err != nil {
		return SourceInfo{}, err
	}
	info := SourceInfo{Database: di.Name, Position: di.Applied, Format: di.Format}
	for _, o := range s.overrides {
		if o.Database != "" {
			info.Database = o.Database
		}
		if o.Mirror != "" {
			info.Mirror = o.Mirror
		}
		if o.Member != "" {
			info.Member = o.Member
		}
		if !o.Position.IsZero() {
			info.Position = o.Position
		}
		if o.Format != 0 {
			info.Format = o.Format
		}
	}
	err = filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(s.dir, p)
		if err != nil {
			return err
		}
		info.Files = append(info.Files, SourceFile{Name: filepath.ToSlash(rel), Size: st.Size()})
		return ctx.Err()
	})
	if err != nil {
		return SourceInfo{}, fmt.Errorf("list files of %s: %w", s.dir, err)
	}
	return info, nil
}

func (s *dirSource) Open(_ context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if err := CheckFileName(name); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(s.dir, filepath.FromSlash(name)))
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seek %s to %d: %w", name, offset, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, length), f}, nil
}

func (s *dirSource) LogicalHash(context.Context) (store.LogicalHash, error) {
	return store.HashDir(s.dir)
}
