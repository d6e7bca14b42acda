package journal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

const (
	// FormatVersion is the segment format this build writes and reads.
	FormatVersion = 1
	// DefaultSegmentSize is the size at which segments roll by default.
	DefaultSegmentSize = 64 << 20
	// HeaderSize is the size of a segment header; the first record of a
	// segment starts at this offset.
	HeaderSize = 32

	segmentPrefix = "journal."
	lockFileName  = "journal.lock"
	headerMagic   = "MKJOURNL"
)

// segmentName returns the file name of segment num: journal.000042.
func segmentName(num uint64) string { return fmt.Sprintf("%s%06d", segmentPrefix, num) }

// parseSegmentName accepts exactly the names segmentName produces.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, segmentPrefix)
	if !ok || len(digits) < 6 || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false
	}
	num, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || num == 0 || segmentName(num) != name {
		return 0, false
	}
	return num, true
}

// listSegments returns the segment numbers in dir in order and checks that
// they are consecutive.
func listSegments(fs vfs.FS, dir string) ([]uint64, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("list journal directory %s: %w", dir, err)
	}
	var nums []uint64
	for _, name := range names {
		if num, ok := parseSegmentName(name); ok {
			nums = append(nums, num)
		}
	}
	slices.Sort(nums)
	for i := 1; i < len(nums); i++ {
		if nums[i] != nums[i-1]+1 {
			return nil, fmt.Errorf("%w: %s in %s (found %s and %s)", ErrMissingSegment,
				segmentName(nums[i-1]+1), dir, segmentName(nums[i-1]), segmentName(nums[i]))
		}
	}
	return nums, nil
}

// segmentHeader is the fixed header at the start of every segment:
// magic, format version (uint16), reserved (uint16, zero), segment number,
// epoch at creation, CRC32C of the preceding 28 bytes; integers little-endian.
type segmentHeader struct {
	version uint16
	segment uint64
	epoch   uint64
}

func encodeHeader(segment, epoch uint64) []byte {
	b := make([]byte, HeaderSize)
	copy(b, headerMagic)
	binary.LittleEndian.PutUint16(b[8:], FormatVersion)
	binary.LittleEndian.PutUint64(b[12:], segment)
	binary.LittleEndian.PutUint64(b[20:], epoch)
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
	return b
}

// decodeHeader checks the header of segment num. The version is checked
// before the checksum: a newer format may lay out the rest differently.
func decodeHeader(b []byte, num uint64) (segmentHeader, error) {
	if len(b) < HeaderSize {
		return segmentHeader{}, fmt.Errorf("%w: incomplete segment header (%d of %d bytes)", ErrCorrupt, len(b), HeaderSize)
	}
	if string(b[:8]) != headerMagic {
		return segmentHeader{}, fmt.Errorf("%w: bad segment magic %q", ErrCorrupt, b[:8])
	}
	h := segmentHeader{
		version: binary.LittleEndian.Uint16(b[8:]),
		segment: binary.LittleEndian.Uint64(b[12:]),
		epoch:   binary.LittleEndian.Uint64(b[20:]),
	}
	if h.version != FormatVersion {
		return segmentHeader{}, fmt.Errorf("%w: segment format version %d, this build reads version %d",
			ErrUnsupportedVersion, h.version, FormatVersion)
	}
	if got, want := crc32.Checksum(b[:28], castagnoli), binary.LittleEndian.Uint32(b[28:]); got != want {
		return segmentHeader{}, fmt.Errorf("%w: segment header checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, want, got)
	}
	if binary.LittleEndian.Uint16(b[10:]) != 0 {
		return segmentHeader{}, fmt.Errorf("%w: reserved segment header bytes are not zero", ErrCorrupt)
	}
	if h.segment != num {
		return segmentHeader{}, fmt.Errorf("%w: header is for segment %d", ErrCorrupt, h.segment)
	}
	return h, nil
}

// window reads a file through a reusable buffer so that sequential frames
// cost one read per buffer rather than two per record.
type window struct {
	f     vfs.File
	size  int64 // bytes of the file that may be read
	buf   []byte
	start int64 // file offset of buf[0]
}

const windowSize = 256 << 10

// get returns the file bytes [off, off+n); the slice is valid until the next
// call. The caller keeps off+n within w.size.
func (w *window) get(off int64, n int) ([]byte, error) {
	if off >= w.start && off+int64(n) <= w.start+int64(len(w.buf)) {
		i := off - w.start
		return w.buf[i : i+int64(n)], nil
	}
	want := int(min(int64(max(n, windowSize)), w.size-off))
	if cap(w.buf) < want {
		w.buf = make([]byte, want)
	}
	w.buf = w.buf[:want]
	w.start = off
	if nr, err := w.f.ReadAt(w.buf, off); nr < want {
		w.buf = w.buf[:0]
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return w.buf[:n], nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// nextNonZero returns the index of the first non-zero byte of b at or after
// i, or len(b).
func nextNonZero(b []byte, i int) int {
	for ; i < len(b) && i%8 != 0; i++ {
		if b[i] != 0 {
			return i
		}
	}
	for ; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		if b[i] != 0 {
			return i
		}
	}
	return len(b)
}
