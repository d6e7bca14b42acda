package journal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"strconv"
	"sync/atomic"
)

// RecordType says what a record means to the layers above.
type RecordType uint8

const (
	// RecordSet sets DB/Key to Value; Before is the previous value if HasBefore.
	RecordSet RecordType = 1
	// RecordKill removes DB/Key; Before is the removed value.
	RecordKill RecordType = 2
	// RecordEpochStart is written when a member starts a new epoch (no DB).
	RecordEpochStart RecordType = 3
	// RecordMarker is a free-form marker whose fields the writer defines.
	RecordMarker RecordType = 4
	// RecordNoop carries nothing.
	RecordNoop RecordType = 5
)

func (t RecordType) valid() bool { return t >= RecordSet && t <= RecordNoop }

func (t RecordType) String() string {
	switch t {
	case RecordSet:
		return "set"
	case RecordKill:
		return "kill"
	case RecordEpochStart:
		return "epoch-start"
	case RecordMarker:
		return "marker"
	case RecordNoop:
		return "noop"
	}
	return "RecordType(" + strconv.Itoa(int(t)) + ")"
}

// Record is one journal record.
type Record struct {
	Pos       Position // assigned by Append; set on records read back
	Type      RecordType
	TxnID     uint64
	TxnEnd    bool  // true on the last record of a transaction
	Time      int64 // unix nanoseconds; Append fills it from the clock if zero
	DB        string
	Key       []byte
	Value     []byte // encoded only when HasValue
	HasValue  bool
	Before    []byte // encoded only when HasBefore (absent is not the same as empty)
	HasBefore bool
	// Version is the record format: 0 or RecordV1 for the first format, RecordV2 for the format that also carries
	// Origin. A journal writes RecordV2 only once its mirror has been finalized at a format level that reads it (see
	// Journal.SetRecordFormat); a decoded first-format record has Version 0.
	Version uint8
	// Origin is the member that wrote the record (RecordV2 only; empty otherwise).
	Origin string
}

// Record formats.
const (
	RecordV1 = 1
	RecordV2 = 2
	// NewestRecordVersion is the newest record format this source code knows.
	NewestRecordVersion = RecordV2
)

// maxRecordVersion is the newest record format this build reads; a build of a lower format level lowers it at start
// (SetMaxRecordVersion), so that it refuses records it would not understand exactly as an older release does.
var maxRecordVersion atomic.Uint32

func init() { maxRecordVersion.Store(NewestRecordVersion) }

// SetMaxRecordVersion sets the newest record format this process reads and writes (1..NewestRecordVersion).
func SetMaxRecordVersion(v uint8) {
	if v < RecordV1 || v > NewestRecordVersion {
		panic(fmt.Sprintf("journal: record version %d outside 1..%d", v, NewestRecordVersion))
	}
	maxRecordVersion.Store(uint32(v))
}

// MaxRecordVersion is the newest record format this process reads.
func MaxRecordVersion() uint8 { return uint8(maxRecordVersion.Load()) }

// readableVersion reports whether this process decodes records of format v.
func readableVersion(v byte) bool { return v >= RecordV1 && uint32(v) <= maxRecordVersion.Load() }

func unsupportedVersion(v byte) error {
	return fmt.Errorf("%w: record version %d (this build reads versions 1..%d; the journal was written by a newer format level — run a newer member binary)",
		ErrUnsupportedVersion, v, maxRecordVersion.Load())
}

// version is the format byte r is written with.
func (r *Record) version() byte {
	if r.Version == 0 {
		return RecordV1
	}
	return r.Version
}

