package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var codecs = []Codec{CodecNone, CodecLZ4, CodecZstd}

var words = strings.Fields(`order shipped customer invoice paid pending warehouse Boston Chicago Denver item quantity
	price discount total tax address street city state zip phone email note priority express standard returned`)

// journalLike returns about size bytes of record frames shaped like the journal's: a frame header with a CRC32C, then
// a version, type and flags, uvarint epoch, segment, offset and transaction id, a time, the database name, a 16-byte
// key and a 100-byte text value, and for updates the 100-byte text before-image.
func journalLike(tb testing.TB, size int, seed uint64) []byte {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	text := func() []byte {
		var b []byte
		for len(b) < 100 {
			b = append(b, words[rng.IntN(len(words))]...)
			b = append(b, ' ')
		}
		return b[:100]
	}
	var out, payload []byte
	txn, now := uint64(1000), int64(1_750_000_000_000_000_000)
	for len(out) < size {
		update := rng.IntN(3) == 0
		flags := byte(0b101) // TxnEnd, HasValue
		if update {
			flags |= 0b010 // HasBefore
		}
		txn++
		now += int64(rng.IntN(50_000))
		payload = append(payload[:0], 1, 1, flags)
		payload = binary.AppendUvarint(payload, 3)
		payload = binary.AppendUvarint(payload, 42)
		payload = binary.AppendUvarint(payload, uint64(len(out)))
		payload = binary.AppendUvarint(payload, txn)
		payload = binary.AppendVarint(payload, now)
		payload = appendString(payload, "orders")
		payload = appendString(payload, fmt.Sprintf("^Orders(%07d)", rng.IntN(10_000_000)))
		payload = appendBytes(payload, text())
		if update {
			payload = appendBytes(payload, text())
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(len(payload)))
		out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(payload, castagnoli))
		out = append(out, payload...)
	}
	return out
}

func randomBytes(size int, seed uint64) []byte {
	b := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return b
}

func compressionInputs(tb testing.TB) []struct {
	name string
	raw  []byte
} {
	tb.Helper()
	return []struct {
		name string
		raw  []byte
	}{
		{"empty", nil},
		{"one byte", []byte{'x'}},
		{"zeros", make([]byte, 1<<20)},
		{"journal 4 KiB", journalLike(tb, 4<<10, 1)},
		{"journal 1 MiB", journalLike(tb, 1<<20, 2)},
		{"random 64 KiB", randomBytes(64<<10, 3)},
		{"random 3 MiB", randomBytes(3<<20, 4)},
	}
}

func TestCompressRoundTrip(t *testing.T) {
	prefix := []byte("prefix")
	for _, in := range compressionInputs(t) {
		for _, c := range codecs {
			t.Run(in.name+"/"+c.String(), func(t *testing.T) {
				comp, err := Compress(c, bytes.Clone(prefix), in.raw)
				if err != nil {
					t.Fatalf("compress: %v", err)
				}
				if !bytes.HasPrefix(comp, prefix) {
					t.Fatalf("compress did not append to dst")
				}
				comp = comp[len(prefix):]
				if len(in.raw) == 0 && len(comp) != 0 {
					t.Fatalf("empty input compressed to %d bytes", len(comp))
				}
				got, err := Decompress(c, bytes.Clone(prefix), comp, len(in.raw))
				if err != nil {
					t.Fatalf("decompress: %v", err)
				}
				if !bytes.Equal(got, append(bytes.Clone(prefix), in.raw...)) {
					t.Fatalf("round trip differs: %d bytes in, %d out", len(in.raw), len(got)-len(prefix))
				}
				if c != CodecNone && strings.HasPrefix(in.name, "journal") && len(comp) > len(in.raw)/2 {
					t.Fatalf("journal data compressed only to %d of %d bytes", len(comp), len(in.raw))
				}
			})
		}
	}
}

