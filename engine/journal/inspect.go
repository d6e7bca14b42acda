package journal

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// CheckReport is what Check found in a journal directory.
type CheckReport struct {
	Dir          string
	Segments     int
	Records      int
	Transactions int
	Bytes        int64 // frame bytes of the records Open would keep
	First, End   Position
	TornTail     *TornTail // what Open would cut off, nil if nothing
}

// Check reads and checks every segment in dir by the same rules as Open, but
// reports a torn tail instead of cutting it; it never modifies anything.
// Corruption is ErrCorrupt naming file and offset. On a journal open for
// writing, the end of the last segment may change under the check, which can
// then report a torn tail or corruption there that is only a write in flight.
func Check(fs vfs.FS, dir string) (CheckReport, error) {
	scan, err := scanDir(fs, dir)
	if err != nil {
		return CheckReport{}, fmt.Errorf("check journal %s: %w", dir, err)
	}
	return CheckReport{
		Dir:          dir,
		Segments:     len(scan.segs),
		Records:      scan.records,
		Transactions: scan.transactions,
		Bytes:        scan.bytes,
		First:        scan.first(),
		End:          scan.end(),
		TornTail:     scan.tornTail(),
	}, nil
}

// Dump calls fn with every record Open would keep, in order, starting at
// from (the zero Position: the oldest). It checks the journal like Check
// first and never modifies anything. An error from fn stops the dump and is
// returned as is.
func Dump(fs vfs.FS, dir string, from Position, fn func(Record) error) error {
	scan, err := scanDir(fs, dir)
	if err != nil {
		return fmt.Errorf("dump journal %s: %w", dir, err)
	}
	if len(scan.segs) == 0 {
		return nil
	}
	first, end := scan.first(), scan.end()
	if from.IsZero() {
		from = first
	}
	switch {
	case from.Segment < first.Segment:
		return fmt.Errorf("dump journal %s from %s: %w; the oldest available position is %s", dir, from, ErrPurged, first)
	case posBefore(end, from):
		return fmt.Errorf("dump journal %s from %s: %w: beyond the end %s", dir, from, ErrBadPosition, end)
	}
	segs := scan.segs[from.Segment-first.Segment:]
	start := int64(from.Offset)
	if start == 0 {
		start = HeaderSize
	}
	if start < HeaderSize || start > segs[0].end {
		return fmt.Errorf("dump journal %s from %s: %w: records of %s end at %d", dir, from, ErrBadPosition, segmentName(from.Segment), segs[0].end)
	}
	for i, s := range segs {
		if i > 0 {
			start = HeaderSize
		}
		if err := dumpSegment(fs, s, start, i == 0 && start > HeaderSize, fn); err != nil {
			return err
		}
	}
	return nil
}

// dumpSegment calls fn with the records of s from off. If checkStart, off
// came from the caller and may not be a record boundary.
func dumpSegment(fs vfs.FS, s segmentScan, off int64, checkStart bool, fn func(Record) error) error {
	if off >= s.end {
		return nil
	}
	f, err := fs.Open(s.path)
	if err != nil {
		return fmt.Errorf("open journal segment: %w", err)
	}
	defer f.Close()
	w := &window{f: f, size: s.end}
	for first := true; off < s.end; first = false {
		rec, n, err := readFrame(w, s.num, off, s.end)
		if errors.Is(err, errEndOfRecords) {
			err = fmt.Errorf("%w: zero frame header before the end of records at %d", ErrCorrupt, s.end)
		}
		if err != nil {
			if first && checkStart && errors.Is(err, ErrCorrupt) {
				return fmt.Errorf("dump %s from offset %d: %w: %v", s.path, off, ErrBadPosition, err)
			}
			return atOffset(s.path, off, err)
		}
		if err := fn(ownRecord(rec)); err != nil {
			return err
		}
		off += n
	}
	return nil
}
