package globals

import (
	"bytes"
	"fmt"
)

// EncodingVersion identifies the key format described in the package
// documentation. Keys are persisted, so any change to the format needs a new
// version and a migration.
const EncodingVersion = 1

// Element tags; their order is the collation order of the kinds.
const (
	tagNegative = 0x13
	tagZero     = 0x14
	tagPositive = 0x15
	tagString   = 0x20
)

// expBias maps the exponent (value = 0.digits × 10^exp) onto an unsigned
// big-endian field, so larger exponents sort later.
const expBias = 0x8000

// Encode validates r and returns its key.
func Encode(r Ref) ([]byte, error) {
	return AppendEncode(nil, r)
}

// AppendEncode validates r and appends its key to dst. On error dst is
// returned unchanged.
func AppendEncode(dst []byte, r Ref) ([]byte, error) {
	if err := ValidName(r.Name); err != nil {
		return dst, err
	}
	if len(r.Subs) > MaxSubscripts {
		return dst, fmt.Errorf("%w: ^%s has %d, limit %d", ErrTooManySubs, r.Name, len(r.Subs), MaxSubscripts)
	}
	start := len(dst)
	out := append(dst, r.Name...)
	out = append(out, 0)
	for i, s := range r.Subs {
		var err error
		if out, err = appendSubscript(out, s); err != nil {
			return dst[:start], fmt.Errorf("subscript %d of ^%s: %w", i+1, r.Name, err)
		}
	}
	if n := len(out) - start; n > MaxKeyLen {
		return dst[:start], fmt.Errorf("%w: ^%s with %d subscripts encodes to %d bytes, limit %d",
			ErrKeyTooLong, r.Name, len(r.Subs), n, MaxKeyLen)
	}
	return out, nil
}

func appendSubscript(dst []byte, s Subscript) ([]byte, error) {
	if s.IsNum {
		d, err := parseDecimal(s.Num)
		if err != nil {
			return dst, err
		}
		return appendNumber(dst, d), nil
	}
	if d, ok := canonicalDecimal(s.Str); ok {
		return appendNumber(dst, d), nil
	}
	dst = append(dst, tagString)
	for i := 0; i < len(s.Str); i++ {
		if c := s.Str[i]; c == 0 {
			dst = append(dst, 0, 0xFF)
		} else {
			dst = append(dst, c)
		}
	}
	return append(dst, 0, 0x01), nil
}

// appendNumber writes a number element. Digits are stored as d+1 so that the
// 0x00 terminator sorts before any digit (1.5 < 1.55); a negative number has
// its exponent and digits inverted (terminator 0xFF) so that larger
// magnitudes sort first.
func appendNumber(dst []byte, d decimal) []byte {
	if d.isZero() {
		return append(dst, tagZero)
	}
	var flip byte
	tag := byte(tagPositive)
	if d.neg {
		flip, tag = 0xFF, tagNegative
	}
	exp := uint16(d.exp + expBias)
	dst = append(dst, tag, byte(exp>>8)^flip, byte(exp)^flip)
	for _, c := range d.digits {
		dst = append(dst, (c-'0'+1)^flip)
	}
	return append(dst, flip)
}

// Decode returns the reference encoded in key. It is strict: anything Encode
// cannot produce is rejected with ErrCorruptKey and the offset of the fault.
func Decode(key []byte) (Ref, error) {
	pos, name, err := decodeName(key)
	if err != nil {
		return Ref{}, err
	}
	r := Ref{Name: name}
	for pos < len(key) {
		if len(r.Subs) == MaxSubscripts {
			return Ref{}, corrupt(key, pos, "more than %d subscripts", MaxSubscripts)
		}
		var sub Subscript
		if sub, pos, err = decodeElement(key, pos); err != nil {
			return Ref{}, err
		}
		r.Subs = append(r.Subs, sub)
	}
	return r, nil
}

// SplitLevel returns, for an encoded key and a level (0 is the first
// subscript), the length of the encoding of the reference truncated to
// level+1 subscripts and the subscript at that level. A valid key without a
// subscript at that level yields ErrShallowKey.
func SplitLevel(key []byte, level int) (prefixLen int, sub Subscript, err error) {
	pos, _, err := decodeName(key)
	if err != nil {
		return 0, Subscript{}, err
	}
	for l := 0; ; l++ {
		if pos == len(key) || level < 0 {
			return 0, Subscript{}, fmt.Errorf("%w: level %d of key %s", ErrShallowKey, level, quoteKey(key))
		}
		if l == MaxSubscripts {
			return 0, Subscript{}, corrupt(key, pos, "more than %d subscripts", MaxSubscripts)
		}
		if sub, pos, err = decodeElement(key, pos); err != nil {
			return 0, Subscript{}, err
		}
		if l == level {
			return pos, sub, nil
		}
	}
}