// TestCompressConcurrent runs the shared encoders and decoders from many goroutines, for the race detector.
func TestCompressConcurrent(t *testing.T) {
	raw := journalLike(t, 256<<10, 5)
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(codecs))
	for i := range 4 * len(codecs) {
		c := codecs[i%len(codecs)]
		wg.Go(func() {
			var comp, out []byte
			for range 8 {
				var err error
				if comp, err = Compress(c, comp[:0], raw); err != nil {
					errs <- err
					return
				}
				if out, err = Decompress(c, out[:0], comp, len(raw)); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(out, raw) {
					errs <- fmt.Errorf("%s: round trip differs", c)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestParseCodec(t *testing.T) {
	tests := []struct {
		in   string
		want Codec
		ok   bool
	}{
		{"none", CodecNone, true},
		{"NONE", CodecNone, true},
		{"lz4", CodecLZ4, true},
		{"LZ4", CodecLZ4, true},
		{"zstd", CodecZstd, true},
		{"Zstd", CodecZstd, true},
		{"", 0, false},
		{"s2", 0, false},
		{"zstd ", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseCodec(tt.in)
		switch {
		case tt.ok && (err != nil || got != tt.want):
			t.Errorf("ParseCodec(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		case !tt.ok && !errors.Is(err, ErrUnknownCodec):
			t.Errorf("ParseCodec(%q) = %v, %v; want ErrUnknownCodec", tt.in, got, err)
		}
	}
	for _, c := range codecs {
		if got, err := ParseCodec(c.String()); err != nil || got != c {
			t.Errorf("ParseCodec(%s.String()) = %v, %v", c, got, err)
		}
	}
	if got := Codec(9).String(); got != "codec 9" {
		t.Errorf("Codec(9).String() = %q", got)
	}
}

func TestDecompressRejects(t *testing.T) {
	raw := journalLike(t, 64<<10, 6)
	compressed := map[Codec][]byte{}
	for _, c := range codecs {
		comp, err := Compress(c, nil, raw)
		if err != nil {
			t.Fatalf("compress %s: %v", c, err)
		}
		compressed[c] = comp
	}
	secondFrame, err := Compress(CodecZstd, bytes.Clone(compressed[CodecZstd]), []byte("more"))
	if err != nil {
		t.Fatalf("compress: %v", err)
	}
	tests := []struct {
		name   string
		codec  Codec
		src    []byte
		rawLen int
	}{
		{"none shorter", CodecNone, compressed[CodecNone], len(raw) - 1},
		{"none longer", CodecNone, compressed[CodecNone], len(raw) + 1},
		{"none empty", CodecNone, nil, 10},
		{"negative", CodecNone, nil, -1},
		{"lz4 shorter", CodecLZ4, compressed[CodecLZ4], len(raw) - 1},
		{"lz4 longer", CodecLZ4, compressed[CodecLZ4], len(raw) + 1},
		{"lz4 zero", CodecLZ4, compressed[CodecLZ4], 0},
		{"lz4 truncated", CodecLZ4, compressed[CodecLZ4][:len(compressed[CodecLZ4])-1], len(raw)},
		{"lz4 trailing", CodecLZ4, append(bytes.Clone(compressed[CodecLZ4]), 0), len(raw)},
		{"lz4 garbage", CodecLZ4, randomBytes(1000, 7), len(raw)},
		{"lz4 bad varint", CodecLZ4, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, len(raw)},
		{"zstd shorter", CodecZstd, compressed[CodecZstd], len(raw) - 1},
		{"zstd longer", CodecZstd, compressed[CodecZstd], len(raw) + 1},
		{"zstd zero", CodecZstd, compressed[CodecZstd], 0},
		{"zstd truncated", CodecZstd, compressed[CodecZstd][:len(compressed[CodecZstd])-1], len(raw)},
		{"zstd header only", CodecZstd, compressed[CodecZstd][:3], len(raw)},
		{"zstd two frames", CodecZstd, secondFrame, len(raw)},
		{"zstd checksum", CodecZstd, flipLast(compressed[CodecZstd]), len(raw)},
		{"zstd garbage", CodecZstd, randomBytes(1000, 8), len(raw)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decompress(tt.codec, nil, tt.src, tt.rawLen); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
	for _, c := range []Codec{3, 255} {
		if _, err := Compress(c, nil, raw); !errors.Is(err, ErrUnknownCodec) {
			t.Errorf("Compress with %s: got %v, want ErrUnknownCodec", c, err)
		}
		if _, err := Decompress(c, nil, raw, len(raw)); !errors.Is(err, ErrUnknownCodec) {
			t.Errorf("Decompress with %s: got %v, want ErrUnknownCodec", c, err)
		}
	}
}

func flipLast(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)-1] ^= 0xff
	return b
}

// TestDecompressMemoryBound checks that a tiny payload claiming a huge raw length is refused before the output buffer
// is allocated.
func TestDecompressMemoryBound(t *testing.T) {
	raw := journalLike(t, 4<<10, 9)
	const rawLen = 1 << 30
	for _, c := range []Codec{CodecLZ4, CodecZstd} {
		t.Run(c.String(), func(t *testing.T) {
			comp, err := Compress(c, nil, raw)
			if err != nil {
				t.Fatalf("compress: %v", err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			if _, err := Decompress(c, nil, comp, rawLen); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
			runtime.ReadMemStats(&after)
			if used := after.TotalAlloc - before.TotalAlloc; used > 1<<20 {
				t.Fatalf("refusing %d bytes allocated %d bytes", len(comp), used)
			}
		})
	}
}

func FuzzDecompress(f *testing.F) {
	raw := journalLike(f, 2<<10, 10)
	for _, c := range codecs {
		comp, err := Compress(c, nil, raw)
		if err != nil {
			f.Fatalf("compress: %v", err)
		}
		f.Add(byte(c), uint32(len(raw)), comp)
	}
	f.Add(byte(CodecLZ4), uint32(10), []byte{10, 0x28, 'a', 'b', 'c'})
	f.Fuzz(func(t *testing.T, codec byte, rawLen uint32, src []byte) {
		c := Codec(codec % 4)
		rawLen %= 1 << 20 // the caller bounds rawLen; keep the fuzzer's allocations small
		out, err := Decompress(c, nil, src, int(rawLen))
		switch {
		case err == nil && len(out) != int(rawLen):
			t.Fatalf("%s: accepted %d bytes for raw length %d", c, len(out), rawLen)
		case err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownCodec):
			t.Fatalf("%s: error %v is neither ErrMalformed nor ErrUnknownCodec", c, err)
		}
	})
}

// BenchmarkCompress measures each codec on 64 KiB batches of journal-like records (16-byte keys, 100-byte text values),
// reporting the raw throughput and the ratio of raw to compressed bytes.
func BenchmarkCompress(b *testing.B) {
	raw := journalLike(b, 64<<10, 11)
	for _, c := range codecs {
		b.Run(c.String(), func(b *testing.B) {
			var comp []byte
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				var err error
				if comp, err = Compress(c, comp[:0], raw); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(raw))/float64(len(comp)), "ratio")
		})
	}
}

// BenchmarkDecompress measures each codec decompressing the batches of BenchmarkCompress, in raw bytes per second.
func BenchmarkDecompress(b *testing.B) {
	raw := journalLike(b, 64<<10, 11)
	for _, c := range codecs {
		b.Run(c.String(), func(b *testing.B) {
			comp, err := Compress(c, nil, raw)
			if err != nil {
				b.Fatal(err)
			}
			var out []byte
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if out, err = Decompress(c, out[:0], comp, len(raw)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(raw))/float64(len(comp)), "ratio")
		})
	}
}
