package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

func sampleRecords() []Record {
	return []Record{
		{Pos: Position{1, 1, HeaderSize}, Type: RecordSet, TxnID: 1, TxnEnd: true, Time: 1700000000000000000,
			DB: "orders", Key: []byte("^Orders(42)"), Value: []byte("hello"), HasValue: true},
		{Pos: Position{2, 3, 4096}, Type: RecordSet, TxnID: 7, Time: -5, DB: "db", Key: []byte("k"),
			Value: []byte{}, HasValue: true, Before: []byte("old"), HasBefore: true},
		{Pos: Position{2, 3, 5000}, Type: RecordKill, TxnID: 7, TxnEnd: true, DB: "db", Key: []byte("k"),
			Before: []byte{}, HasBefore: true},
		{Pos: Position{3, 9, 32}, Type: RecordEpochStart, TxnID: 8, TxnEnd: true},
		{Pos: Position{math.MaxUint64, math.MaxUint64, math.MaxUint64}, Type: RecordMarker, TxnID: math.MaxUint64,
			Time: math.MinInt64, DB: "x", Key: []byte{0, 1, 2}, Value: bytes.Repeat([]byte{0xff}, 300), HasValue: true},
		{Pos: Position{1, 1, 100}, Type: RecordNoop, Time: math.MaxInt64},
	}
}

// sameRecord compares records treating nil and empty slices alike (the
// flags, not the slices, say whether a value is present).
func sameRecord(a, b Record) bool {
	return a.Pos == b.Pos && a.Type == b.Type && a.TxnID == b.TxnID && a.TxnEnd == b.TxnEnd && a.Time == b.Time &&
		a.DB == b.DB && bytes.Equal(a.Key, b.Key) && a.HasValue == b.HasValue && bytes.Equal(a.Value, b.Value) &&
		a.HasBefore == b.HasBefore && bytes.Equal(a.Before, b.Before)
}

func TestRecordRoundTrip(t *testing.T) {
	for _, want := range sampleRecords() {
		t.Run(want.Type.String(), func(t *testing.T) {
			frame := AppendRecord([]byte("prefix"), &want)[len("prefix"):]
			if len(frame) != want.Size() {
				t.Fatalf("encoded %d bytes, Size says %d", len(frame), want.Size())
			}
			got, n, err := DecodeRecord(append(frame, "trailing"...))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if n != len(frame) || !sameRecord(got, want) {
				t.Fatalf("decoded %+v (%d bytes), want %+v (%d bytes)", got, n, want, len(frame))
			}
			if want.HasValue && got.Value == nil {
				t.Fatal("present empty value decoded as absent")
			}
		})
	}
}

func randomRecord(rng *rand.Rand) Record {
	randBytes := func() []byte {
		b := make([]byte, rng.IntN(200))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	r := Record{
		Pos:    Position{rng.Uint64() >> rng.IntN(64), rng.Uint64() >> rng.IntN(64), rng.Uint64() >> rng.IntN(64)},
		Type:   RecordType(1 + rng.IntN(5)),
		TxnID:  rng.Uint64() >> rng.IntN(64),
		TxnEnd: rng.IntN(2) == 0,
		Time:   rng.Int64() - math.MaxInt64/2,
		DB:     string(randBytes()),
		Key:    randBytes(),
	}
	if rng.IntN(2) == 0 {
		r.Value, r.HasValue = randBytes(), true
	}
	if rng.IntN(2) == 0 {
		r.Before, r.HasBefore = randBytes(), true
	}
	return r
}

func TestRecordRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var buf []byte
	var want []Record
	for range 2000 {
		r := randomRecord(rng)
		want = append(want, r)
		buf = AppendRecord(buf, &r)
	}
	for i, w := range want {
		got, n, err := DecodeRecord(buf)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if n != w.Size() || !sameRecord(got, w) {
			t.Fatalf("record %d: got %+v, want %+v", i, got, w)
		}
		buf = buf[n:]
	}
	if len(buf) != 0 {
		t.Fatalf("%d bytes left over", len(buf))
	}
}

// reframe rebuilds the frame header around a modified payload, so that the
// payload checks (not the checksum) are what fails.
func reframe(payload []byte) []byte {
	frame := make([]byte, frameHeaderSize, frameHeaderSize+len(payload))
	binary.LittleEndian.PutUint32(frame, uint32(len(payload)))
	binary.LittleEndian.PutUint32(frame[4:], crc32.Checksum(payload, castagnoli))
	return append(frame, payload...)
}

