package journal

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// ReadEncoded returns, without blocking, up to maxBytes of encoded durable
// record frames starting at from, for a sender that ships records without
// decoding them (the receiver appends them with AppendEncoded). from is a
// record boundary, a segment start (offset 0 or HeaderSize), the end of a
// segment or the durable end, as NewReader accepts; the zero Position means
// the oldest record. Records are never split and one call never crosses a
// segment boundary: next is the position after the last record returned,
// and at the end of a sealed segment the next call moves into the following
// segment (returning its records, with next there). A first record larger
// than maxBytes is returned whole, so that every call makes progress.
//
// An empty result with next == from means nothing durable is there yet
// (DurableNotify says when to look again); if the journal has failed, its
// sticky error is returned instead. Frames are checked (checksum and
// self-position) before they are returned. A position before the oldest
// segment is ErrPurged; one that is not a boundary, or lies beyond the durable
// end, is ErrBadPosition.
func (j *Journal) ReadEncoded(from Position, maxBytes int) (frames []byte, next Position, err error) {
	return j.readEncoded(from, maxBytes, false)
}

// ReadWritten is ReadEncoded up to what has been written to the segment files, synced or not: a stream to another member
// ships records while the group commit is still syncing them, so the other member's sync overlaps this one. Records shipped
// this way may be lost here by a crash before the sync; the receiving member then simply holds more than this one.
func (j *Journal) ReadWritten(from Position, maxBytes int) (frames []byte, next Position, err error) {
	return j.readEncoded(from, maxBytes, true)
}

// WrittenNotify returns a channel closed the next time the written end (or the durable end) advances, or the journal closes.
func (j *Journal) WrittenNotify() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.state == stateClosed || j.failed != nil {
		return closedChan
	}
	return j.writtenCh
}

// WrittenEnd is the end of what has been written to the segment files.
func (j *Journal) WrittenEnd() Position {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.written
}

func (j *Journal) readEncoded(from Position, maxBytes int, written bool) (frames []byte, next Position, err error) {
	j.mu.Lock()
	if j.state == stateClosed {
		j.mu.Unlock()
		return nil, from, ErrClosed
	}
	first, durable, failed := j.firstLocked(), j.durable, j.failed
	if written {
		durable = j.written // "durable" below is the limit of what may be read
	}
	start := from
	if start.IsZero() {
		start = first
	}
	if c := j.continueLocked(start); c != start {
		// The end of the newest purged segment: the caller goes on from the oldest segment.
		start, from = c, c
	}
	if start.Segment < first.Segment {
		j.mu.Unlock()
		return nil, from, fmt.Errorf("read journal %s from %s: %w; the oldest available position is %s", j.dir, from, ErrPurged, first)
	}
	if posBefore(durable, start) {
		j.mu.Unlock()
		return nil, from, fmt.Errorf("read journal %s from %s: %w: beyond the durable end %s", j.dir, from, ErrBadPosition, durable)
	}
	// limitOf is where the durable records of segment num end.
	limitOf := func(num uint64) int64 {
		if num == durable.Segment {
			return int64(durable.Offset)
		}
		return j.segs[num-first.Segment].end
	}
	seg, off := start.Segment, int64(start.Offset)
	limit := limitOf(seg)
	atBoundary := off == 0 || off == HeaderSize || off == limit
	if off == 0 {
		off = HeaderSize
	}
	moved := off == limit && seg < durable.Segment
	var here Position // the start of the next segment, when moving there
	if moved {
		seg, off, limit = seg+1, HeaderSize, limitOf(seg+1)
		here = Position{Epoch: j.segs[seg-first.Segment].epoch, Segment: seg, Offset: HeaderSize}
	}
	j.mu.Unlock()

	switch {
	case off < HeaderSize || off > limit:
		return nil, from, fmt.Errorf("read journal %s from %s: %w: offset outside segment %s (records end at %d)",
			j.dir, from, ErrBadPosition, segmentName(seg), limit)
	case off == limit && moved:
		return nil, here, nil
	case off == limit && failed != nil:
		return nil, from, failed
	case off == limit:
		return nil, from, nil
	}
	frames, epoch, err := j.readFrames(seg, off, limit, maxBytes, !atBoundary)
	if err != nil {
		return nil, from, fmt.Errorf("read journal %s from %s: %w", j.dir, from, err)
	}
	return frames, Position{Epoch: epoch, Segment: seg, Offset: uint64(off) + uint64(len(frames))}, nil
}

