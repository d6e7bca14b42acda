package restore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/engine/store"
)

// Report says what Verify checked.
type Report struct {
	Backup string `json:"backup"`
	Level  int    `json:"level"`
	// Objects chunk objects were found with their stored size, StoredBytes in all (level 1 and up).
	Objects     int   `json:"objects"`
	StoredBytes int64 `json:"stored_bytes"`
	// Chunks distinct chunks were downloaded, authenticated, decompressed and checked (level 2 and up).
	Chunks int `json:"chunks"`
	// Files files, Bytes bytes in all, were restored into a scratch directory and checked against the manifest, and the
	// database opened at the backup's position (level 3).
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// HashChecked: the restored database's logical hash equals the one recorded at backup time (level 3).
	HashChecked bool `json:"hash_checked"`
}

// Verify checks a backup without touching any database. Level 1 lists the chunk objects (present, right size); level 2
// also reads every chunk as a restore would; level 3 instead restores the backup into a new directory under scratch
// ("" for the system's temporary directory), opens it, compares its position and logical hash with the manifest, and
// removes it. An encrypted backup needs its key from level 2.
func Verify(ctx context.Context, tgt backup.Target, m *backup.Manifest, level int, key []byte, scratch string) (Report, error) {
	if level < 1 || level > 3 {
		return Report{}, fmt.Errorf("verify backup %s: level %d: use 1 (objects), 2 (chunks) or 3 (restore)", m.Name(), level)
	}
	rep := Report{Backup: m.Name(), Level: level}
	if err := backup.VerifyObjects(ctx, tgt, m); err != nil {
		return rep, err
	}
	objects := countObjects(m)
	rep.Objects, rep.StoredBytes = objects, m.StoredBytes
	switch level {
	case 2:
		if err := backup.VerifyChunks(ctx, tgt, m, key, backup.DefaultParallel); err != nil {
			return rep, err
		}
		rep.Chunks = objects
	case 3:
		if err := verifyRestore(ctx, tgt, m, key, scratch); err != nil {
			return rep, err
		}
		rep.Chunks, rep.Files, rep.Bytes, rep.HashChecked = objects, len(m.Files), m.Bytes, true
	}
	return rep, nil
}

func countObjects(m *backup.Manifest) int {
	seen := map[string]bool{}
	for _, f := range m.Files {
		for _, c := range f.Chunks {
			seen[c.SHA256] = true
		}
	}
	return len(seen)
}

// verifyRestore restores into a fresh directory under scratch and compares the result's logical hash with the manifest.
func verifyRestore(ctx context.Context, tgt backup.Target, m *backup.Manifest, key []byte, scratch string) error {
	dir, err := os.MkdirTemp(scratch, "verify-"+m.Database+"-")
	if err != nil {
		return fmt.Errorf("verify backup %s: scratch directory: %w", m.Name(), err)
	}
	defer os.RemoveAll(dir)
	final := filepath.Join(dir, m.Database)
	sink, err := NewDirSink(final, false)
	if err != nil {
		return err
	}
	if err := Run(ctx, tgt, m, sink, Options{Key: key}); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	h, err := store.HashDir(final)
	if err != nil {
		return fmt.Errorf("verify backup %s: %w", m.Name(), err)
	}
	if h.Nodes != m.LogicalHash.Nodes || h.SHA256 != m.LogicalHash.SHA256 {
		return fmt.Errorf("verify backup %s: restored database has %d nodes with logical hash %s, the backup recorded %d with %s: %w",
			m.Name(), h.Nodes, h.SHA256, m.LogicalHash.Nodes, m.LogicalHash.SHA256, ErrMismatch)
	}
	return nil
}
