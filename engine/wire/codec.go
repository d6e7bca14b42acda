package wire

import (
	"encoding/binary"
	"fmt"
)

// messageVersion is the format version byte leading every message payload.
const messageVersion = 1

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decoder reads a message payload. The first failure sticks; later reads return zero values, so decode functions check
// the error once at the end.
type decoder struct {
	what string // message name, for errors
	b    []byte
	off  int
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s at offset %d", ErrMalformed, d.what, fmt.Sprintf(format, args...), d.off)
	}
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

func (d *decoder) byte() byte {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) version() {
	if v := d.byte(); d.err == nil && v != messageVersion {
		d.off--
		d.fail("unknown format version %d", v)
	}
}

// take returns the next n bytes, or nil after recording a truncation.
func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if d.remaining() < n {
		d.fail("truncated")
		return nil
	}
	v := d.b[d.off : d.off+n]
	d.off += n
	return v
}

func (d *decoder) u16() uint16 {
	if b := d.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// uvarint reads a minimally encoded uvarint: a longer form of the same value would not re-encode identically.
func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		d.fail("truncated")
		return 0
	case n < 0:
		d.fail("varint overflows 64 bits")
		return 0
	case n > 1 && d.b[d.off+n-1] == 0:
		d.fail("non-minimal varint")
		return 0
	}
	d.off += n
	return v
}

// length reads a length or count whose items take at least minSize bytes each, refusing any that the rest of the input
// cannot hold: this bounds every allocation by the input size.
func (d *decoder) length(minSize int) int {
	v := d.uvarint()
	if d.err != nil {
		return 0
	}
	if v > uint64(d.remaining()/minSize) {
		d.fail("length %d exceeds the remaining %d bytes", v, d.remaining())
		return 0
	}
	return int(v)
}

// bytes reads a length-prefixed byte string aliasing the input; empty is nil.
func (d *decoder) bytes() []byte {
	n := d.length(1)
	if d.err != nil || n == 0 {
		return nil
	}
	v := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return v
}

// optBytes reads a byte string announced by a flag bit; present means non-empty, so the encoding stays canonical.
func (d *decoder) optBytes(present bool, field string) []byte {
	if !present {
		return nil
	}
	v := d.bytes()
	if d.err == nil && v == nil {
		d.fail("%s flagged present but empty", field)
	}
	return v
}

func (d *decoder) string() string {
	return string(d.bytes())
}

func (d *decoder) finish() error {
	if d.err == nil && d.remaining() != 0 {
		d.fail("%d trailing bytes", d.remaining())
	}
	return d.err
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	switch {
	case n == 0:
		d.fail("truncated")
		return 0
	case n < 0:
		d.fail("varint overflows 64 bits")
		return 0
	case n != len(binary.AppendVarint(nil, v)):
		d.fail("non-minimal varint")
		return 0
	}
	d.off += n
	return v
}

// flags reads a flag byte and refuses bits outside known.
func (d *decoder) flags(known byte) byte {
	v := d.byte()
	if d.err == nil && v&^known != 0 {
		d.off--
		d.fail("unknown flags %#x", v&^known)
		return 0
	}
	return v
}

// Decoder reads a versioned payload of a message defined outside this package on wire frames (the arbiter's), with the same
// rules as wire's own: the first failure sticks and is ErrMalformed naming the message and offset, integers must be
// minimally encoded, lengths are bounded by the input, and Finish refuses trailing bytes.
type Decoder struct{ d decoder }

// NewDecoder starts decoding b, a message called what in errors.
func NewDecoder(what string, b []byte) *Decoder { return &Decoder{decoder{what: what, b: b}} }

// Version reads the leading format version byte (it must be 1).
func (d *Decoder) Version() { d.d.version() }

// Byte reads one byte.
func (d *Decoder) Byte() byte { return d.d.byte() }

// Flags reads a flag byte, refusing bits outside known.
func (d *Decoder) Flags(known byte) byte { return d.d.flags(known) }

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint() uint64 { return d.d.uvarint() }

// Varint reads a signed varint.
func (d *Decoder) Varint() int64 { return d.d.varint() }

// String reads a length-prefixed string.
func (d *Decoder) String() string { return d.d.string() }

// Fail records a failure (the first one sticks).
func (d *Decoder) Fail(format string, args ...any) { d.d.fail(format, args...) }

// Err is the failure so far, if any.
func (d *Decoder) Err() error { return d.d.err }

// Finish refuses trailing bytes and returns the first failure.
func (d *Decoder) Finish() error { return d.d.finish() }

// AppendString appends a length-prefixed string, as Decoder.String reads it.
func AppendString(dst []byte, s string) []byte { return appendString(dst, s) }
