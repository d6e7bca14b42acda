package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/mirrorkit/mirrorkit/internal/atomicfile"
)

// catalogVersion is the format version of catalog.json.
const catalogVersion = 1

// catalog is the member's list of databases, persisted in <data dir>/catalog.json. A database directory that the catalog does
// not list (left by a crash during create or delete) is ignored and replaced by the next create of that name.
type catalog struct {
	Version   int            `json:"version"`
	Databases []catalogEntry `json:"databases"`
}

type catalogEntry struct {
	Name        string    `json:"name"`
	Dir         string    `json:"dir"` // relative to the data dir
	Mounted     bool      `json:"mounted"`
	Mirror      string    `json:"mirror,omitempty"` // the mirror the database belongs to; "" for the local journal
	Created     time.Time `json:"created"`
	Incarnation uint64    `json:"incarnation"`
}

func loadCatalog(path string) (catalog, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return catalog{Version: catalogVersion}, nil
	}
	if err != nil {
		return catalog{}, fmt.Errorf("read catalog: %w", err)
	}
	var c catalog
	if err := json.Unmarshal(data, &c); err != nil {
		return catalog{}, fmt.Errorf("catalog %s is malformed: %w", path, err)
	}
	if c.Version != catalogVersion {
		return catalog{}, fmt.Errorf("catalog %s has format version %d, this member reads version %d", path, c.Version, catalogVersion)
	}
	for _, e := range c.Databases {
		if _, err := CanonicalDatabaseName(e.Name); err != nil || e.Dir == "" || filepath.IsAbs(e.Dir) {
			return catalog{}, fmt.Errorf("catalog %s has an invalid entry %q", path, e.Name)
		}
	}
	return c, nil
}

func (c catalog) save(path string) error {
	return atomicfile.WriteJSON(path, c)
}

func (c catalog) find(name string) (int, bool) {
	for i, e := range c.Databases {
		if e.Name == name {
			return i, true
		}
	}
	return -1, false
}
