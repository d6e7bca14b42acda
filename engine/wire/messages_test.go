package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"runtime"
	"testing"
)

func sampleRequests() []Request {
	return []Request{
		{DB: "orders"},
		{DB: "orders", Ops: []Op{{Kind: OpGet, Key: []byte("Orders\x00\x15")}}},
		{DB: "x", Ops: []Op{
			{Kind: OpSet, Key: []byte("A\x00"), Value: []byte("v\x00\xff")},
			{Kind: OpKill, Key: []byte("A\x00"), NodeOnly: true},
			{Kind: OpOrder, Key: []byte("A\x00\x20\x00\x01"), Reverse: true},
			{Kind: OpQuery, Key: []byte("A\x00"), From: []byte("A\x00\x14"), Limit: 10000},
			{Kind: OpIncr, Key: []byte("C\x00"), Value: []byte("-1.5")},
			{Kind: OpCAS, Key: []byte("C\x00"), Expect: []byte("1"), ExpectExists: true, Value: []byte("2")},
			{Kind: OpData, Key: []byte("C\x00")},
		}},
	}
}

func sampleResponses() []Response {
	return []Response{
		{},
		{Pos: "3:000042:1837264", Results: []Result{{}}},
		{Results: []Result{
			{Exists: true, Value: []byte("value")},
			{Key: []byte("A\x00\x15")},
			{OK: true, Exists: true, Value: []byte("2")},
			{Data: 11},
			{Pairs: []KV{{Key: []byte("A\x00"), Value: []byte("1")}, {Key: []byte("A\x00\x14")}}, More: true},
		}},
		{Pos: "1:000001:0", Err: &Error{Code: CodeNotPrimary, Message: "not primary", Redirect: "10.0.0.2:7000"}},
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, req := range sampleRequests() {
		enc := EncodeRequest([]byte("prefix"), &req)
		got, err := DecodeRequest(enc[len("prefix"):])
		if err != nil {
			t.Fatalf("decode %+v: %v", req, err)
		}
		if !reflect.DeepEqual(got, req) {
			t.Fatalf("round trip: got %+v, want %+v", got, req)
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, resp := range sampleResponses() {
		got, err := DecodeResponse(EncodeResponse(nil, &resp))
		if err != nil {
			t.Fatalf("decode %+v: %v", resp, err)
		}
		if !reflect.DeepEqual(got, resp) {
			t.Fatalf("round trip: got %+v, want %+v", got, resp)
		}
	}
}

func TestHandshakeMessagesRoundTrip(t *testing.T) {
	h := Hello{Protocol: 3, MinProtocol: 1, Software: "0.1.0", Purpose: PurposeStream, Name: "member-a"}
	if got, err := DecodeHello(EncodeHello(nil, &h)); err != nil || got != h {
		t.Fatalf("hello: got %+v, %v", got, err)
	}
	w := Welcome{Protocol: 1, Software: "0.1.0", Member: "m1", AdminAddr: "127.0.0.1:8080", MaxFrame: 1 << 20}
	if got, err := DecodeWelcome(EncodeWelcome(nil, &w)); err != nil || got != w {
		t.Fatalf("welcome: got %+v, %v", got, err)
	}
	e := Error{Code: CodeShuttingDown, Message: "member m1 is shutting down"}
	if got, err := DecodeError(EncodeError(nil, &e)); err != nil || *got != e {
		t.Fatalf("error: got %+v, %v", got, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	validReq := EncodeRequest(nil, &sampleRequests()[2])
	validResp := EncodeResponse(nil, &sampleResponses()[2])
	hugeCount := binary.AppendUvarint([]byte{messageVersion, 0}, 1<<40)
	tooManyOps := binary.AppendUvarint([]byte{messageVersion, 0}, MaxOps+1)
	tooManyOps = append(tooManyOps, make([]byte, 3*(MaxOps+1))...)
	tests := []struct {
		name   string
		decode func([]byte) error
		input  []byte
	}{
		{"request empty", decodeReq, nil},
		{"request version", decodeReq, []byte{2, 0, 0}},
		{"request trailing", decodeReq, append(bytes.Clone(validReq), 0)},
		{"request truncated", decodeReq, validReq[:len(validReq)-1]},
		{"request huge count", decodeReq, hugeCount},
		{"request too many ops", decodeReq, tooManyOps},
		{"request non-minimal varint", decodeReq, []byte{messageVersion, 0x80, 0x00, 0}},
		{"request unknown op", decodeReq, []byte{messageVersion, 0, 1, 99, 0, 0}},
		{"request unknown flag", decodeReq, []byte{messageVersion, 0, 1, byte(OpGet), 0x80, 0}},
		{"request empty value flagged", decodeReq, []byte{messageVersion, 0, 1, byte(OpSet), opHasValue, 0, 0}},
		{"request zero limit flagged", decodeReq, []byte{messageVersion, 0, 1, byte(OpQuery), opHasLimit, 0, 0}},
		{"request limit overflow", decodeReq, binary.AppendUvarint([]byte{messageVersion, 0, 1, byte(OpQuery), opHasLimit, 0}, 1<<32)},
		{"response status", decodeResp, []byte{messageVersion, 0, 7}},
		{"response trailing", decodeResp, append(bytes.Clone(validResp), 1)},
		{"response truncated", decodeResp, validResp[:len(validResp)-2]},
		{"response data value", decodeResp, []byte{messageVersion, 0, respOK, 1, resHasData, 5}},
		{"response empty pairs flagged", decodeResp, []byte{messageVersion, 0, respOK, 1, resHasPairs, 0}},
		{"response error code zero", decodeResp, []byte{messageVersion, 0, respError, 0, 0, 0, 0}},
		{"hello truncated", decodeHello, []byte{messageVersion, 0, 1}},
		{"welcome trailing", decodeWelcome, append(EncodeWelcome(nil, &Welcome{}), 0)},
		{"error version", decodeErr, []byte{0, 0, 1, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.decode(tt.input); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func decodeReq(b []byte) error     { _, err := DecodeRequest(b); return err }
func decodeResp(b []byte) error    { _, err := DecodeResponse(b); return err }
func decodeHello(b []byte) error   { _, err := DecodeHello(b); return err }
func decodeWelcome(b []byte) error { _, err := DecodeWelcome(b); return err }
func decodeErr(b []byte) error     { _, err := DecodeError(b); return err }

// TestDecodeMemoryBound feeds the densest hostile inputs (the most items per byte) and checks the memory decoding takes.
func TestDecodeMemoryBound(t *testing.T) {
	ops := binary.AppendUvarint([]byte{messageVersion, 0}, MaxOps)
	for range MaxOps {
		ops = append(ops, byte(OpGet), 0, 0)
	}
	results := binary.AppendUvarint([]byte{messageVersion, 0, respOK}, MaxOps)
	results = append(results, make([]byte, MaxOps)...)
	const pairs = 1 << 17
	manyPairs := binary.AppendUvarint([]byte{messageVersion, 0, respOK, 1, resHasPairs}, pairs)
	manyPairs = append(manyPairs, make([]byte, 2*pairs)...)
	tests := []struct {
		name   string
		decode func([]byte) error
		input  []byte
		factor uint64
	}{
		{"ops", decodeReq, ops, 64},
		{"results", decodeResp, results, 128},
		{"pairs", decodeResp, manyPairs, 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			if err := tt.decode(tt.input); err != nil {
				t.Fatalf("decode: %v", err)
			}
			runtime.ReadMemStats(&after)
			if used, limit := after.TotalAlloc-before.TotalAlloc, tt.factor*uint64(len(tt.input)); used > limit {
				t.Fatalf("decoding %d bytes allocated %d bytes, limit %d", len(tt.input), used, limit)
			}
		})
	}
}

func TestErrorIs(t *testing.T) {
	err := error(&Error{Code: CodeNoSuchDatabase, Message: `no such database "orders"`})
	if !errors.Is(err, ErrNoSuchDatabase) {
		t.Fatal("errors.Is does not match the sentinel of the same code")
	}
	if errors.Is(err, ErrReadOnly) {
		t.Fatal("errors.Is matches the sentinel of another code")
	}
	if got := err.Error(); got != `no such database "orders"` {
		t.Fatalf("Error() = %q", got)
	}
	if got := ErrBusy.Error(); got != "busy" {
		t.Fatalf("sentinel Error() = %q", got)
	}
}

func TestOpKindWrites(t *testing.T) {
	writes := map[OpKind]bool{OpSet: true, OpKill: true, OpIncr: true, OpCAS: true}
	for k := OpGet; k <= OpData; k++ {
		if k.Writes() != writes[k] {
			t.Errorf("%s.Writes() = %v", k, k.Writes())
		}
	}
}

// fuzzDecode checks that decode never panics and that whatever it accepts re-encodes to the same bytes.
func fuzzDecode[T any](t *testing.T, input []byte, decode func([]byte) (T, error), encode func([]byte, *T) []byte) {
	v, err := decode(input)
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v is not ErrMalformed", err)
		}
		return
	}
	if re := encode(nil, &v); !bytes.Equal(re, input) {
		t.Fatalf("accepted %x but re-encodes to %x", input, re)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, r := range sampleRequests() {
		f.Add(EncodeRequest(nil, &r))
	}
	f.Add([]byte{messageVersion, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, input []byte) {
		fuzzDecode(t, input, DecodeRequest, EncodeRequest)
	})
}

func FuzzDecodeResponse(f *testing.F) {
	for _, r := range sampleResponses() {
		f.Add(EncodeResponse(nil, &r))
	}
	f.Add([]byte{messageVersion, 0, respOK, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, input []byte) {
		fuzzDecode(t, input, DecodeResponse, EncodeResponse)
	})
}

func FuzzDecodeHandshake(f *testing.F) {
	f.Add(EncodeHello(nil, &Hello{Protocol: 1, MinProtocol: 1, Purpose: PurposeClient, Name: "app"}))
	f.Add(EncodeWelcome(nil, &Welcome{Protocol: 1, Member: "m1", MaxFrame: DefaultMaxFrame}))
	f.Add(EncodeError(nil, &Error{Code: CodeVersion, Message: "mismatch"}))
	f.Fuzz(func(t *testing.T, input []byte) {
		fuzzDecode(t, input, DecodeHello, EncodeHello)
		fuzzDecode(t, input, DecodeWelcome, EncodeWelcome)
		fuzzDecode(t, input, func(b []byte) (Error, error) {
			e, err := DecodeError(b)
			if err != nil {
				return Error{}, err
			}
			return *e, nil
		}, EncodeError)
	})
}

func BenchmarkEncodeDecodeRequest(b *testing.B) {
	req := sampleRequests()[2]
	var buf []byte
	for b.Loop() {
		buf = EncodeRequest(buf[:0], &req)
		if _, err := DecodeRequest(buf); err != nil {
			b.Fatal(err)
		}
	}
}