// readFrames reads whole, checked frames of segment num from off (before
// limit, the end of its durable records): at least one, then as many more as
// fit in maxBytes. It returns them and the epoch of the last one. If
// checkStart, off came from the caller and may not be a record boundary.
func (j *Journal) readFrames(num uint64, off, limit int64, maxBytes int, checkStart bool) ([]byte, uint64, error) {
	path := j.fs.PathJoin(j.dir, segmentName(num))
	f, err := j.fs.Open(path)
	if err != nil {
		if oldest := j.FirstPosition(); num < oldest.Segment {
			return nil, 0, fmt.Errorf("%w; the oldest available position is %s", ErrPurged, oldest)
		}
		return nil, 0, fmt.Errorf("open journal segment: %w", err)
	}
	defer f.Close() // read-only: nothing to lose

	buf := make([]byte, min(limit-off, int64(max(maxBytes, frameHeaderSize))))
	if err := readAt(f, buf, off); err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", path, err)
	}
	var epoch uint64
	n := 0
	for n < len(buf) {
		if n > 0 && len(buf)-n < frameHeaderSize {
			break
		}
		size, err := frameSize(buf[n:], limit-off-int64(n))
		if err == nil && n+size > len(buf) {
			if n > 0 {
				break
			}
			// The first frame is larger than maxBytes: return it whole.
			more := make([]byte, size)
			copy(more, buf)
			if err := readAt(f, more[len(buf):], off+int64(len(buf))); err != nil {
				return nil, 0, fmt.Errorf("read %s: %w", path, err)
			}
			buf = more
		}
		if err == nil {
			epoch, err = checkFrame(buf[n:n+size], num, off+int64(n))
		}
		if err != nil {
			if n == 0 && checkStart && errors.Is(err, ErrCorrupt) {
				return nil, 0, fmt.Errorf("%w: no record starts there (%v)", ErrBadPosition, err)
			}
			return nil, 0, atOffset(path, off+int64(n), err)
		}
		n += size
	}
	return buf[:n:n], epoch, nil
}

func readAt(f io.ReaderAt, b []byte, off int64) error {
	if n, err := f.ReadAt(b, off); n < len(b) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// frameSize returns the size of the frame whose header starts b, when
// avail bytes of records remain from there (b may hold fewer, but holds the
// frame header if avail does).
func frameSize(b []byte, avail int64) (int, error) {
	if avail < frameHeaderSize {
		return 0, fmt.Errorf("%w: incomplete frame header (%d of %d bytes)", ErrCorrupt, avail, frameHeaderSize)
	}
	length, sum := frameHeader(b)
	switch {
	case length == 0 && sum == 0:
		return 0, fmt.Errorf("%w: zero frame header before the end of records", ErrCorrupt)
	case length == 0:
		return 0, fmt.Errorf("%w: zero payload length with a non-zero checksum", ErrCorrupt)
	case length > MaxPayloadSize:
		return 0, fmt.Errorf("%w: payload length %d exceeds the maximum %d", ErrCorrupt, length, MaxPayloadSize)
	case frameHeaderSize+int64(length) > avail:
		return 0, fmt.Errorf("%w: incomplete frame (%d of %d bytes)", ErrCorrupt, avail, frameHeaderSize+int64(length))
	}
	return frameHeaderSize + int(length), nil
}

// checkFrame verifies the checksum of a whole frame found at offset off of
// segment num and that its record says it is there, without decoding the
// rest of the payload, and returns the record's epoch.
func checkFrame(frame []byte, num uint64, off int64) (uint64, error) {
	_, sum := frameHeader(frame)
	payload := frame[frameHeaderSize:]
	if got := crc32.Checksum(payload, castagnoli); got != sum {
		return 0, fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, sum, got)
	}
	if len(payload) < 3 {
		return 0, fmt.Errorf("%w: payload of %d bytes is too short", ErrCorrupt, len(payload))
	}
	if !readableVersion(payload[0]) {
		return 0, unsupportedVersion(payload[0])
	}
	d := payloadDecoder{buf: payload, off: 3}
	epoch, seg, at := d.uvarint(), d.uvarint(), d.uvarint()
	if d.err != "" {
		return 0, fmt.Errorf("%w: payload byte %d: %s", ErrCorrupt, d.off, d.err)
	}
	if seg != num || at != uint64(off) {
		return 0, fmt.Errorf("%w: record says it is at segment %d offset %d", ErrCorrupt, seg, at)
	}
	return epoch, nil
}

// closedChan is returned by DurableNotify when nothing will ever advance.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// DurableNotify returns a channel that is closed the next time DurableEnd
// advances or the journal closes, so that a sender can wait for new records
// without polling. The channel may also close without progress (after a
// failure, for instance); callers look again and ask for a new channel. On a
// closed or failed journal it is already closed.
func (j *Journal) DurableNotify() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.state == stateClosed || j.failed != nil {
		return closedChan
	}
	return j.durableCh
}

// SegmentEnd reports whether p (its epoch aside) is the end of the records of
// a segment that has a successor: the same place in the journal as the
// successor's first position, HeaderSize in segment p.Segment+1.
func (j *Journal) SegmentEnd(p Position) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	first := j.segs[0].num
	if p.Segment < first || p.Segment-first >= uint64(len(j.segs)-1) {
		return false
	}
	return uint64(j.segs[p.Segment-first].end) == p.Offset
}
