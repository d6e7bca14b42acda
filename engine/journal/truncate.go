package journal

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// truncatingSuffix names the shortened copy of a segment that TruncateAfter
// writes before renaming it over the segment.
const truncatingSuffix = ".truncating"

// truncation is what TruncateAfter found and will do.
type truncation struct {
	seg     uint64 // segment holding the cut
	idx     int    // its index in segs
	off     int64  // the cut: everything from here goes
	dataEnd int64  // end of the segment's records before the cut
	epoch   uint64 // epoch of the last record kept in seg (its header epoch if none)
	txnOpen bool   // the last record kept in seg does not end its transaction
	removed []Record
}

// TruncateAfter discards every record at or after pos, a record boundary (or
// segment start, or end) between the start of the oldest segment and the end
// of the journal; afterwards the journal ends at pos and Append continues
// from there. It is for a member whose journal has a tail that the other
// members never got (a former primary rejoining), and returns the records
// removed, oldest first, so that they can be kept aside.
//
// Everything appended is made durable first, and appends wait while the
// files change. The steps are crash-safe, each leaving a valid journal that
// holds a prefix of the old one: later segments are removed newest first,
// each followed by a directory sync, then a copy of the segment holding pos,
// cut at pos and synced, is renamed over it. Run again after a crash, it
// finishes the job. Readers and ReadEncoded callers positioned after pos must
// be stopped first: what they would read next no longer exists.
//
// If pos falls inside a transaction, the records of it before pos stay, but
// like any unfinished transaction at the end of the journal they are cut by
// the next Open unless more records follow them by then.
func (j *Journal) TruncateAfter(pos Position) (removed []Record, err error) {
	j.purgeMu.Lock()
	defer j.purgeMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.quiesceLocked(); err != nil {
		return nil, err
	}
	t, err := j.planTruncationLocked(pos)
	if err != nil {
		return nil, fmt.Errorf("truncate journal %s at %s: %w", j.dir, pos, err)
	}
	last := j.segs[len(j.segs)-1].num
	if t.seg == last && t.off == t.dataEnd {
		return nil, nil
	}
	var copyPath string
	if t.off < t.dataEnd {
		if copyPath, err = j.writeCutCopy(t.seg, t.off); err != nil {
			return nil, fmt.Errorf("truncate journal %s at %s: %w", j.dir, pos, err)
		}
	}
	if err := j.cutLocked(t, last, copyPath); err != nil {
		// The files are in some valid state between the old journal and
		// the new one, which only a reopen can tell.
		j.failed = &failure{cause: fmt.Errorf("truncate journal %s at %s: %w", j.dir, pos, err)}
		j.log.Error().Err(err).Msg("journal truncation failed; refusing further writes")
		return nil, j.failed
	}
	j.segs = j.segs[:t.idx+1]
	s := &j.segs[t.idx]
	s.end, s.endEpoch, s.modTime = t.off, t.epoch, j.opts.Now()
	j.appended = Position{Epoch: t.epoch, Segment: t.seg, Offset: uint64(t.off)}
	j.durable = j.appended
	j.written = j.appended
	j.txnOpen = t.txnOpen
	// Wake waiters and readers so that they see the new end.
	close(j.durableCh)
	j.durableCh = make(chan struct{})
	j.notifyWrittenLocked()
	j.log.Warn().Stringer("pos", j.appended).Int("records", len(t.removed)).Msg("truncated the journal")
	return t.removed, nil
}

// quiesceLocked makes everything appended durable and returns, with j.mu
// held, when no leader is running: the caller then has the files to itself
// for as long as it holds j.mu.
func (j *Journal) quiesceLocked() error {
	for {
		if err := j.usableLocked(); err != nil {
			return err
		}
		switch {
		case j.syncing:
			ch := j.durableCh
			j.mu.Unlock()
			<-ch
			j.mu.Lock()
		case posBefore(j.durable, j.appended):
			j.leadLocked()
		default:
			return nil
		}
	}
}

// planTruncationLocked checks pos and reads the records to remove. The
// segment holding pos is read from its start, both to be sure that pos is a
// record boundary and to learn the epoch of the record before it.
func (j *Journal) planTruncationLocked(pos Position) (truncation, error) {
	first := j.firstLocked()
	switch {
	case pos.Segment < first.Segment:
		return truncation{}, fmt.Errorf("%w; the oldest available position is %s", ErrPurged, first)
	case posBefore(j.appended, pos):
		return truncation{}, fmt.Errorf("%w: beyond the end %s", ErrBadPosition, j.appended)
	}
	limitOf := func(i int) int64 {
		if i == len(j.segs)-1 {
			return int64(j.appended.Offset)
		}
		return j.segs[i].end
	}
	idx := int(pos.Segment - first.Segment)
	t := truncation{seg: pos.Segment, idx: idx, off: int64(pos.Offset), dataEnd: limitOf(idx), epoch: j.segs[idx].epoch}
	if t.off == 0 {
		t.off = HeaderSize
	}
	if t.off < HeaderSize || t.off > t.dataEnd {
		return truncation{}, fmt.Errorf("%w: offset outside segment %s (records end at %d)", ErrBadPosition, segmentName(t.seg), t.dataEnd)
	}
	err := j.eachRecord(t.seg, t.dataEnd, func(rec Record, n int64) error {
		switch at := int64(rec.Pos.Offset); {
		case at+n <= t.off:
			t.epoch, t.txnOpen = rec.Pos.Epoch, !rec.TxnEnd
		case at < t.off:
			return fmt.Errorf("%w: offset inside the record at %s", ErrBadPosition, rec.Pos)
		default:
			t.removed = append(t.removed, ownRecord(rec))
		}
		return nil
	})
	if err != nil {
		return truncation{}, err
	}
	for i := idx + 1; i < len(j.segs); i++ {
		err := j.eachRecord(j.segs[i].num, limitOf(i), func(rec Record, _ int64) error {
			t.removed = append(t.removed, ownRecord(rec))
			return nil
		})
		if err != nil {
			return truncation{}, err
		}
	}
	return t, nil
}