func TestDecodeRecordErrors(t *testing.T) {
	good := sampleRecords()[0]
	frame := AppendRecord(nil, &good)
	payload := frame[frameHeaderSize:]
	edit := func(f func(p []byte) []byte) []byte {
		return reframe(f(append([]byte(nil), payload...)))
	}
	tests := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"empty", nil, ErrCorrupt},
		{"short header", frame[:5], ErrCorrupt},
		{"zero length", make([]byte, 16), ErrCorrupt},
		{"truncated", frame[:len(frame)-1], ErrCorrupt},
		{"huge length", append([]byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0}, payload...), ErrCorrupt},
		{"bad checksum", func() []byte { f := append([]byte(nil), frame...); f[len(f)-1] ^= 1; return f }(), ErrCorrupt},
		{"newer version", edit(func(p []byte) []byte { p[0] = NewestRecordVersion + 1; return p }), ErrUnsupportedVersion},
		{"type zero", edit(func(p []byte) []byte { p[1] = 0; return p }), ErrCorrupt},
		{"unknown type", edit(func(p []byte) []byte { p[1] = 6; return p }), ErrCorrupt},
		{"unknown flag", edit(func(p []byte) []byte { p[2] |= 0x80; return p }), ErrCorrupt},
		{"trailing byte", edit(func(p []byte) []byte { return append(p, 0) }), ErrCorrupt},
		{"truncated payload", edit(func(p []byte) []byte { return p[:len(p)-1] }), ErrCorrupt},
		{"short payload", reframe([]byte{1, 1}), ErrCorrupt},
		{"non-minimal varint", edit(func(p []byte) []byte {
			// Epoch 1 written as two bytes.
			return append([]byte{p[0], p[1], p[2], 0x81, 0x00}, p[4:]...)
		}), ErrCorrupt},
		{"overlong string", edit(func(p []byte) []byte { return append(p[:len(p)-6], 0x7f) }), ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := DecodeRecord(tt.frame)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAppendRecordValidation(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
		want error
	}{
		{"unknown type", Record{Type: 9, TxnEnd: true}, ErrInvalidRecord},
		{"value without flag", Record{Type: RecordSet, Value: []byte("v"), TxnEnd: true}, ErrInvalidRecord},
		{"before without flag", Record{Type: RecordKill, Before: []byte("v"), TxnEnd: true}, ErrInvalidRecord},
		{"too large", Record{Type: RecordSet, Value: make([]byte, MaxPayloadSize), HasValue: true, TxnEnd: true}, ErrRecordTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkAppendable(&tt.rec); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	largest := Record{Type: RecordSet, Value: make([]byte, 16<<20), HasValue: true, TxnEnd: true, Key: []byte("k"), DB: "db"}
	if err := checkAppendable(&largest); err != nil {
		t.Fatalf("16 MiB value refused: %v", err)
	}
}

func TestRecordTypeString(t *testing.T) {
	want := map[RecordType]string{RecordSet: "set", RecordKill: "kill", RecordEpochStart: "epoch-start",
		RecordMarker: "marker", RecordNoop: "noop", 0: "RecordType(0)", 200: "RecordType(200)"}
	got := map[RecordType]string{}
	for typ := range want {
		got[typ] = typ.String()
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(AppendRecord(nil, &r))
	}
	f.Add([]byte{})
	f.Add(make([]byte, 12))
	f.Fuzz(func(t *testing.T, frame []byte) {
		rec, n, err := DecodeRecord(frame)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if n > len(frame) || n != rec.Size() {
			t.Fatalf("consumed %d of %d bytes, Size says %d", n, len(frame), rec.Size())
		}
		if again := AppendRecord(nil, &rec); !bytes.Equal(again, frame[:n]) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, frame[:n])
		}
	})
}

// FuzzDecodePayload fuzzes the payload decoder behind a valid checksum,
// which random frames almost never get past.
func FuzzDecodePayload(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(AppendRecord(nil, &r)[frameHeaderSize:])
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) == 0 || len(payload) > MaxPayloadSize {
			return
		}
		frame := reframe(payload)
		rec, n, err := DecodeRecord(frame)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if n != len(frame) {
			t.Fatalf("consumed %d of %d bytes", n, len(frame))
		}
		if again := AppendRecord(nil, &rec); !bytes.Equal(again, frame) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, frame)
		}
	})
}
