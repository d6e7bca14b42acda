package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"testing"
)

// streamCodec encodes and decodes one stream message type through any, so tests can range over all of them.
type streamCodec struct {
	name   string
	typ    reflect.Type
	encode func(dst []byte, v any) []byte
	decode func(b []byte) (any, error)
	random func(rng *rand.Rand) any
}

func codecFor[T any](name string, encode func([]byte, *T) []byte, decode func([]byte) (T, error),
	random func(*rand.Rand) T) streamCodec {
	return streamCodec{
		name:   name,
		typ:    reflect.TypeFor[T](),
		encode: func(dst []byte, v any) []byte { t := v.(T); return encode(dst, &t) },
		decode: func(b []byte) (any, error) { return decode(b) },
		random: func(rng *rand.Rand) any { return random(rng) },
	}
}

var streamCodecs = []streamCodec{
	codecFor("stream start", EncodeStreamStart, DecodeStreamStart, randomStreamStart),
	codecFor("stream accept", EncodeStreamAccept, DecodeStreamAccept, randomStreamAccept),
	codecFor("journal batch", EncodeJournalBatch, DecodeJournalBatch, randomJournalBatch),
	codecFor("ack", EncodeAck, DecodeAck, randomAck),
	codecFor("heartbeat", EncodeHeartbeat, DecodeHeartbeat, randomHeartbeat),
	codecFor("handoff", EncodeHandoff, DecodeHandoff, randomHandoff),
	codecFor("handoff done", EncodeHandoffDone, DecodeHandoffDone, randomHandoffDone),
	codecFor("mirror state", EncodeMirrorState, DecodeMirrorState, randomMirrorState),
}

func sampleStreamMessages() []any {
	pos := Position{Epoch: 3, Segment: 42, Offset: 1837264}
	return []any{
		StreamStart{},
		StreamStart{Mirror: "ORDERS", Member: "backup-1", Epoch: 3, From: pos, Codecs: []Codec{CodecLZ4, CodecNone},
			ConfigVersion: 7, Software: "0.2.0", Level: 2},
		StreamStart{Mirror: "M", Member: "dr", Codecs: []Codec{9, CodecZstd}},
		StreamAccept{},
		StreamAccept{Primary: "primary-a", Epoch: 3, Codec: CodecZstd, From: pos},
		JournalBatch{},
		JournalBatch{Epoch: 3, First: pos, Next: Position{3, 42, 1837400}, Records: 1, Codec: CodecNone, RawLen: 3,
			Payload: []byte("abc"), PrimaryDurable: Position{3, 42, 1900000}, SentUnixNano: 1_750_000_000_123_456_789},
		JournalBatch{Epoch: math.MaxUint64, Records: math.MaxUint32, Codec: CodecLZ4, RawLen: math.MaxUint32,
			Payload: []byte{0xff}, SentUnixNano: -1},
		Ack{},
		Ack{Epoch: 3, Durable: pos, Applied: Position{3, 41, 99}, UnixNano: math.MinInt64},
		Heartbeat{},
		MirrorState{},
		MirrorState{Epoch: 9, Flags: StateActive | StateArbiterMode | StateNoFailover, SentUnixNano: 1_750_000_000_123_456_789},
		Heartbeat{Epoch: 3, UnixNano: math.MaxInt64, End: pos},
		Handoff{Epoch: 3, End: pos},
		HandoffDone{NewEpoch: 4},
		HandoffDone{Err: `database "orders" needs catchup`},
	}
}

// streamCodecIndex returns the index in streamCodecs of the codec handling v's type.
func streamCodecIndex(tb testing.TB, v any) int {
	tb.Helper()
	for i, sc := range streamCodecs {
		if sc.typ == reflect.TypeOf(v) {
			return i
		}
	}
	tb.Fatalf("no codec for %T", v)
	return 0
}

func TestStreamMessagesRoundTrip(t *testing.T) {
	for _, msg := range sampleStreamMessages() {
		sc := streamCodecs[streamCodecIndex(t, msg)]
		enc := sc.encode([]byte("prefix"), msg)
		got, err := sc.decode(enc[len("prefix"):])
		if err != nil {
			t.Fatalf("%s: decode %+v: %v", sc.name, msg, err)
		}
		if !reflect.DeepEqual(got, msg) {
			t.Fatalf("%s: round trip: got %+v, want %+v", sc.name, got, msg)
		}
	}
}

func TestStreamMessagesRandomRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, sc := range streamCodecs {
		t.Run(sc.name, func(t *testing.T) {
			for range 2000 {
				msg := sc.random(rng)
				enc := sc.encode(nil, msg)
				got, err := sc.decode(enc)
				if err != nil {
					t.Fatalf("decode %+v: %v", msg, err)
				}
				if !reflect.DeepEqual(got, msg) {
					t.Fatalf("round trip: got %+v, want %+v", got, msg)
				}
				// Every field is mandatory, so every proper prefix is truncated.
				cut := rng.IntN(len(enc))
				if _, err := sc.decode(enc[:cut]); !errors.Is(err, ErrMalformed) {
					t.Fatalf("prefix of %d of %d bytes: got %v, want ErrMalformed", cut, len(enc), err)
				}
			}
		})
	}
}

