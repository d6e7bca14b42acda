package store

import (
	"errors"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// ErrNotDatabase classifies a directory that holds no database (missing, empty, or another kind of Pebble store).
var ErrNotDatabase = errors.New("not a database directory")

// DirInfo describes a database directory that is not mounted: a checkpoint, a backup being restored, a copy to adopt.
type DirInfo struct {
	Name        string           `json:"name"`
	Format      int              `json:"format"`
	Incarnation uint64           `json:"incarnation"`
	Applied     journal.Position `json:"applied"`
}

// InspectDir reads the identity and applied position of the database in dir without changing it.
func InspectDir(dir string) (DirInfo, error) {
	var info DirInfo
	err := withReadOnly(dir, func(d *Database) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		info = DirInfo{Name: d.name, Format: FormatVersion, Incarnation: d.incarnation, Applied: d.lowestAppliedLocked()}
		return nil
	})
	return info, err
}

// HashDir computes the logical hash (as Store.Hash defines it) of the database in dir without changing it.
func HashDir(dir string) (LogicalHash, error) {
	var h LogicalHash
	err := withReadOnly(dir, func(d *Database) error {
		var err error
		h, err = logicalHash(d.name, d.pdb)
		if err != nil {
			return fmt.Errorf("hash database %s at %s: %w", d.name, dir, err)
		}
		return nil
	})
	return h, err
}

// withReadOnly opens dir read-only, validates its meta records as a mount would, and calls fn with the result.
func withReadOnly(dir string, fn func(d *Database) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(inspectFatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("inspect %s: %s", dir, f.msg)
		}
	}()
	if st, err := os.Stat(dir); err != nil {
		return fmt.Errorf("inspect %s: %w", dir, err)
	} else if !st.IsDir() {
		return fmt.Errorf("inspect %s: %w: it is a file", dir, ErrNotDatabase)
	}
	if desc, err := pebble.Peek(dir, vfs.Default); err != nil || !desc.Exists {
		return fmt.Errorf("inspect %s: %w: no database store found in it", dir, ErrNotDatabase)
	}
	pdb, err := pebble.Open(dir, &pebble.Options{
		ReadOnly:           true,
		DisableWAL:         true,
		FormatMajorVersion: pebbleFormat,
		Logger:             inspectLogger{},
	})
	if err != nil {
		return fmt.Errorf("inspect %s: open read-only: %w", dir, err)
	}
	defer pdb.Close()
	name, closer, err := pdb.Get(metaName)
	if errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("inspect %s: %w: it has no database name record", dir, ErrNotDatabase)
	}
	if err != nil {
		return fmt.Errorf("inspect %s: read name: %w", dir, err)
	}
	d := &Database{name: string(name), dir: dir, pdb: pdb}
	closer.Close()
	if err := d.loadMeta(); err != nil {
		return fmt.Errorf("inspect %s: %w", dir, err)
	}
	return fn(d)
}
