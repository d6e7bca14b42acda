package wire

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// ErrUnknownCodec is returned for a codec name or number this build does not implement; it is wrapped with the codec.
var ErrUnknownCodec = errors.New("unknown compression codec")

// Codec is the compression of the record frames in a JournalBatch. Numbers are part of the protocol: never renumber.
type Codec uint8

// Codecs.
//
// CodecLZ4 names the fast codec of the stream by the class operators know it as; it is implemented with the S2 block
// format (github.com/klauspost/compress/s2), which compresses and decompresses at LZ4 speeds with a better ratio and
// needs no cgo. Both ends of a stream run this package, so the name only matters in configuration and status.
//
// CodecZstd is Zstandard (github.com/klauspost/compress/zstd) at its fastest level: a stream compresses every record
// once, as it is written, so encoding speed matters more than the last percent of ratio.
const (
	CodecNone Codec = 0
	CodecLZ4  Codec = 1
	CodecZstd Codec = 2
)

var codecNames = [...]string{CodecNone: "none", CodecLZ4: "lz4", CodecZstd: "zstd"}

// ParseCodec parses a codec name as written in configuration: "none", "lz4" or "zstd", in any case.
func ParseCodec(s string) (Codec, error) {
	for c, name := range codecNames {
		if strings.EqualFold(s, name) {
			return Codec(c), nil
		}
	}
	return 0, fmt.Errorf("%w %q: want none, lz4 or zstd", ErrUnknownCodec, s)
}

func (c Codec) String() string {
	if c.valid() {
		return codecNames[c]
	}
	return "codec " + strconv.Itoa(int(c))
}

func (c Codec) valid() bool { return int(c) < len(codecNames) }

// The zstd encoder and decoder are created on first use and shared: EncodeAll and DecodeAll are safe for concurrent use
// and keep one internal state per concurrent caller, up to GOMAXPROCS, so every stream of a member compresses in
// parallel without each stream holding its own window-sized buffers. The decoder caps DecodeAll at the capacity of the
// destination, which Decompress sets to exactly rawLen: a hostile frame cannot make it allocate more.
var (
	zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(0))
	})
	zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
		return zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecodeAllCapLimit(true))
	})
)

// Compress appends src compressed with c to dst and returns the extended slice. Empty src compresses to nothing with
// every codec.
func Compress(c Codec, dst, src []byte) ([]byte, error) {
	if !c.valid() {
		return dst, fmt.Errorf("compress: %w: %s", ErrUnknownCodec, c)
	}
	if len(src) == 0 {
		return dst, nil
	}
	switch c {
	case CodecLZ4:
		limit := s2.MaxEncodedLen(len(src))
		if limit < 0 {
			return dst, fmt.Errorf("compress %d bytes with %s: too large", len(src), c)
		}
		n := len(dst)
		dst = slices.Grow(dst, limit)
		enc := s2.Encode(dst[n:n+limit], src)
		return dst[:n+len(enc)], nil
	case CodecZstd:
		enc, err := zstdEncoder()
		if err != nil {
			return dst, fmt.Errorf("compress with %s: %w", c, err)
		}
		return enc.EncodeAll(src, dst), nil
	}
	return append(dst, src...), nil
}

// Decompress appends the decompression of src with c to dst and returns the extended slice. src must decompress to
// exactly rawLen bytes; anything else, like any corrupt input, is ErrMalformed, and no more than rawLen bytes are ever
// allocated for the output. Callers bound rawLen (it comes from the peer) before calling.
func Decompress(c Codec, dst, src []byte, rawLen int) ([]byte, error) {
	if !c.valid() {
		return dst, fmt.Errorf("decompress: %w: %s", ErrUnknownCodec, c)
	}
	if rawLen < 0 {
		return dst, fmt.Errorf("%w: %s payload: negative raw length %d", ErrMalformed, c, rawLen)
	}
	if (len(src) == 0) != (rawLen == 0) {
		return dst, fmt.Errorf("%w: %s payload of %d bytes for %d raw bytes", ErrMalformed, c, len(src), rawLen)
	}
	if rawLen == 0 {
		return dst, nil
	}
	n := len(dst)
	switch c {
	case CodecNone:
		if len(src) != rawLen {
			return dst, fmt.Errorf("%w: uncompressed payload of %d bytes, expected %d", ErrMalformed, len(src), rawLen)
		}
		return append(dst, src...), nil
	case CodecLZ4:
		// The block states its decoded length up front: check it before allocating anything.
		size, err := s2.DecodedLen(src)
		if err != nil {
			return dst, fmt.Errorf("%w: %s payload: %v", ErrMalformed, c, err)
		}
		if size != rawLen {
			return dst, fmt.Errorf("%w: %s payload decodes to %d bytes, expected %d", ErrMalformed, c, size, rawLen)
		}
		dst = slices.Grow(dst, rawLen)
		if _, err := s2.Decode(dst[n:n+rawLen], src); err != nil {
			return dst[:n], fmt.Errorf("%w: %s payload: %v", ErrMalformed, c, err)
		}
		return dst[:n+rawLen], nil
	}
	dec, err := zstdDecoder()
	if err != nil {
		return dst, fmt.Errorf("decompress with %s: %w", c, err)
	}
	if err := checkZstdHeader(src, rawLen); err != nil {
		return dst, err
	}
	out, err := dec.DecodeAll(src, slices.Grow(dst, rawLen)[:n:n+rawLen])
	if err != nil {
		return dst, fmt.Errorf("%w: %s payload: %v", ErrMalformed, c, err)
	}
	if len(out)-n != rawLen {
		return dst, fmt.Errorf("%w: %s payload decodes to %d bytes, expected %d", ErrMalformed, c, len(out)-n, rawLen)
	}
	return out, nil
}

// checkZstdHeader refuses a zstd payload whose first frame header is unreadable or announces a size other than rawLen,
// so that garbage is refused before any output buffer is allocated.
func checkZstdHeader(src []byte, rawLen int) error {
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return fmt.Errorf("%w: %s payload: %v", ErrMalformed, CodecZstd, err)
	}
	if h.HasFCS && h.FrameContentSize != uint64(rawLen) {
		return fmt.Errorf("%w: %s payload decodes to %d bytes, expected %d", ErrMalformed, CodecZstd, h.FrameContentSize, rawLen)
	}
	return nil
}
