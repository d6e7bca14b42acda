package backup

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
)

// ManifestVersion is the manifest format this package writes and the newest it reads.
const ManifestVersion = 1

// Algorithms recorded in a manifest.
const (
	CompressionZstd  = "zstd"
	EncryptionAESGCM = "AES-256-GCM"
)

// Bounds of Options.ChunkSize and of a manifest's chunk size.
const (
	MinChunkSize = 1 << 10
	MaxChunkSize = 256 << 20
)

var (
	// ErrManifestTampered: the manifest's checksum does not match its content.
	ErrManifestTampered = errors.New("manifest checksum mismatch")
	// ErrManifestInvalid: the manifest is malformed, inconsistent or of a version this tool does not read.
	ErrManifestInvalid = errors.New("invalid manifest")
)

// Manifest describes one complete backup. Its JSON form is the commit point of the backup.
type Manifest struct {
	Version        int              `json:"version"`
	ID             string           `json:"id"`
	Database       string           `json:"database"`
	Mirror         string           `json:"mirror,omitempty"`
	Member         string           `json:"member,omitempty"`
	Created        time.Time        `json:"created"`
	Finished       time.Time        `json:"finished"`
	Position       journal.Position `json:"position"`
	DatabaseFormat int              `json:"database_format"`
	ToolVersion    string           `json:"tool_version"`
	Compression    Compression      `json:"compression"`
	ChunkSize      int64            `json:"chunk_size"`
	Encryption     *Encryption      `json:"encryption"`
	Files          []File           `json:"files"`
	LogicalHash    LogicalHash      `json:"logical_hash"`
	Bytes          int64            `json:"bytes"`
	StoredBytes    int64            `json:"stored_bytes"`
	Checksum       string           `json:"checksum"`
}

// Compression is how chunks were compressed.
type Compression struct {
	Algorithm string `json:"algorithm"`
	Level     int    `json:"level"`
}

// Encryption is how chunks were sealed: WrappedKey is nonce || AES-256-GCM(data key) under the key file's key.
type Encryption struct {
	Algorithm  string `json:"algorithm"`
	KeyID      string `json:"key_id"`
	WrappedKey []byte `json:"wrapped_key"`
}

// File is one file of the database directory and the chunks that tile it.
type File struct {
	Name   string  `json:"name"`
	Size   int64   `json:"size"`
	SHA256 string  `json:"sha256"`
	Chunks []Chunk `json:"chunks"`
}

// Chunk is one piece of a file. Its object is named after SHA256 (of the plaintext); Stored and StoredCRC32C describe the
// object's bytes as the target holds them.
type Chunk struct {
	Offset       int64  `json:"offset"`
	Size         int64  `json:"size"`
	SHA256       string `json:"sha256"`
	Stored       int64  `json:"stored"`
	StoredCRC32C string `json:"stored_crc32c"`
}

// LogicalHash is the source database's logical hash (store.LogicalHash without the name, which the manifest already has).
type LogicalHash struct {
	Nodes  uint64 `json:"nodes"`
	SHA256 string `json:"sha256"`
}

// Name is DB/ID, how errors and listings refer to a backup.
func (m *Manifest) Name() string { return m.Database + "/" + m.ID }

// Encrypted reports whether the chunks are sealed.
func (m *Manifest) Encrypted() bool { return m.Encryption != nil }

// ChunkKey is the target key of the object holding the chunk whose plaintext has this SHA-256.
func (m *Manifest) ChunkKey(sha string) string { return chunkKey(m.Database, m.ID, sha) }

// Marshal sets the checksum and returns the manifest's stored form.
func (m *Manifest) Marshal() ([]byte, error) {
	sum, err := m.checksum()
	if err != nil {
		return nil, err
	}
	m.Checksum = sum
	return json.MarshalIndent(m, "", "  ")
}

