package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The end of the newest purged segment is kept in a small file beside the segments, so that a reader left exactly there
// (everything before the purge read, nothing after it) continues at the oldest segment instead of being told its position
// is purged: the two positions are the same place in the record sequence.
//
// Format (36 bytes): magic "MKPURGED", segment number, offset and epoch of that end (uint64 each), CRC32C of the first 32
// bytes; little-endian. The file is an optimisation: one that is missing, unreadable or about another segment is ignored.
const (
	purgedEndFile  = "purged-end"
	purgedEndMagic = "MKPURGED"
	purgedEndSize  = 36
)

func encodePurgedEnd(p Position) []byte {
	b := make([]byte, purgedEndSize)
	copy(b, purgedEndMagic)
	binary.LittleEndian.PutUint64(b[8:], p.Segment)
	binary.LittleEndian.PutUint64(b[16:], p.Offset)
	binary.LittleEndian.PutUint64(b[24:], p.Epoch)
	binary.LittleEndian.PutUint32(b[32:], crc32.Checksum(b[:32], castagnoli))
	return b
}

func decodePurgedEnd(b []byte) (Position, error) {
	switch {
	case len(b) != purgedEndSize:
		return Position{}, fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, len(b), purgedEndSize)
	case string(b[:8]) != purgedEndMagic:
		return Position{}, fmt.Errorf("%w: bad magic %q", ErrCorrupt, b[:8])
	case crc32.Checksum(b[:32], castagnoli) != binary.LittleEndian.Uint32(b[32:]):
		return Position{}, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return Position{
		Segment: binary.LittleEndian.Uint64(b[8:]),
		Offset:  binary.LittleEndian.Uint64(b[16:]),
		Epoch:   binary.LittleEndian.Uint64(b[24:]),
	}, nil
}

// writePurgedEnd replaces the file atomically (temporary file, sync, rename, directory sync).
func writePurgedEnd(fs vfs.FS, dir string, p Position) error {
	path := fs.PathJoin(dir, purgedEndFile)
	tmp := path + ".tmp"
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("record the purged end: %w", err)
	}
	if _, err := f.Write(encodePurgedEnd(p)); err != nil {
		_ = f.Close()
		return fmt.Errorf("record the purged end: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("record the purged end: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("record the purged end: close %s: %w", tmp, err)
	}
	if err := fs.Rename(tmp, path); err != nil {
		return fmt.Errorf("record the purged end: %w", err)
	}
	return syncDir(fs, dir)
}

// readPurgedEnd returns the recorded end, or the zero Position when there is none (or it cannot be read: the error says why).
func readPurgedEnd(fs vfs.FS, dir string) (Position, error) {
	path := fs.PathJoin(dir, purgedEndFile)
	f, err := fs.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return Position{}, nil
	}
	if err != nil {
		return Position{}, err
	}
	defer f.Close() // read-only
	b, err := io.ReadAll(io.LimitReader(f, purgedEndSize+1))
	if err != nil {
		return Position{}, fmt.Errorf("read %s: %w", path, err)
	}
	p, err := decodePurgedEnd(b)
	if err != nil {
		return Position{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// continueLocked maps the end of the newest purged segment to the start of the oldest segment present; any other position is
// returned as it is. j.mu is held.
func (j *Journal) continueLocked(from Position) Position {
	first := j.firstLocked()
	pe := j.purgedEnd
	if !pe.IsZero() && from.Segment == pe.Segment && from.Offset == pe.Offset && pe.Segment+1 == first.Segment {
		return first
	}
	return from
}

// Continue returns the position a reader at from goes on from: the start of the oldest segment present when from is exactly
// the end of the newest purged segment (nothing after it was purged), otherwise from itself.
func (j *Journal) Continue(from Position) Position {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.continueLocked(from)
}

// Purged reports whether records from pos on are no longer all present: pos lies before the oldest segment and is not the
// end of the newest purged one. The zero Position (the oldest available record) is never purged.
func (j *Journal) Purged(pos Position) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return !pos.IsZero() && j.continueLocked(pos).Segment < j.firstLocked().Segment
}
