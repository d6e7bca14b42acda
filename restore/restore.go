// Package restore reads a backup (package backup) back out of a staging target into a database directory: it checks the
// key first, skips files already in place, downloads and verifies every other chunk in parallel with bounded memory,
// and hands the data to a Sink, which checks the files against the manifest, makes them durable, renames the directory
// into place and opens it to compare its journal position with the manifest. Verify checks a backup at three depths
// without touching any database.
//
// The package does not mount, adopt or catch up the restored database: that is the member's business.
package restore

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/mirrorkit/mirrorkit/backup"
)

// Options tune Run.
type Options struct {
	// Key is the key file's key, needed for an encrypted backup.
	Key []byte
	// Parallel is how many chunks are fetched and written at once (default 4); memory use is about
	// 2 × Parallel × the backup's chunk size.
	Parallel int
	// Progress, when set, is called with the plaintext bytes in place so far and the total.
	Progress func(done, total int64)
}

// chunkRef is one chunk of one file to fetch.
type chunkRef struct {
	file  *backup.File
	chunk *backup.Chunk
}

// Run restores the backup described by m into sink. Key problems (backup.ErrKeyRequired, backup.ErrWrongKey) are found
// before anything is written. Files the sink already holds with the manifest's size and SHA-256 are not fetched again.
// Any missing, truncated or corrupt chunk fails the restore (naming backup, file and chunk) and Commit is not called.
func Run(ctx context.Context, tgt backup.Target, m *backup.Manifest, sink Sink, opts Options) error {
	if opts.Parallel < 1 {
		opts.Parallel = backup.DefaultParallel
	}
	reader, err := backup.NewChunkReader(tgt, m, opts.Key, opts.Parallel)
	if err != nil {
		return err
	}
	defer reader.Close()
	existing, err := sink.Existing(ctx, m.ChunkSize)
	if err != nil {
		return fmt.Errorf("restore backup %s: %w", m.Name(), err)
	}
	have := make(map[FileSum]bool, len(existing))
	for _, f := range existing {
		have[f] = true
	}
	p := &progress{report: opts.Progress, total: m.Bytes}
	var todo []chunkRef
	for i := range m.Files {
		f := &m.Files[i]
		switch {
		case have[FileSum{Name: f.Name, Size: f.Size, SHA256: f.SHA256}]:
			p.advance(f.Size)
		case f.Size == 0:
			if err := sink.WriteAt(ctx, f.Name, 0, nil, ""); err != nil {
				return fmt.Errorf("restore backup %s: create empty file %s: %w", m.Name(), f.Name, err)
			}
		default:
			for j := range f.Chunks {
				todo = append(todo, chunkRef{f, &f.Chunks[j]})
			}
		}
	}
	refs := make(chan chunkRef)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(refs)
		for _, ref := range todo {
			select {
			case refs <- ref:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range opts.Parallel {
		g.Go(func() error {
			var buf []byte
			for ref := range refs {
				plain, err := reader.Read(gctx, ref.file, ref.chunk, buf)
				if err != nil {
					return fmt.Errorf("restore: %w", err)
				}
				if err := sink.WriteAt(gctx, ref.file.Name, ref.chunk.Offset, plain, ref.chunk.SHA256); err != nil {
					return fmt.Errorf("restore backup %s: write file %s at offset %d: %w", m.Name(), ref.file.Name, ref.chunk.Offset, err)
				}
				buf = plain[:0]
				p.advance(ref.chunk.Size)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := sink.Commit(ctx, m); err != nil {
		return fmt.Errorf("restore backup %s: %w", m.Name(), err)
	}
	return nil
}

// progress reports bytes in place, one call at a time and in increasing order.
type progress struct {
	mu     sync.Mutex
	report func(done, total int64)
	done   int64
	total  int64
}

func (p *progress) advance(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if p.report != nil {
		p.report(p.done, p.total)
	}
}
