package journal

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// batch is the buffer Append encodes into: one chunk of contiguous bytes per
// segment it touches. Two batches alternate, so appends fill one while the
// leader writes the other, and their buffers are reused.
type batch struct {
	chunks  []chunk
	used    int
	records int
	txns    int
	bytes   int
	end     Position
}

type chunk struct {
	seg    uint64
	epoch  uint64 // header epoch when create is set
	create bool   // the segment file does not exist yet
	offset int64  // file offset of buf[0]
	buf    []byte
}

// maxRetainedBuffer bounds what a batch keeps between uses, so one huge
// record does not pin its buffer forever.
const maxRetainedBuffer = 8 << 20

// chunkFor returns the chunk that records starting at pos go into.
func (b *batch) chunkFor(pos Position, epoch uint64, create bool) *chunk {
	if b.used > 0 && !create {
		if c := &b.chunks[b.used-1]; c.seg == pos.Segment {
			return c
		}
	}
	if b.used == len(b.chunks) {
		b.chunks = append(b.chunks, chunk{})
	}
	c := &b.chunks[b.used]
	b.used++
	*c = chunk{seg: pos.Segment, epoch: epoch, create: create, offset: int64(pos.Offset), buf: c.buf[:0]}
	return c
}

func (b *batch) reset() {
	for i := range b.chunks[:b.used] {
		if cap(b.chunks[i].buf) > maxRetainedBuffer {
			b.chunks[i].buf = nil
		}
	}
	b.used, b.records, b.txns, b.bytes = 0, 0, 0, 0
}

// preallocStep is how far ahead of the data a segment file is zero-filled.
// Overwriting blocks that are already allocated and written, within the file
// size, lets the sync skip every metadata update, which makes group-commit
// syncs markedly cheaper (zeros, not fallocate: unwritten extents still need
// a metadata update on first write). Small steps keep the occasional sync
// that flushes the zeros short.
const preallocStep = 1 << 20

// segmentWriter owns the file of the segment being appended to.
type segmentWriter struct {
	fs          vfs.FS
	dir         string
	segmentSize int64
	f           vfs.File
	num         uint64
	path        string
	size        int64 // file size, including preallocated zeros
	zeros       []byte
}

// create makes segment num: create, write the header, sync the file, sync
// the directory.
func (w *segmentWriter) create(num, epoch uint64) error {
	path := w.fs.PathJoin(w.dir, segmentName(num))
	f, err := w.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	w.f, w.num, w.path, w.size = f, num, path, 0
	if _, err := f.WriteAt(encodeHeader(num, epoch), 0); err != nil {
		return fmt.Errorf("write header of %s: %w", path, err)
	}
	w.size = HeaderSize
	if err := w.reserve(HeaderSize + 1); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return syncDir(w.fs, w.dir)
}

// openExisting opens the last segment found by recovery for appending.
func (w *segmentWriter) openExisting(num uint64, size int64) error {
	path := w.fs.PathJoin(w.dir, segmentName(num))
	f, err := w.fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("open %s for writing: %w", path, err)
	}
	w.f, w.num, w.path, w.size = f, num, path, size
	return nil
}

// roll seals the current segment (its data must be durable before a later
// segment exists, since recovery only forgives a torn tail in the last one)
// and creates segment num.
func (w *segmentWriter) roll(num, epoch uint64) error {
	if err := w.f.SyncData(); err != nil {
		return fmt.Errorf("sync %s: %w", w.path, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", w.path, err)
	}
	w.f = nil
	return w.create(num, epoch)
}

func (w *segmentWriter) write(b []byte, off int64) error {
	if err := w.reserve(off + int64(len(b))); err != nil {
		return err
	}
	if _, err := w.f.WriteAt(b, off); err != nil {
		return fmt.Errorf("write %s at offset %d: %w", w.path, off, err)
	}
	return nil
}

// reserve zero-fills the file to cover end, a preallocation step at a time
// and not past the segment size unless the data itself goes further.
func (w *segmentWriter) reserve(end int64) error {
	if end <= w.size {
		return nil
	}
	target := min((end+preallocStep-1)/preallocStep*preallocStep, max(w.segmentSize, end))
	if err := w.writeZeros(w.size, target); err != nil {
		return fmt.Errorf("extend %s to %d bytes: %w", w.path, target, err)
	}
	w.size = target
	return nil
}

func (w *segmentWriter) writeZeros(from, to int64) error {
	if w.zeros == nil {
		w.zeros = make([]byte, preallocStep)
	}
	for off := from; off < to; {
		n := min(int64(len(w.zeros)), to-off)
		// A File may modify what it is given to write.
		clear(w.zeros[:n])
		if _, err := w.f.WriteAt(w.zeros[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

func (w *segmentWriter) sync() error {
	if err := w.f.SyncData(); err != nil {
		return fmt.Errorf("sync %s: %w", w.path, err)
	}
	return nil
}

// cut zeroes the torn tail [starts[0], dataEnd). It goes backwards, one
// record at a time with a sync after each, so that a crash while cutting
// never leaves a valid record after a damaged one.
func (w *segmentWriter) cut(starts []int64, dataEnd int64) error {
	for i := len(starts) - 1; i >= 0; i-- {
		to := dataEnd
		if i+1 < len(starts) {
			to = starts[i+1]
		}
		if err := w.writeZeros(starts[i], to); err != nil {
			return fmt.Errorf("cut %s at offset %d: %w", w.path, starts[i], err)
		}
		if err := w.sync(); err != nil {
			return err
		}
	}
	return nil
}

func (w *segmentWriter) close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("close %s: %w", w.path, err)
	}
	return nil
}

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("close directory %s: %w", dir, err)
	}
	return nil
}
