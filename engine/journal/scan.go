package journal

import (
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TornTail describes the end of the last segment that recovery cuts off: a
// frame that was being written when the member stopped, or records of a
// transaction whose last record never made it to disk.
type TornTail struct {
	File   string // path of the segment
	Offset int64  // where the kept records end; everything from here is discarded
	Bytes  int64  // length of the discarded span, up to its last non-zero byte
	Reason string
}

// segmentScan is what reading one segment found.
type segmentScan struct {
	num      uint64
	path     string
	epoch    uint64 // epoch in the header
	fileSize int64
	modTime  time.Time
	end      int64  // offset after the last kept record
	endEpoch uint64 // epoch of the last kept record (the header epoch if none)
	records  int
	txns     int
	bytes    int64  // frame bytes kept
	maxTxnID uint64 // over every valid record, kept or cut
	maxEpoch uint64

	// Only for the last segment.
	torn   *TornTail
	cuts   []int64 // offsets of the valid records being cut, oldest first
	reinit bool    // the header never reached the disk and the file holds nothing
}

// dirScan is what reading every segment of a journal found.
type dirScan struct {
	segs         []segmentScan
	records      int
	transactions int
	bytes        int64
	maxTxnID     uint64
	maxEpoch     uint64
}

func (d *dirScan) first() Position {
	if len(d.segs) == 0 {
		return Position{}
	}
	return Position{Epoch: d.segs[0].epoch, Segment: d.segs[0].num, Offset: HeaderSize}
}

func (d *dirScan) end() Position {
	if len(d.segs) == 0 {
		return Position{}
	}
	last := d.segs[len(d.segs)-1]
	return Position{Epoch: last.endEpoch, Segment: last.num, Offset: uint64(last.end)}
}

func (d *dirScan) tornTail() *TornTail {
	if len(d.segs) == 0 {
		return nil
	}
	return d.segs[len(d.segs)-1].torn
}

// scanDir reads and checks every segment in dir without modifying anything.
func scanDir(fs vfs.FS, dir string) (dirScan, error) {
	nums, err := listSegments(fs, dir)
	if err != nil {
		return dirScan{}, err
	}
	var d dirScan
	for i, num := range nums {
		s, err := scanSegment(fs, dir, num, i == len(nums)-1)
		if err != nil {
			return dirScan{}, err
		}
		d.segs = append(d.segs, s)
		d.records += s.records
		d.transactions += s.txns
		d.bytes += s.bytes
		d.maxTxnID = max(d.maxTxnID, s.maxTxnID)
		d.maxEpoch = max(d.maxEpoch, s.maxEpoch)
	}
	return d, nil
}

// atOffset names the file and offset of a failure.
func atOffset(path string, off int64, err error) error {
	return fmt.Errorf("%s at offset %d: %w", path, off, err)
}

// scanCounts accumulates what the records of a segment add up to.
type scanCounts struct {
	end      int64
	endEpoch uint64
	records  int
	txns     int
	bytes    int64
}

// scanSegment checks segment num. Every segment must hold only valid records
// followed by zeros. The last one may instead end in a torn tail, which is
// reported (not repaired) as long as no valid record follows it.
func scanSegment(fs vfs.FS, dir string, num uint64, last bool) (segmentScan, error) {
	path := fs.PathJoin(dir, segmentName(num))
	f, err := fs.Open(path)
	if err != nil {
		return segmentScan{}, fmt.Errorf("open journal segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return segmentScan{}, fmt.Errorf("stat %s: %w", path, err)
	}
	s := segmentScan{num: num, path: path, fileSize: st.Size(), modTime: st.ModTime()}
	w := &window{f: f, size: s.fileSize}

	head, err := w.get(0, int(min(HeaderSize, s.fileSize)))
	if err != nil {
		return segmentScan{}, fmt.Errorf("read %s: %w", path, err)
	}
	if len(head) < HeaderSize || allZero(head) {
		return s, checkUnwrittenHeader(&s, f, last, 0)
	}
	hdr, err := decodeHeader(head, num)
	if errors.Is(err, ErrCorrupt) && last {
		// A torn header with nothing after it is a crash while creating
		// the segment too; with records after it, it is corruption.
		if uerr := checkUnwrittenHeader(&s, f, last, HeaderSize); uerr == nil {
			return s, nil
		}
	}
	if err != nil {
		return segmentScan{}, atOffset(path, 0, err)
	}
	s.epoch, s.maxEpoch = hdr.epoch, hdr.epoch

	all := scanCounts{end: HeaderSize, endEpoch: hdr.epoch}
	committed := all
	var bad error // why the record at all.end is not valid; nil at a clean end
	var open []int64
	for off := int64(HeaderSize); off < s.fileSize; {
		if s.fileSize-off < frameHeaderSize {
			rest, err := w.get(off, int(s.fileSize-off))
			if err != nil {
				return segmentScan{}, fmt.Errorf("read %s: %w", path, err)
			}
			if !allZero(rest) {
				bad = fmt.Errorf("%w: incomplete frame header (%d of %d bytes)", ErrCorrupt, len(rest), frameHeaderSize)
			}
			break
		}
		rec, n, err := readFrame(w, num, off, s.fileSize)
		if errors.Is(err, errEndOfRecords) {
			break
		}
		if errors.Is(err, ErrCorrupt) {
			bad = err
			break
		}
		if err != nil {
			return segmentScan{}, atOffset(path, off, err)
		}
		s.maxTxnID = max(s.maxTxnID, rec.TxnID)
		s.maxEpoch = max(s.maxEpoch, rec.Pos.Epoch)
		all.records++
		all.bytes += n
		all.end = off + n
		all.endEpoch = rec.Pos.Epoch
		open = append(open, off)
		if rec.TxnEnd {
			all.txns++
			committed = all
			open = open[:0]
		}
		off += n
	}

	if !last {
		if bad != nil {
			return segmentScan{}, atOffset(path, all.end, bad)
		}
		dataEnd, _, err := scanTail(f, num, all.end, s.fileSize, false)
		if err != nil {
			return segmentScan{}, fmt.Errorf("read %s: %w", path, err)
		}
		if dataEnd > all.end {
			return segmentScan{}, atOffset(path, all.end,
				fmt.Errorf("%w: non-zero bytes up to offset %d after the last record", ErrCorrupt, dataEnd))
		}
		s.setCounts(all)
		return s, nil
	}

	dataEnd, validAt, err := scanTail(f, num, all.end, s.fileSize, true)
	if err != nil {
		return segmentScan{}, fmt.Errorf("read %s: %w", path, err)
	}
	if validAt >= 0 {
		if bad == nil {
			bad = fmt.Errorf("%w: zero frame header", ErrCorrupt)
		}
		return segmentScan{}, atOffset(path, all.end, fmt.Errorf("%w; a valid record follows at offset %d", bad, validAt))
	}
	s.setCounts(committed)
	if dataEnd > committed.end {
		var reason string
		switch {
		case bad != nil && len(open) > 0:
			reason = fmt.Sprintf("%d records of an unfinished transaction, then at offset %d: %v", len(open), all.end, bad)
		case bad != nil:
			reason = bad.Error()
		default:
			reason = fmt.Sprintf("%d records of an unfinished transaction", len(open))
		}
		s.torn = &TornTail{File: path, Offset: committed.end, Bytes: dataEnd - committed.end, Reason: reason}
		s.cuts = open
	}
	return s, nil
}

func (s *segmentScan) setCounts(c scanCounts) {
	s.end, s.endEpoch = c.end, c.endEpoch
	s.records, s.txns, s.bytes = c.records, c.txns, c.bytes
}

// checkUnwrittenHeader handles a segment whose header never fully reached
// the disk. That is a crash while creating the last segment, if nothing was
// written from offset `from` on (records are only written after the header
// is synced, so none can have been acknowledged).
func checkUnwrittenHeader(s *segmentScan, f vfs.File, last bool, from int64) error {
	if !last {
		return atOffset(s.path, 0, fmt.Errorf("%w: segment header missing in a segment that is not the last", ErrCorrupt))
	}
	dataEnd, _, err := scanTail(f, s.num, min(from, s.fileSize), s.fileSize, false)
	if err != nil {
		return fmt.Errorf("read %s: %w", s.path, err)
	}
	if dataEnd > from {
		return atOffset(s.path, 0, fmt.Errorf("%w: segment header missing but data present up to offset %d", ErrCorrupt, dataEnd))
	}
	s.reinit = true
	s.end = HeaderSize
	s.torn = &TornTail{File: s.path, Offset: 0, Bytes: from, Reason: "segment header never fully written (crash while creating the segment)"}
	return nil
}

// errEndOfRecords marks a zero frame header: the end of a segment's records.
var errEndOfRecords = errors.New("end of records")

// readFrame reads and checks the frame at off, which must lie within limit.
// Checksum and format failures wrap ErrCorrupt (the caller adds file and
// offset); a zero frame header returns errEndOfRecords; I/O errors and records
// of an unknown version are returned as they are. The record aliases w.
func readFrame(w *window, num uint64, off, limit int64) (Record, int64, error) {
	if limit-off < frameHeaderSize {
		return Record{}, 0, fmt.Errorf("%w: incomplete frame header (%d of %d bytes)", ErrCorrupt, limit-off, frameHeaderSize)
	}
	b, err := w.get(off, frameHeaderSize)
	if err != nil {
		return Record{}, 0, err
	}
	length, sum := frameHeader(b)
	switch {
	case length == 0 && sum == 0:
		return Record{}, 0, errEndOfRecords
	case length == 0:
		return Record{}, 0, fmt.Errorf("%w: zero payload length with a non-zero checksum", ErrCorrupt)
	case length > MaxPayloadSize:
		return Record{}, 0, fmt.Errorf("%w: payload length %d exceeds the maximum %d", ErrCorrupt, length, MaxPayloadSize)
	}
	n := frameHeaderSize + int64(length)
	if n > limit-off {
		return Record{}, 0, fmt.Errorf("%w: incomplete frame (%d of %d bytes)", ErrCorrupt, limit-off, n)
	}
	frame, err := w.get(off, int(n))
	if err != nil {
		return Record{}, 0, err
	}
	payload := frame[frameHeaderSize:]
	if got := crc32.Checksum(payload, castagnoli); got != sum {
		return Record{}, 0, fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, sum, got)
	}
	rec, err := decodePayload(payload)
	if err != nil {
		return Record{}, 0, err
	}
	if rec.Pos.Segment != num || rec.Pos.Offset != uint64(off) {
		return Record{}, 0, fmt.Errorf("%w: record says it is at segment %d offset %d", ErrCorrupt, rec.Pos.Segment, rec.Pos.Offset)
	}
	return rec, n, nil
}

// scanTail looks at the bytes of a segment from `from` to size and returns the
// offset after the last non-zero byte (at least from) and, if findFrames, the
// offset of the first valid record after from (-1 if none). Only offsets
// whose length field holds a non-zero byte can start a record, so runs of
// zeros are skipped a word at a time.
func scanTail(f vfs.File, num uint64, from, size int64, findFrames bool) (dataEnd, validAt int64, err error) {
	dataEnd, validAt = from, -1
	sweep := &window{f: f, size: size}
	probe := &window{f: f, size: size}
	nextCandidate := from + 1
	for start := from; start < size; start += windowSize {
		b, err := sweep.get(start, int(min(windowSize, size-start)))
		if err != nil {
			return 0, 0, err
		}
		for i := nextNonZero(b, 0); i < len(b); i = nextNonZero(b, i+1) {
			q := start + int64(i)
			dataEnd = q + 1
			if !findFrames {
				continue
			}
			for p := max(nextCandidate, q-3); p <= q; p++ {
				ok, err := validFrameAt(probe, num, p, size)
				if err != nil {
					return 0, 0, err
				}
				if ok {
					return dataEnd, p, nil
				}
			}
			nextCandidate = q + 1
		}
	}
	return dataEnd, validAt, nil
}

// validFrameAt reports whether a valid record of segment num starts at p.
// The cheap checks on the payload's first bytes (version, type, position)
// come before the checksum so that scanning garbage stays fast.
func validFrameAt(w *window, num uint64, p, size int64) (bool, error) {
	if size-p < frameHeaderSize {
		return false, nil
	}
	b, err := w.get(p, frameHeaderSize)
	if err != nil {
		return false, err
	}
	length, _ := frameHeader(b)
	if length < 3 || length > MaxPayloadSize || int64(length) > size-p-frameHeaderSize {
		return false, nil
	}
	head, err := w.get(p+frameHeaderSize, int(min(length, 64)))
	if err != nil {
		return false, err
	}
	if !readableVersion(head[0]) || !RecordType(head[1]).valid() || head[2]&^knownFlags != 0 {
		return false, nil
	}
	d := payloadDecoder{buf: head, off: 3}
	d.uvarint()
	if seg, off := d.uvarint(), d.uvarint(); d.err != "" || seg != num || off != uint64(p) {
		return false, nil
	}
	_, _, err = readFrame(w, num, p, size)
	if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
		return false, err
	}
	return err == nil, nil
}