func TestStreamDecodeRejects(t *testing.T) {
	validStart := EncodeStreamStart(nil, &StreamStart{Mirror: "M", Codecs: []Codec{CodecLZ4}})
	acceptCodec := func(c Codec) []byte { return EncodeStreamAccept(nil, &StreamAccept{Codec: c}) }
	batch := func(jb JournalBatch) []byte { return EncodeJournalBatch(nil, &jb) }
	// A stream start whose codec list claims more bytes than the message holds.
	var (
		startDec     = decodeOnly(DecodeStreamStart)
		acceptDec    = decodeOnly(DecodeStreamAccept)
		batchDec     = decodeOnly(DecodeJournalBatch)
		ackDec       = decodeOnly(DecodeAck)
		heartbeatDec = decodeOnly(DecodeHeartbeat)
		handoffDec   = decodeOnly(DecodeHandoff)
		doneDec      = decodeOnly(DecodeHandoffDone)
		stateDec     = decodeOnly(DecodeMirrorState)
	)
	hugeCodecs := binary.AppendUvarint([]byte{messageVersion, 0, 0, 0, 0, 0, 0}, 1<<40)
	tests := []struct {
		name  string
		dec   func([]byte) error
		input []byte
	}{
		{"start empty", startDec, nil},
		{"start version", startDec, append([]byte{2}, validStart[1:]...)},
		{"start trailing", startDec, append(bytes.Clone(validStart), 0)},
		{"start truncated", startDec, validStart[:len(validStart)-1]},
		{"start huge codec list", startDec, hugeCodecs},
		{"start non-minimal varint", startDec, []byte{messageVersion, 0x80, 0x00, 0, 0, 0, 0, 0, 0, 0}},
		{"accept unknown codec", acceptDec, acceptCodec(3)},
		{"mirror state unknown flag", stateDec, []byte{messageVersion, 1, 8, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"mirror state truncated", stateDec, []byte{messageVersion, 1, 1, 0, 0, 0}},
		{"batch unknown codec", batchDec, batch(JournalBatch{Codec: 7})},
		{"batch records without bytes", batchDec, batch(JournalBatch{Records: 1})},
		{"batch bytes without records", batchDec, batch(JournalBatch{RawLen: 1, Payload: []byte{1}})},
		{"batch payload without raw length", batchDec,
			batch(JournalBatch{Codec: CodecZstd, Payload: []byte{1}})},
		{"batch raw length without payload", batchDec,
			batch(JournalBatch{Records: 1, Codec: CodecLZ4, RawLen: 5})},
		{"batch uncompressed length", batchDec,
			batch(JournalBatch{Records: 1, RawLen: 4, Payload: []byte("abc")})},
		{"batch record count overflow", batchDec,
			binary.AppendUvarint([]byte{messageVersion, 0, 0, 0, 0, 0, 0, 0}, 1<<32)},
		{"ack truncated time", ackDec, EncodeAck(nil, &Ack{})[:8]},
		{"heartbeat version", heartbeatDec, append([]byte{0}, EncodeHeartbeat(nil, &Heartbeat{})[1:]...)},
		{"handoff trailing", handoffDec, append(EncodeHandoff(nil, &Handoff{}), 0)},
		{"handoff done string overflow", doneDec, []byte{messageVersion, 0, 5, 'a'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.dec(tt.input); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func decodeOnly[T any](decode func([]byte) (T, error)) func([]byte) error {
	return func(b []byte) error { _, err := decode(b); return err }
}

// TestStreamDecodeMemoryBound feeds the densest stream start (one codec per byte) and checks what decoding allocates.
func TestStreamDecodeMemoryBound(t *testing.T) {
	const n = 1 << 20
	input := binary.AppendUvarint([]byte{messageVersion, 0, 0, 0, 0, 0, 0}, n)
	input = append(input, make([]byte, n)...)
	input = append(input, 0, 0, 0, 0) // config version, software, level
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := DecodeStreamStart(input); err != nil {
		t.Fatalf("decode: %v", err)
	}
	runtime.ReadMemStats(&after)
	if used, limit := after.TotalAlloc-before.TotalAlloc, 4*uint64(len(input)); used > limit {
		t.Fatalf("decoding %d bytes allocated %d bytes, limit %d", len(input), used, limit)
	}
}

func TestJournalBatchFrames(t *testing.T) {
	raw := journalLike(t, 32<<10, 12)
	for _, c := range codecs {
		t.Run(c.String(), func(t *testing.T) {
			payload, err := Compress(c, nil, raw)
			if err != nil {
				t.Fatalf("compress: %v", err)
			}
			sent := JournalBatch{Epoch: 2, First: Position{2, 1, 32}, Next: Position{2, 1, 32 + uint64(len(raw))},
				Records: 200, Codec: c, RawLen: uint32(len(raw)), Payload: payload}
			got, err := DecodeJournalBatch(EncodeJournalBatch(nil, &sent))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			frames, err := got.Frames(nil)
			if err != nil {
				t.Fatalf("frames: %v", err)
			}
			if !bytes.Equal(frames, raw) {
				t.Fatal("frames differ from the records sent")
			}
		})
	}
}

func TestStreamKindNames(t *testing.T) {
	names := map[Kind]string{
		KindStreamStart: "stream start", KindStreamAccept: "stream accept", KindJournalBatch: "journal batch",
		KindAck: "ack", KindHeartbeat: "heartbeat", KindConfig: "config", KindHandoff: "handoff",
		KindHandoffDone: "handoff done",
	}
	for k, want := range names {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
	if got := (Position{Epoch: 3, Segment: 42, Offset: 1837264}).String(); got != "3:000042:1837264" {
		t.Errorf("Position.String() = %q", got)
	}
}

// FuzzDecodeStream feeds the rest of the input to the stream message decoder its first byte selects.
func FuzzDecodeStream(f *testing.F) {
	for _, msg := range sampleStreamMessages() {
		i := streamCodecIndex(f, msg)
		f.Add(append([]byte{byte(i)}, streamCodecs[i].encode(nil, msg)...))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		if len(input) == 0 {
			return
		}
		sc := streamCodecs[int(input[0])%len(streamCodecs)]
		v, err := sc.decode(input[1:])
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: error %v is not ErrMalformed", sc.name, err)
			}
			return
		}
		if re := sc.encode(nil, v); !bytes.Equal(re, input[1:]) {
			t.Fatalf("%s: accepted %x but re-encodes to %x", sc.name, input[1:], re)
		}
	})
}

func randomPosition(rng *rand.Rand) Position {
	return Position{Epoch: randomUint(rng), Segment: randomUint(rng), Offset: randomUint(rng)}
}

// randomUint spreads values over every varint length.
func randomUint(rng *rand.Rand) uint64 { return rng.Uint64() >> rng.IntN(64) }

func randomString(rng *rand.Rand) string { return string(randomBytesOrNil(rng, 40)) }

func randomBytesOrNil(rng *rand.Rand, maxLen int) []byte {
	n := rng.IntN(maxLen + 1)
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func randomStreamStart(rng *rand.Rand) StreamStart {
	s := StreamStart{Mirror: randomString(rng), Member: randomString(rng), Epoch: randomUint(rng),
		From: randomPosition(rng), ConfigVersion: randomUint(rng), Software: randomString(rng), Level: uint16(rng.Uint32())}
	for _, c := range randomBytesOrNil(rng, 4) {
		s.Codecs = append(s.Codecs, Codec(c))
	}
	return s
}

func randomStreamAccept(rng *rand.Rand) StreamAccept {
	return StreamAccept{Primary: randomString(rng), Epoch: randomUint(rng), Codec: codecs[rng.IntN(len(codecs))],
		From: randomPosition(rng)}
}

func randomJournalBatch(rng *rand.Rand) JournalBatch {
	jb := JournalBatch{Epoch: randomUint(rng), First: randomPosition(rng), Next: randomPosition(rng),
		Codec: codecs[rng.IntN(len(codecs))], PrimaryDurable: randomPosition(rng), SentUnixNano: int64(rng.Uint64())}
	if jb.Payload = randomBytesOrNil(rng, 200); jb.Payload != nil {
		jb.Records = uint32(randomUint(rng)) | 1
		jb.RawLen = uint32(len(jb.Payload))
		if jb.Codec != CodecNone {
			jb.RawLen = uint32(randomUint(rng)) | 1
		}
	}
	return jb
}

func randomAck(rng *rand.Rand) Ack {
	return Ack{Epoch: randomUint(rng), Durable: randomPosition(rng), Applied: randomPosition(rng),
		UnixNano: int64(rng.Uint64())}
}

func randomHeartbeat(rng *rand.Rand) Heartbeat {
	return Heartbeat{Epoch: randomUint(rng), UnixNano: int64(rng.Uint64()), End: randomPosition(rng)}
}

func randomHandoff(rng *rand.Rand) Handoff {
	return Handoff{Epoch: randomUint(rng), End: randomPosition(rng)}
}

func randomHandoffDone(rng *rand.Rand) HandoffDone {
	return HandoffDone{NewEpoch: randomUint(rng), Err: randomString(rng)}
}

func randomMirrorState(rng *rand.Rand) MirrorState {
	return MirrorState{Epoch: randomUint(rng), Flags: uint8(rng.IntN(8)), SentUnixNano: int64(rng.Uint64())}
}
