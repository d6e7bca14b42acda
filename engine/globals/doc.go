// Package globals owns the vocabulary of global references: parsing and
// printing ^Name(sub1, sub2, …), canonical numbers and the exact decimal
// addition behind Increment, and the encoding of references to byte keys.
// It is pure computation: it must not touch storage, files, the network or
// logging, so every other package can depend on it.
//
// # Collation
//
// At every level numbers sort before strings, numbers in numeric order and
// strings bytewise. A node sorts before its descendants, and its descendants
// are contiguous. Following the MUMPS rule, a string that is a canonical
// number ("42", but not "042" or "1.0") is that number.
//
// # Numbers
//
// A number has at most MaxDigits significant digits and a scientific
// exponent (d.ddd×10^e) within ±1000. Its canonical text is plain positional
// notation without a leading '+', without leading zeros except a single "0"
// before the point ("0.5"), without trailing fractional zeros or a trailing
// point, and with "-0" written "0".
//
// # Key encoding (EncodingVersion 1)
//
// The bytewise order of keys, which is the order the storage engine keeps,
// equals the collation. A key is the name bytes, a 0x00 byte, then one
// self-delimiting element per subscript:
//
//	zero      0x14
//	positive  0x15, exp+0x8000 as big-endian uint16, each digit d as d+1, 0x00
//	negative  0x13, the positive form's exponent and digit bytes inverted, 0xFF
//	string    0x20, bytes with 0x00 written 0x00 0xFF, 0x00 0x01
//
// where a number's value is 0.d1d2…dn × 10^exp with d1 and dn nonzero. The
// terminator sorting below every digit byte puts 1.5 before 1.55, and the
// inversion puts -1.55 before -1.5. Because the name cannot contain 0x00 and
// no element encoding is a prefix of another, the key of a node is a prefix
// of the keys of exactly its descendants, so PrefixEnd of a node's key bounds
// a scan or range delete of its subtree. Decode is strict: it accepts only
// what Encode produces, so every stored key has one reading.
package globals
