package journal

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Reader reads durable records in order, following segment rolls. It opens
// the segment files itself, so readers do not slow the writer or each other.
// A Reader is used by one goroutine at a time; to stop one blocked in Next,
// cancel its context.
type Reader struct {
	j      *Journal
	seg    uint64
	off    int64
	epoch  uint64 // epoch of the last record read (Position reports it)
	f      vfs.File
	w      window
	closed bool
}

// NewReader returns a reader positioned at from, which must be a record
// boundary, the start of a segment (offset 0 or HeaderSize) or the durable
// end. The zero Position means the oldest available record. A position before
// the oldest segment is ErrPurged; one that is not a boundary, or lies beyond
// the durable end, is ErrBadPosition. The epoch of from is not used to locate
// the record.
func (j *Journal) NewReader(from Position) (*Reader, error) {
	j.mu.Lock()
	if j.state == stateClosed {
		j.mu.Unlock()
		return nil, ErrClosed
	}
	first := j.firstLocked()
	if from.IsZero() {
		from = first
	}
	from = j.continueLocked(from)
	durable := j.durable
	var limit int64
	var headerEpoch uint64
	if from.Segment >= first.Segment && from.Segment <= durable.Segment {
		s := j.segs[from.Segment-first.Segment]
		headerEpoch, limit = s.epoch, s.end
		if from.Segment == durable.Segment {
			limit = int64(durable.Offset)
		}
	}
	j.mu.Unlock()

	switch {
	case from.Segment < first.Segment:
		return nil, fmt.Errorf("read journal %s from %s: %w; the oldest available position is %s", j.dir, from, ErrPurged, first)
	case posBefore(durable, from):
		return nil, fmt.Errorf("read journal %s from %s: %w: beyond the durable end %s", j.dir, from, ErrBadPosition, durable)
	}
	r := &Reader{j: j, seg: from.Segment, off: int64(from.Offset), epoch: from.Epoch}
	if r.off == 0 || r.off == HeaderSize {
		r.off = HeaderSize
		if r.epoch == 0 {
			r.epoch = headerEpoch
		}
		return r, nil
	}
	if r.off == limit {
		return r, nil
	}
	if r.off < HeaderSize || r.off > limit {
		return nil, fmt.Errorf("read journal %s from %s: %w: offset outside segment %s (records end at %d)",
			j.dir, from, ErrBadPosition, segmentName(from.Segment), limit)
	}
	if err := r.checkBoundary(limit); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("read journal %s from %s: %w", j.dir, from, err)
	}
	return r, nil
}

// checkBoundary verifies that a valid record of this segment says it starts
// at r.off: a position inside a record fails the checksum or the self-check.
func (r *Reader) checkBoundary(limit int64) error {
	if err := r.open(limit); err != nil {
		return err
	}
	if _, _, err := readFrame(&r.w, r.seg, r.off, limit); err != nil {
		if errors.Is(err, ErrCorrupt) || errors.Is(err, errEndOfRecords) {
			return fmt.Errorf("%w: no record starts there (%v)", ErrBadPosition, err)
		}
		return err
	}
	return nil
}

func (r *Reader) path() string { return r.j.fs.PathJoin(r.j.dir, segmentName(r.seg)) }

// open opens the current segment if needed; limit bounds what may be read.
func (r *Reader) open(limit int64) error {
	if r.f == nil {
		f, err := r.j.fs.Open(r.path())
		if err != nil {
			return r.purgedOr(fmt.Errorf("open journal segment: %w", err))
		}
		r.f = f
		r.w = window{f: f}
	}
	// Bytes below the old limit stay buffered: durable bytes never change.
	r.w.size = limit
	return nil
}

// purgedOr reports ErrPurged if the reader's segment has been purged, since
// that explains any failure to read it, and err otherwise.
func (r *Reader) purgedOr(err error) error {
	if first := r.j.FirstPosition(); r.seg < first.Segment {
		return r.purged(first)
	}
	return err
}

func (r *Reader) purged(first Position) error {
	return fmt.Errorf("read journal %s at %s: %w; the oldest available position is %s", r.j.dir, r.Position(), ErrPurged, first)
}

// Next returns the next durable record, blocking until there is one, ctx
// ends (ctx.Err()) or the journal closes (ErrClosed, or the sticky failure).
// A record that is already durable is returned even if ctx is done, so a done
// context makes Next a poll. The returned slices belong to the caller.
func (r *Reader) Next(ctx context.Context) (Record, error) {
	j := r.j
	for {
		if r.closed {
			return Record{}, ErrClosed
		}
		j.mu.Lock()
		first := j.segs[0].num
		if r.seg < first {
			oldest := j.firstLocked()
			j.mu.Unlock()
			return Record{}, r.purged(oldest)
		}
		var limit int64
		sealed := r.seg < j.durable.Segment
		var nextEpoch uint64
		switch {
		case sealed:
			limit = j.segs[r.seg-first].end
			nextEpoch = j.segs[r.seg-first+1].epoch
		case r.seg == j.durable.Segment:
			limit = int64(j.durable.Offset)
		default:
			limit = r.off
		}
		state, failed, ch := j.state, j.failed, j.durableCh
		j.mu.Unlock()

		if r.off < limit {
			return r.read(limit)
		}
		if sealed {
			r.nextSegment(nextEpoch)
			continue
		}
		switch {
		case failed != nil:
			return Record{}, failed
		case state == stateClosed:
			return Record{}, ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Record{}, ctx.Err()
		}
	}
}

func (r *Reader) read(limit int64) (Record, error) {
	if err := r.open(limit); err != nil {
		return Record{}, err
	}
	rec, n, err := readFrame(&r.w, r.seg, r.off, limit)
	if errors.Is(err, errEndOfRecords) {
		err = fmt.Errorf("%w: zero frame header before the end of records at %d", ErrCorrupt, limit)
	}
	if err != nil {
		return Record{}, r.purgedOr(atOffset(r.path(), r.off, err))
	}
	r.off += n
	r.epoch = rec.Pos.Epoch
	return ownRecord(rec), nil
}

func (r *Reader) nextSegment(epoch uint64) {
	if r.f != nil {
		_ = r.f.Close() // read-only: nothing to lose
		r.f = nil
	}
	r.seg++
	r.off = HeaderSize
	r.epoch = epoch
}

// ownRecord copies the byte slices of rec (which alias a read buffer) into
// one new allocation.
func ownRecord(rec Record) Record {
	buf := make([]byte, 0, len(rec.Key)+len(rec.Value)+len(rec.Before))
	buf = append(buf, rec.Key...)
	rec.Key = buf[0:len(rec.Key):len(rec.Key)]
	if rec.HasValue {
		start := len(buf)
		buf = append(buf, rec.Value...)
		rec.Value = buf[start:len(buf):len(buf)]
	}
	if rec.HasBefore {
		start := len(buf)
		buf = append(buf, rec.Before...)
		rec.Before = buf[start:len(buf):len(buf)]
	}
	return rec
}

// Position is the position of the next record to read. Its epoch is that of
// the last record read.
func (r *Reader) Position() Position {
	return Position{Epoch: r.epoch, Segment: r.seg, Offset: uint64(r.off)}
}

// Close releases the reader's file.
func (r *Reader) Close() error {
	r.closed = true
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	if err != nil {
		return fmt.Errorf("close %s: %w", r.path(), err)
	}
	return nil
}