// checksum is the SHA-256 of the compact JSON encoding with an empty checksum field.
func (m *Manifest) checksum() (string, error) {
	c := *m
	c.Checksum = ""
	data, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("encode manifest of backup %s: %w", m.Name(), err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// DecodeManifest parses and checks a stored manifest: known version, no unknown fields, matching checksum, and a consistent
// content (chunks tile every file exactly, sizes and totals agree, names are safe relative paths).
func DecodeManifest(data []byte) (*Manifest, error) {
	var probe struct {
		Version int    `json:"version"`
		ID      string `json:"id"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("manifest is malformed (%v): it is damaged; do not restore it: %w", err, ErrManifestInvalid)
	}
	name := "backup " + probe.ID
	if probe.ID == "" {
		name = "backup"
	}
	if probe.Version > ManifestVersion {
		return nil, fmt.Errorf("manifest of %s has version %d, this tool reads up to version %d: use a newer release to restore it: %w",
			name, probe.Version, ManifestVersion, ErrManifestInvalid)
	}
	if probe.Version < 1 {
		return nil, fmt.Errorf("manifest of %s has version %d: it is damaged; do not restore it: %w", name, probe.Version, ErrManifestInvalid)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest of %s is malformed (%v): it is damaged; do not restore it: %w", name, err, ErrManifestInvalid)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("manifest of %s has data after its end: it is damaged; do not restore it: %w", name, ErrManifestInvalid)
	}
	sum, err := m.checksum()
	if err != nil {
		return nil, err
	}
	if sum != m.Checksum {
		return nil, fmt.Errorf("manifest of %s: checksum mismatch: it is damaged or was edited; do not restore it: %w", name, ErrManifestTampered)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("manifest of %s: %w; do not restore it: %w", name, err, ErrManifestInvalid)
	}
	return &m, nil
}

// validate checks the content of a manifest whose checksum matched.
func (m *Manifest) validate() error {
	if err := checkID(m.ID); err != nil {
		return err
	}
	if canon, err := store.CanonicalDatabaseName(m.Database); err != nil || canon != m.Database {
		return fmt.Errorf("database name %q is not a canonical database name", m.Database)
	}
	if m.Created.IsZero() {
		return errors.New("no creation time")
	}
	if m.Compression.Algorithm != CompressionZstd || m.Compression.Level < 1 || m.Compression.Level > 22 {
		return fmt.Errorf("unknown compression %s level %d", m.Compression.Algorithm, m.Compression.Level)
	}
	if m.ChunkSize < MinChunkSize || m.ChunkSize > MaxChunkSize {
		return fmt.Errorf("chunk size %d out of range", m.ChunkSize)
	}
	if e := m.Encryption; e != nil {
		if e.Algorithm != EncryptionAESGCM || !isHex(e.KeyID, keyIDLen) || len(e.WrappedKey) != wrappedKeyLen {
			return fmt.Errorf("unknown encryption %s (key id %q, wrapped key of %d bytes)", e.Algorithm, e.KeyID, len(e.WrappedKey))
		}
	}
	if !isHex(m.LogicalHash.SHA256, 64) {
		return fmt.Errorf("logical hash %q is not a SHA-256", m.LogicalHash.SHA256)
	}
	if len(m.Files) == 0 {
		return errors.New("no files")
	}
	names := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		names[f.Name] = true
	}
	type object struct {
		size, stored int64
		storedSHA    string
	}
	objects := map[string]object{}
	var total, stored int64
	for _, f := range m.Files {
		if err := CheckFileName(f.Name); err != nil {
			return err
		}
		for dir := path.Dir(f.Name); dir != "."; dir = path.Dir(dir) {
			if names[dir] {
				return fmt.Errorf("file %s is inside %s, which is also a file", f.Name, dir)
			}
		}
		if f.Size < 0 || !isHex(f.SHA256, 64) {
			return fmt.Errorf("file %s: bad size %d or checksum %q", f.Name, f.Size, f.SHA256)
		}
		var next int64
		for _, c := range f.Chunks {
			if c.Offset != next || c.Size < 1 || c.Size > m.ChunkSize || c.Stored < 1 || !isHex(c.SHA256, 64) || !isHex(c.StoredCRC32C, 8) {
				return fmt.Errorf("file %s: chunk at offset %d (size %d, stored %d) does not continue the file at %d", f.Name, c.Offset, c.Size, c.Stored, next)
			}
			next += c.Size
			o := object{c.Size, c.Stored, c.StoredCRC32C}
			if prev, ok := objects[c.SHA256]; ok {
				if prev != o {
					return fmt.Errorf("file %s: chunk %s is described twice differently", f.Name, c.SHA256)
				}
				continue
			}
			objects[c.SHA256] = o
			stored += c.Stored
		}
		if next != f.Size {
			return fmt.Errorf("file %s: chunks cover %d bytes of %d", f.Name, next, f.Size)
		}
		total += f.Size
		if total < 0 {
			return errors.New("total size overflows")
		}
	}
	if total != m.Bytes || stored != m.StoredBytes {
		return fmt.Errorf("totals %d bytes (%d stored) disagree with the files' %d (%d stored)", m.Bytes, m.StoredBytes, total, stored)
	}
	return nil
}

// CheckFileName accepts the file names a backup may hold: slash-separated relative paths without "." or ".." elements,
// since restore writes them under a directory.
func CheckFileName(name string) error {
	if name == "." || !fs.ValidPath(name) || strings.Contains(name, `\`) {
		return fmt.Errorf("file name %q is not a relative slash path inside the database directory", name)
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

const idTimeLayout = "20060102T150405Z"

// newID returns an ID made of the UTC time and a random suffix.
func newID(now time.Time) (string, error) {
	var r [2]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("backup id: %w", err)
	}
	return now.UTC().Format(idTimeLayout) + "-" + hex.EncodeToString(r[:]), nil
}

// checkID accepts IDs of the form newID makes, so they are safe as key elements.
func checkID(id string) error {
	_, err := idTime(id)
	return err
}

// idTime is the start time an ID carries.
func idTime(id string) (time.Time, error) {
	stamp, suffix, ok := strings.Cut(id, "-")
	t, err := time.Parse(idTimeLayout, stamp)
	if !ok || err != nil || !isHex(suffix, 4) {
		return time.Time{}, fmt.Errorf("backup id %q: want a UTC time and a suffix, e.g. 20261126T173000Z-4f2a", id)
	}
	return t, nil
}

func backupPrefix(db, id string) string  { return db + "/" + id + "/" }
func manifestKey(db, id string) string   { return backupPrefix(db, id) + "manifest.json" }
func progressKey(db, id string) string   { return backupPrefix(db, id) + "progress.json" }
func chunkPrefix(db, id string) string   { return backupPrefix(db, id) + "chunks/" }
func chunkKey(db, id, sha string) string { return chunkPrefix(db, id) + sha }

// FileDigest is a file's SHA-256 as a manifest records it: the SHA-256 of its chunks' SHA-256 digests (raw, in order).
// Deriving it from the chunks costs no second pass over the data; a file is still pinned down byte for byte.
func FileDigest(chunks []Chunk) (string, error) {
	h := sha256.New()
	for _, c := range chunks {
		d, err := hex.DecodeString(c.SHA256)
		if err != nil || len(d) != sha256.Size {
			return "", fmt.Errorf("chunk at offset %d: bad SHA-256 %q", c.Offset, c.SHA256)
		}
		h.Write(d)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// DigestReader reads r to its end in pieces of chunkSize and returns its length and FileDigest.
func DigestReader(r io.Reader, chunkSize int64) (int64, string, error) {
	file, piece := sha256.New(), sha256.New()
	var n int64
	for {
		piece.Reset()
		m, err := io.CopyN(piece, r, chunkSize)
		n += m
		if m > 0 {
			file.Write(piece.Sum(nil))
		}
		if errors.Is(err, io.EOF) {
			return n, hex.EncodeToString(file.Sum(nil)), nil
		}
		if err != nil {
			return n, "", err
		}
	}
}
