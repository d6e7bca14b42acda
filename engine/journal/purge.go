package journal

import (
	"fmt"
	"time"
)

// Retain registers the position a consumer (a database's applied position, a
// stream to another member, a shadow) still needs; Purge keeps every segment
// holding bytes at or after it. Calling it again moves the position.
func (j *Journal) Retain(consumer string, pos Position) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.retained[consumer] = pos
}

// Release forgets a consumer registered with Retain.
func (j *Journal) Release(consumer string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.retained, consumer)
}

// PurgePolicy is the local retention rule.
type PurgePolicy struct {
	KeepSegments int           // keep at least this many newest segments (at least 1: the current one)
	MaxAge       time.Duration // if > 0, delete only segments whose last write is older than this
}

// Purge deletes the oldest segments that nobody needs: a segment goes only if
// every byte of it lies before min(floor, every retained position), it is not
// among the policy's KeepSegments newest, it is not the current segment, and
// (with MaxAge) its last write is older than MaxAge. A zero floor keeps
// everything; pass DurableEnd() to let only retained positions count.
// Segments are deleted oldest first, each followed by a directory sync, so
// the ones left stay consecutive whatever happens. Readers positioned in a
// deleted segment get ErrPurged.
func (j *Journal) Purge(policy PurgePolicy, floor Position) (removed []string, err error) {
	j.purgeMu.Lock()
	defer j.purgeMu.Unlock()

	j.mu.Lock()
	if err := j.usableLocked(); err != nil {
		j.mu.Unlock()
		return nil, err
	}
	limit := floor
	for _, pos := range j.retained {
		if pos.Less(limit) {
			limit = pos
		}
	}
	keep := max(policy.KeepSegments, 1)
	now := j.opts.Now()
	n := 0
	for i, s := range j.segs {
		if i >= len(j.segs)-keep || s.num >= limit.Segment || s.num >= j.durable.Segment {
			break
		}
		if policy.MaxAge > 0 && now.Sub(s.modTime) <= policy.MaxAge {
			break
		}
		n++
	}
	victims := make([]uint64, n)
	for i := range victims {
		victims[i] = j.segs[i].num
	}
	// Forget them first: from here on readers report ErrPurged rather than
	// a missing file; one at the end of the last of them goes on in the
	// oldest segment left.
	var end Position
	if n > 0 {
		last := j.segs[n-1]
		end = Position{Epoch: last.endEpoch, Segment: last.num, Offset: uint64(last.end)}
		j.purgedEnd = end
	}
	j.segs = j.segs[n:]
	j.mu.Unlock()

	if n > 0 {
		if err := writePurgedEnd(j.fs, j.dir, end); err != nil {
			// Only a reader left exactly at that end after a restart loses by it: it is told its position is purged.
			j.log.Warn().Err(err).Msg("purge journal")
		}
	}
	for _, num := range victims {
		path := j.fs.PathJoin(j.dir, segmentName(num))
		if err := j.fs.Remove(path); err != nil {
			return removed, fmt.Errorf("purge journal segment: %w", err)
		}
		if err := syncDir(j.fs, j.dir); err != nil {
			return removed, fmt.Errorf("purge %s: %w", path, err)
		}
		removed = append(removed, segmentName(num))
		j.log.Info().Str("file", path).Msg("purged journal segment")
	}
	return removed, nil
}
