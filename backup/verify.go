package backup

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
)

// chunkRef is one distinct chunk object of a backup and the first place it is used.
type chunkRef struct {
	file  *File
	chunk *Chunk
}

// distinctChunks lists each chunk object of the manifest once.
func distinctChunks(m *Manifest) []chunkRef {
	seen := map[string]bool{}
	var out []chunkRef
	for i := range m.Files {
		f := &m.Files[i]
		for j := range f.Chunks {
			c := &f.Chunks[j]
			if !seen[c.SHA256] {
				seen[c.SHA256] = true
				out = append(out, chunkRef{f, c})
			}
		}
	}
	return out
}

// VerifyObjects checks (level 1) that the target lists every chunk object of the backup with its stored size. It reads
// no chunk, so an object altered in place without changing its size passes; VerifyChunks catches that.
func VerifyObjects(ctx context.Context, tgt Target, m *Manifest) error {
	prefix := chunkPrefix(m.Database, m.ID)
	objs, err := tgt.List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("verify backup %s: list %s: %w", m.Name(), prefix, err)
	}
	sizes := make(map[string]int64, len(objs))
	for _, o := range objs {
		sizes[o.Key] = o.Size
	}
	for _, ref := range distinctChunks(m) {
		key := m.ChunkKey(ref.chunk.SHA256)
		size, ok := sizes[key]
		where := fmt.Sprintf("backup %s: file %s: chunk at offset %d (object %s)", m.Name(), ref.file.Name, ref.chunk.Offset, key)
		if !ok {
			return fmt.Errorf("%s: not in the target: %w", where, ErrMissingChunk)
		}
		if size != ref.chunk.Stored {
			return fmt.Errorf("%s: the object holds %d bytes, the manifest says %d: %w", where, size, ref.chunk.Stored, ErrCorruptChunk)
		}
	}
	return nil
}

// VerifyChunks checks (level 2) every chunk object of the backup by reading it back as a restore would, parallel at a
// time: stored checksum, authentication, decompression, size and plaintext checksum. An encrypted backup needs its key.
func VerifyChunks(ctx context.Context, tgt Target, m *Manifest, key []byte, parallel int) error {
	if parallel < 1 {
		parallel = DefaultParallel
	}
	r, err := NewChunkReader(tgt, m, key, parallel)
	if err != nil {
		return err
	}
	defer r.Close()
	refs := make(chan chunkRef)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(refs)
		for _, ref := range distinctChunks(m) {
			select {
			case refs <- ref:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range parallel {
		g.Go(func() error {
			var buf []byte
			for ref := range refs {
				plain, err := r.Read(gctx, ref.file, ref.chunk, buf)
				if err != nil {
					return err
				}
				buf = plain[:0]
			}
			return nil
		})
	}
	return g.Wait()
}