const (
	// frameHeaderSize is the payload length and checksum in front of a payload.
	frameHeaderSize = 8
	// MaxPayloadSize bounds a record's payload: 16 MiB of content plus room
	// for the fixed fields, so one length check catches garbage lengths.
	MaxPayloadSize = 16<<20 + 4096

	flagTxnEnd    = 1 << 0
	flagHasBefore = 1 << 1
	flagHasValue  = 1 << 2
	knownFlags    = flagTxnEnd | flagHasBefore | flagHasValue
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

func zigzag(v int64) uint64 { return uint64(v<<1) ^ uint64(v>>63) }

func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func bytesLen(n int) int { return uvarintLen(uint64(n)) + n }

func (r *Record) payloadSize() int {
	n := 3 + uvarintLen(r.Pos.Epoch) + uvarintLen(r.Pos.Segment) + uvarintLen(r.Pos.Offset) +
		uvarintLen(r.TxnID) + uvarintLen(zigzag(r.Time)) + bytesLen(len(r.DB)) + bytesLen(len(r.Key))
	if r.version() >= RecordV2 {
		n += bytesLen(len(r.Origin))
	}
	if r.HasValue {
		n += bytesLen(len(r.Value))
	}
	if r.HasBefore {
		n += bytesLen(len(r.Before))
	}
	return n
}

// Size is the encoded size of r including the 8-byte frame header.
func (r *Record) Size() int { return frameHeaderSize + r.payloadSize() }

func (r *Record) flags() byte {
	var f byte
	if r.TxnEnd {
		f |= flagTxnEnd
	}
	if r.HasBefore {
		f |= flagHasBefore
	}
	if r.HasValue {
		f |= flagHasValue
	}
	return f
}

// AppendRecord appends the frame and payload of r (whose Pos must be set) to
// dst. Value and Before are written only when their flags are set.
func AppendRecord(dst []byte, r *Record) []byte {
	start := len(dst)
	v := r.version()
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0, v, byte(r.Type), r.flags())
	dst = binary.AppendUvarint(dst, r.Pos.Epoch)
	dst = binary.AppendUvarint(dst, r.Pos.Segment)
	dst = binary.AppendUvarint(dst, r.Pos.Offset)
	dst = binary.AppendUvarint(dst, r.TxnID)
	dst = binary.AppendUvarint(dst, zigzag(r.Time))
	if v >= RecordV2 {
		dst = appendBytes(dst, r.Origin)
	}
	dst = appendBytes(dst, r.DB)
	dst = appendBytes(dst, r.Key)
	if r.HasValue {
		dst = appendBytes(dst, r.Value)
	}
	if r.HasBefore {
		dst = appendBytes(dst, r.Before)
	}
	payload := dst[start+frameHeaderSize:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, castagnoli))
	return dst
}

func appendBytes[T string | []byte](dst []byte, b T) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// DecodeRecord decodes one frame from the front of frame and returns the record
// and the number of bytes consumed. It never panics; errors wrap ErrCorrupt (or
// ErrUnsupportedVersion for a record written by a newer format). The returned
// Key, Value and Before alias frame.
func DecodeRecord(frame []byte) (Record, int, error) {
	if len(frame) < frameHeaderSize {
		return Record{}, 0, fmt.Errorf("%w: incomplete frame header (%d of %d bytes)", ErrCorrupt, len(frame), frameHeaderSize)
	}
	length, sum := frameHeader(frame)
	if length == 0 {
		return Record{}, 0, fmt.Errorf("%w: zero payload length", ErrCorrupt)
	}
	if length > MaxPayloadSize {
		return Record{}, 0, fmt.Errorf("%w: payload length %d exceeds the maximum %d", ErrCorrupt, length, MaxPayloadSize)
	}
	n := frameHeaderSize + int(length)
	if len(frame) < n {
		return Record{}, 0, fmt.Errorf("%w: incomplete frame (%d of %d bytes)", ErrCorrupt, len(frame), n)
	}
	payload := frame[frameHeaderSize:n]
	if got := crc32.Checksum(payload, castagnoli); got != sum {
		return Record{}, 0, fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, sum, got)
	}
	rec, err := decodePayload(payload)
	if err != nil {
		return Record{}, 0, err
	}
	return rec, n, nil
}

func frameHeader(b []byte) (length, sum uint32) {
	return binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
}