// PrefixEnd returns the smallest key greater than every key having prefix:
// an exclusive upper bound for range scans and range deletes. It returns nil
// when no such key exists (prefix empty or all 0xFF), meaning no upper bound.
func PrefixEnd(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xFF {
			end := bytes.Clone(prefix[:i+1])
			end[i]++
			return end
		}
	}
	return nil
}

// decodeName checks the length limit and the name, and returns the offset of
// the first subscript element.
func decodeName(key []byte) (int, string, error) {
	if len(key) > MaxKeyLen {
		return 0, "", fmt.Errorf("%w: %w: %d bytes, limit %d", ErrCorruptKey, ErrKeyTooLong, len(key), MaxKeyLen)
	}
	i := bytes.IndexByte(key, 0)
	if i < 0 {
		return 0, "", corrupt(key, len(key), "name not terminated")
	}
	name := string(key[:i])
	if err := ValidName(name); err != nil {
		return 0, "", corrupt(key, 0, "%v", err)
	}
	return i + 1, name, nil
}

// decodeElement decodes the subscript element at off and returns the offset
// just past it.
func decodeElement(key []byte, off int) (Subscript, int, error) {
	switch key[off] {
	case tagZero:
		return Subscript{IsNum: true, Num: "0"}, off + 1, nil
	case tagPositive:
		return decodeNumber(key, off, false)
	case tagNegative:
		return decodeNumber(key, off, true)
	case tagString:
		return decodeString(key, off)
	default:
		return Subscript{}, 0, corrupt(key, off, "unknown element tag 0x%02x", key[off])
	}
}

func decodeNumber(key []byte, off int, neg bool) (Subscript, int, error) {
	var flip byte
	if neg {
		flip = 0xFF
	}
	pos := off + 1
	if len(key)-pos < 2 {
		return Subscript{}, 0, corrupt(key, pos, "truncated exponent")
	}
	exp := uint16(key[pos]^flip)<<8 | uint16(key[pos+1]^flip)
	pos += 2
	d := decimal{neg: neg, exp: int(exp) - expBias}
	for {
		if pos == len(key) {
			return Subscript{}, 0, corrupt(key, pos, "unterminated number")
		}
		b := key[pos] ^ flip
		if b == 0 {
			break
		}
		switch {
		case b > 10:
			return Subscript{}, 0, corrupt(key, pos, "invalid digit byte 0x%02x", key[pos])
		case b == 1 && len(d.digits) == 0:
			return Subscript{}, 0, corrupt(key, pos, "leading zero digit")
		case len(d.digits) == MaxDigits:
			return Subscript{}, 0, corrupt(key, pos, "more than %d digits", MaxDigits)
		}
		d.digits = append(d.digits, '0'+b-1)
		pos++
	}
	switch {
	case len(d.digits) == 0:
		return Subscript{}, 0, corrupt(key, pos, "number without digits")
	case d.digits[len(d.digits)-1] == '0':
		return Subscript{}, 0, corrupt(key, pos-1, "trailing zero digit")
	}
	if err := d.checkLimits(); err != nil {
		return Subscript{}, 0, corrupt(key, off+1, "%v", err)
	}
	return Subscript{IsNum: true, Num: d.String()}, pos + 1, nil
}

func decodeString(key []byte, off int) (Subscript, int, error) {
	var s []byte
	pos := off + 1
	for {
		i := bytes.IndexByte(key[pos:], 0)
		if i < 0 || pos+i+1 == len(key) {
			return Subscript{}, 0, corrupt(key, len(key), "unterminated string")
		}
		s = append(s, key[pos:pos+i]...)
		pos += i
		switch key[pos+1] {
		case 0xFF:
			s = append(s, 0)
			pos += 2
		case 0x01:
			str := string(s)
			if _, ok := canonicalDecimal(str); ok {
				return Subscript{}, 0, corrupt(key, off, "string %q is a canonical number", str)
			}
			return Subscript{Str: str}, pos + 2, nil
		default:
			return Subscript{}, 0, corrupt(key, pos+1, "invalid escape 0x00 0x%02x in string", key[pos+1])
		}
	}
}

func corrupt(key []byte, off int, format string, args ...any) error {
	return fmt.Errorf("%w %s at offset %d: %s", ErrCorruptKey, quoteKey(key), off, fmt.Sprintf(format, args...))
}

// quoteKey renders a key for an error message, cut short so a long key does
// not swamp the message.
func quoteKey(key []byte) string {
	const limit = 64
	if len(key) > limit {
		return fmt.Sprintf("%q...", key[:limit])
	}
	return fmt.Sprintf("%q", key)
}