// eachRecord calls fn with every record of segment num, whose records end at
// limit, and its frame size. The record aliases a read buffer.
func (j *Journal) eachRecord(num uint64, limit int64, fn func(Record, int64) error) error {
	path := j.fs.PathJoin(j.dir, segmentName(num))
	f, err := j.fs.Open(path)
	if err != nil {
		return fmt.Errorf("open journal segment: %w", err)
	}
	defer f.Close() // read-only: nothing to lose
	w := &window{f: f, size: limit}
	for off := int64(HeaderSize); off < limit; {
		rec, n, err := readFrame(w, num, off, limit)
		if errors.Is(err, errEndOfRecords) {
			err = fmt.Errorf("%w: zero frame header before the end of records at %d", ErrCorrupt, limit)
		}
		if err != nil {
			return atOffset(path, off, err)
		}
		if err := fn(rec, n); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// writeCutCopy writes the first size bytes of segment num to a new file,
// syncs it and returns its path. The journal itself is not touched.
func (j *Journal) writeCutCopy(num uint64, size int64) (string, error) {
	src := j.fs.PathJoin(j.dir, segmentName(num))
	dst := src + truncatingSuffix
	if err := copyPrefix(j.fs, src, dst, size); err != nil {
		_ = j.fs.Remove(dst) // a leftover is harmless: Open removes it
		return "", err
	}
	return dst, nil
}

func copyPrefix(fs vfs.FS, src, dst string, size int64) error {
	in, err := fs.Open(src)
	if err != nil {
		return fmt.Errorf("open journal segment: %w", err)
	}
	defer in.Close() // read-only: nothing to lose
	out, err := fs.Create(dst, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	buf := make([]byte, min(size, preallocStep))
	for off := int64(0); off < size; {
		b := buf[:min(int64(len(buf)), size-off)]
		if err := readAt(in, b, off); err != nil {
			_ = out.Close()
			return fmt.Errorf("read %s at offset %d: %w", src, off, err)
		}
		if _, err := out.WriteAt(b, off); err != nil {
			_ = out.Close()
			return fmt.Errorf("write %s at offset %d: %w", dst, off, err)
		}
		off += int64(len(b))
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return fmt.Errorf("sync %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	return nil
}

// cutLocked removes the segments after t.seg up to last, newest first, then
// renames copyPath (if set) over t.seg, and leaves the writer on t.seg.
func (j *Journal) cutLocked(t truncation, last uint64, copyPath string) error {
	if err := j.w.close(); err != nil {
		return err
	}
	for num := last; num > t.seg; num-- {
		path := j.fs.PathJoin(j.dir, segmentName(num))
		if err := j.fs.Remove(path); err != nil {
			return fmt.Errorf("remove journal segment: %w", err)
		}
		if err := syncDir(j.fs, j.dir); err != nil {
			return fmt.Errorf("remove %s: %w", path, err)
		}
	}
	path := j.fs.PathJoin(j.dir, segmentName(t.seg))
	if copyPath != "" {
		if err := j.fs.Rename(copyPath, path); err != nil {
			return fmt.Errorf("replace journal segment: %w", err)
		}
		if err := syncDir(j.fs, j.dir); err != nil {
			return fmt.Errorf("replace %s: %w", path, err)
		}
	}
	st, err := j.fs.Stat(path)
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	return j.w.openExisting(t.seg, st.Size())
}

// removeCutCopies deletes copies left by a TruncateAfter that a crash
// interrupted before its rename; the segment they were cut from is whole.
func removeCutCopies(fs vfs.FS, dir string) error {
	names, err := fs.List(dir)
	if err != nil {
		return fmt.Errorf("list journal directory %s: %w", dir, err)
	}
	for _, name := range names {
		if strings.HasPrefix(name, segmentPrefix) && strings.HasSuffix(name, truncatingSuffix) {
			if err := fs.Remove(fs.PathJoin(dir, name)); err != nil {
				return fmt.Errorf("remove leftover journal copy: %w", err)
			}
		}
	}
	return nil
}
