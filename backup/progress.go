package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/store"
)

// progressVersion is the format of progress.json.
const progressVersion = 1

// maxRecordSize bounds how much of a manifest or progress object is read: far above any real one, it keeps a wrong
// object from exhausting memory.
const maxRecordSize = 256 << 20

// errProgressDamaged marks a progress record that cannot be used: such a backup cannot be resumed.
var errProgressDamaged = errors.New("progress record damaged")

// progress is a running backup's resume state: its settings and the chunk objects known to be stored.
type progress struct {
	Version    int           `json:"version"`
	ID         string        `json:"id"`
	Database   string        `json:"database"`
	Started    time.Time     `json:"started"`
	Level      int           `json:"level"`
	ChunkSize  int64         `json:"chunk_size"`
	Encryption *Encryption   `json:"encryption"`
	Chunks     []storedChunk `json:"chunks"`
}

// storedChunk is what the target holds for one distinct plaintext chunk.
type storedChunk struct {
	SHA256       string `json:"sha256"`
	Stored       int64  `json:"stored"`
	StoredCRC32C string `json:"stored_crc32c"`
}

// decodeProgress parses and checks progress.json strictly.
func decodeProgress(data []byte) (*progress, error) {
	var p progress
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("malformed: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the end")
	}
	if p.Version != progressVersion {
		return nil, fmt.Errorf("version %d, this tool reads version %d", p.Version, progressVersion)
	}
	if err := checkID(p.ID); err != nil {
		return nil, err
	}
	if canon, err := store.CanonicalDatabaseName(p.Database); err != nil || canon != p.Database {
		return nil, fmt.Errorf("database name %q is not a canonical database name", p.Database)
	}
	if p.Level < 1 || p.Level > 22 || p.ChunkSize < MinChunkSize || p.ChunkSize > MaxChunkSize {
		return nil, fmt.Errorf("level %d or chunk size %d out of range", p.Level, p.ChunkSize)
	}
	if e := p.Encryption; e != nil && (e.Algorithm != EncryptionAESGCM || !isHex(e.KeyID, keyIDLen) || len(e.WrappedKey) != wrappedKeyLen) {
		return nil, fmt.Errorf("unknown encryption %s", e.Algorithm)
	}
	for _, c := range p.Chunks {
		if !isHex(c.SHA256, 64) || !isHex(c.StoredCRC32C, 8) || c.Stored < 1 {
			return nil, fmt.Errorf("bad chunk record %+v", c)
		}
	}
	return &p, nil
}

// loadProgress reads a backup's progress.json; nil without error when there is none.
func loadProgress(ctx context.Context, tgt Target, db, id string) (*progress, error) {
	key := progressKey(db, id)
	data, err := getAll(ctx, tgt, key)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p, err := decodeProgress(data)
	if err != nil {
		return nil, fmt.Errorf("progress record %s of backup %s/%s: %v: delete the backup (prune) or start a new one: %w", key, db, id, err, errProgressDamaged)
	}
	if p.ID != id || p.Database != db {
		return nil, fmt.Errorf("progress record %s describes backup %s/%s: delete the backup (prune) or start a new one: %w", key, p.Database, p.ID, errProgressDamaged)
	}
	return p, nil
}

// getAll reads a whole small object.
func getAll(ctx context.Context, tgt Target, key string) ([]byte, error) {
	rc, err := tgt.Get(ctx, key, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxRecordSize+1))
	if err != nil {
		return nil, fmt.Errorf("get %s: read: %w", key, err)
	}
	if len(data) > maxRecordSize {
		return nil, fmt.Errorf("get %s: larger than %d bytes: not a record this tool wrote", key, maxRecordSize)
	}
	return data, nil
}
