package journal

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Position of a record: epoch it was written in, segment number, byte offset of
// the record in that segment. Positions are ordered by (Segment, Offset), then
// Epoch; the zero Position sorts before everything. The end position of a
// segment or of the journal is the offset after its last record, and carries the
// epoch of that record.
type Position struct {
	Epoch   uint64
	Segment uint64
	Offset  uint64
}

// EncodedPositionLen is the length of Position.Encode.
const EncodedPositionLen = 24

// Compare returns -1, 0 or +1 ordering by (Segment, Offset), then Epoch.
func (p Position) Compare(q Position) int {
	if c := cmp.Compare(p.Segment, q.Segment); c != 0 {
		return c
	}
	if c := cmp.Compare(p.Offset, q.Offset); c != 0 {
		return c
	}
	return cmp.Compare(p.Epoch, q.Epoch)
}

// Less reports whether p sorts before q.
func (p Position) Less(q Position) bool { return p.Compare(q) < 0 }

// IsZero reports whether p is the zero Position.
func (p Position) IsZero() bool { return p == Position{} }

// String prints p as "epoch:segment:offset" with the segment zero-padded to at
// least six digits, e.g. "3:000042:1837264".
func (p Position) String() string {
	return fmt.Sprintf("%d:%06d:%d", p.Epoch, p.Segment, p.Offset)
}

// ParsePosition parses the form printed by Position.String. Leading zeros are
// accepted in every field so that hand-typed positions work.
func ParsePosition(s string) (Position, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Position{}, fmt.Errorf("parse position %q: want epoch:segment:offset", s)
	}
	var fields [3]uint64
	for i, part := range parts {
		if part == "" || strings.TrimLeft(part, "0123456789") != "" {
			return Position{}, fmt.Errorf("parse position %q: field %d is not a decimal number", s, i+1)
		}
		v, err := strconv.ParseUint(part, 10, 64)
		if err != nil {
			return Position{}, fmt.Errorf("parse position %q: field %d out of range", s, i+1)
		}
		fields[i] = v
	}
	return Position{Epoch: fields[0], Segment: fields[1], Offset: fields[2]}, nil
}

// MarshalText implements encoding.TextMarshaler (JSON uses the String form).
func (p Position) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Position) UnmarshalText(text []byte) error {
	q, err := ParsePosition(string(text))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// Encode returns the fixed 24-byte big-endian form: segment, offset, epoch.
// The field order makes bytewise order equal Compare order, so encoded
// positions can be compared or range-scanned in Pebble directly.
func (p Position) Encode() []byte {
	var b [EncodedPositionLen]byte
	binary.BigEndian.PutUint64(b[0:], p.Segment)
	binary.BigEndian.PutUint64(b[8:], p.Offset)
	binary.BigEndian.PutUint64(b[16:], p.Epoch)
	return b[:]
}

// DecodePosition decodes the form written by Position.Encode.
func DecodePosition(b []byte) (Position, error) {
	if len(b) != EncodedPositionLen {
		return Position{}, fmt.Errorf("decode position: want %d bytes, got %d", EncodedPositionLen, len(b))
	}
	return Position{
		Segment: binary.BigEndian.Uint64(b[0:]),
		Offset:  binary.BigEndian.Uint64(b[8:]),
		Epoch:   binary.BigEndian.Uint64(b[16:]),
	}, nil
}