// decodePayload accepts exactly what AppendRecord produces (minimal varints,
// no unknown flags, no trailing bytes), so a decoded record re-encodes to the
// same bytes.
func decodePayload(p []byte) (Record, error) {
	if len(p) < 3 {
		return Record{}, fmt.Errorf("%w: payload of %d bytes is too short", ErrCorrupt, len(p))
	}
	if !readableVersion(p[0]) {
		return Record{}, unsupportedVersion(p[0])
	}
	rec := Record{Type: RecordType(p[1])}
	if p[0] != RecordV1 {
		rec.Version = p[0]
	}
	if !rec.Type.valid() {
		return Record{}, fmt.Errorf("%w: unknown record type %d", ErrCorrupt, p[1])
	}
	flags := p[2]
	if flags&^knownFlags != 0 {
		return Record{}, fmt.Errorf("%w: unknown record flags %#x", ErrCorrupt, flags)
	}
	rec.TxnEnd = flags&flagTxnEnd != 0
	rec.HasBefore = flags&flagHasBefore != 0
	rec.HasValue = flags&flagHasValue != 0
	d := payloadDecoder{buf: p, off: 3}
	rec.Pos.Epoch = d.uvarint()
	rec.Pos.Segment = d.uvarint()
	rec.Pos.Offset = d.uvarint()
	rec.TxnID = d.uvarint()
	rec.Time = unzigzag(d.uvarint())
	if rec.Version >= RecordV2 {
		rec.Origin = string(d.bytes())
	}
	rec.DB = string(d.bytes())
	rec.Key = d.bytes()
	if rec.HasValue {
		rec.Value = d.bytes()
	}
	if rec.HasBefore {
		rec.Before = d.bytes()
	}
	if d.err != "" {
		return Record{}, fmt.Errorf("%w: payload byte %d: %s", ErrCorrupt, d.off, d.err)
	}
	if d.off != len(p) {
		return Record{}, fmt.Errorf("%w: %d trailing payload bytes", ErrCorrupt, len(p)-d.off)
	}
	return rec, nil
}

// payloadDecoder reads fields in order and remembers the first problem.
type payloadDecoder struct {
	buf []byte
	off int
	err string
}

func (d *payloadDecoder) uvarint() uint64 {
	if d.err != "" {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.off:])
	switch {
	case n == 0:
		d.err = "truncated varint"
		return 0
	case n < 0:
		d.err = "varint overflows 64 bits"
		return 0
	case n != uvarintLen(v):
		d.err = "non-minimal varint"
		return 0
	}
	d.off += n
	return v
}

func (d *payloadDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != "" {
		return nil
	}
	if n > uint64(len(d.buf)-d.off) {
		d.err = fmt.Sprintf("byte string of %d bytes overruns the payload", n)
		return nil
	}
	end := d.off + int(n)
	b := d.buf[d.off:end:end]
	d.off = end
	return b
}

// checkAppendable rejects records Append cannot encode faithfully.
func checkAppendable(r *Record) error {
	if !r.Type.valid() {
		return fmt.Errorf("%w: unknown record type %d", ErrInvalidRecord, r.Type)
	}
	if v := r.version(); !readableVersion(v) {
		return fmt.Errorf("%w: record version %d (this build writes versions 1..%d)", ErrInvalidRecord, v, maxRecordVersion.Load())
	}
	if r.version() < RecordV2 && r.Origin != "" {
		return fmt.Errorf("%w: origin %q on a version %d record", ErrInvalidRecord, r.Origin, r.version())
	}
	if !r.HasValue && len(r.Value) > 0 {
		return fmt.Errorf("%w: value of %d bytes without HasValue", ErrInvalidRecord, len(r.Value))
	}
	if !r.HasBefore && len(r.Before) > 0 {
		return fmt.Errorf("%w: before-image of %d bytes without HasBefore", ErrInvalidRecord, len(r.Before))
	}
	if n := r.payloadSize(); n > MaxPayloadSize {
		return fmt.Errorf("%w: payload of %d bytes exceeds the maximum %d", ErrRecordTooLarge, n, MaxPayloadSize)
	}
	return nil
}
