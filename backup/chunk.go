package backup

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

var (
	// ErrMissingChunk: a chunk object the manifest lists is not in the target.
	ErrMissingChunk = errors.New("chunk object missing")
	// ErrCorruptChunk: a chunk object is truncated, altered, or does not decrypt or decompress to what the manifest says.
	ErrCorruptChunk = errors.New("chunk object corrupt")
)

// ChunkReader fetches a backup's chunk objects and turns them back into verified plaintext. It is safe for concurrent use.
type ChunkReader struct {
	tgt  Target
	m    *Manifest
	aead cipher.AEAD
	dec  *zstd.Decoder
	// stored holds download buffers, one per chunk being read.
	stored sync.Pool
}

// NewChunkReader checks the key against the manifest (ErrKeyRequired, ErrWrongKey) and prepares a decoder for up to
// parallel concurrent reads. Close it when done.
func NewChunkReader(tgt Target, m *Manifest, key []byte, parallel int) (*ChunkReader, error) {
	aead, err := openEncryption(m.Database, m.ID, m.Encryption, key)
	if err != nil {
		return nil, err
	}
	if parallel < 1 {
		parallel = 1
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(parallel),
		zstd.WithDecoderMaxMemory(uint64(m.ChunkSize)),
		zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		return nil, fmt.Errorf("backup %s: zstd decoder: %w", m.Name(), err)
	}
	return &ChunkReader{tgt: tgt, m: m, aead: aead, dec: dec}, nil
}

// Close releases the decoder.
func (r *ChunkReader) Close() { r.dec.Close() }

// Read downloads chunk c of file f and returns its plaintext, in dst's storage when it is large enough. Every check the
// manifest allows is made: stored size and CRC-32C, authentication tag, decompressed size and plaintext SHA-256. Errors
// name the backup, file, chunk and object and wrap ErrMissingChunk or ErrCorruptChunk.
func (r *ChunkReader) Read(ctx context.Context, f *File, c *Chunk, dst []byte) ([]byte, error) {
	key := r.m.ChunkKey(c.SHA256)
	where := fmt.Sprintf("backup %s: file %s: chunk at offset %d (object %s)", r.m.Name(), f.Name, c.Offset, key)
	bp, _ := r.stored.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer r.stored.Put(bp)
	stored, err := r.fetch(ctx, key, c.Stored, *bp)
	*bp = stored[:0]
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%s: %w: %v", where, ErrMissingChunk, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if int64(len(stored)) != c.Stored {
		return nil, fmt.Errorf("%s: the object holds %d bytes, the manifest says %d (truncated or replaced): %w", where, len(stored), c.Stored, ErrCorruptChunk)
	}
	if storedChecksum(stored) != c.StoredCRC32C {
		return nil, fmt.Errorf("%s: stored checksum mismatch (the object was altered): %w", where, ErrCorruptChunk)
	}
	compressed := stored
	if r.aead != nil {
		if len(stored) < nonceSize+tagSize {
			return nil, fmt.Errorf("%s: too short to be sealed: %w", where, ErrCorruptChunk)
		}
		compressed, err = r.aead.Open(stored[nonceSize:nonceSize], stored[:nonceSize], stored[nonceSize:], chunkAAD(r.m.ID, c.SHA256))
		if err != nil {
			return nil, fmt.Errorf("%s: fails authentication (altered, or sealed for another backup or chunk): %w", where, ErrCorruptChunk)
		}
	}
	if int64(cap(dst)) < c.Size {
		dst = make([]byte, 0, c.Size)
	}
	// The capacity limit makes the decoder refuse output beyond the chunk's size instead of growing the buffer.
	plain, err := r.dec.DecodeAll(compressed, dst[:0:c.Size])
	if err != nil {
		return nil, fmt.Errorf("%s: does not decompress (%v): %w", where, err, ErrCorruptChunk)
	}
	if int64(len(plain)) != c.Size {
		return nil, fmt.Errorf("%s: decompresses to %d bytes, the manifest says %d: %w", where, len(plain), c.Size, ErrCorruptChunk)
	}
	if sum := sha256.Sum256(plain); hex.EncodeToString(sum[:]) != c.SHA256 {
		return nil, fmt.Errorf("%s: plaintext checksum mismatch: %w", where, ErrCorruptChunk)
	}
	return plain, nil
}

// fetch reads the whole object into buf, reading at most one byte more than expected so an oversized object is detected
// without holding it.
func (r *ChunkReader) fetch(ctx context.Context, key string, want int64, buf []byte) ([]byte, error) {
	rc, err := r.tgt.Get(ctx, key, 0, -1)
	if err != nil {
		return buf[:0], fmt.Errorf("get: %w", err)
	}
	defer rc.Close()
	b := bytes.NewBuffer(buf[:0])
	if _, err := b.ReadFrom(io.LimitReader(rc, want+1)); err != nil {
		return b.Bytes(), fmt.Errorf("get: read: %w", err)
	}
	return b.Bytes(), nil
}

// castagnoli is the CRC-32C table: the stored bytes of a chunk only need a check against damage (the plaintext's SHA-256
// and, when encrypted, the authentication tag are the cryptographic checks), and CRC-32C costs next to nothing.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// storedChecksum is the CRC-32C of a chunk's stored bytes, as 8 hex digits.
func storedChecksum(b []byte) string { return fmt.Sprintf("%08x", crc32.Checksum(b, castagnoli)) }
