package arbiter

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// codecs encodes and decodes every message through one signature, for the round-trip and fuzz tests.
var codecs = map[string]struct {
	decode func([]byte) (any, error)
	encode func(any) []byte
}{
	"report": {
		func(b []byte) (any, error) { return DecodeReport(b) },
		func(v any) []byte { r := v.(Report); return EncodeReport(nil, &r) },
	},
	"view": {
		func(b []byte) (any, error) { return DecodeView(b) },
		func(v any) []byte { w := v.(View); return EncodeView(nil, &w) },
	},
	"takeover": {
		func(b []byte) (any, error) { return DecodeTakeover(b) },
		func(v any) []byte { r := v.(TakeoverRequest); return EncodeTakeover(nil, &r) },
	},
	"continue": {
		func(b []byte) (any, error) { return DecodeContinue(b) },
		func(v any) []byte { r := v.(ContinueRequest); return EncodeContinue(nil, &r) },
	},
	"rejoined": {
		func(b []byte) (any, error) { return DecodeRejoined(b) },
		func(v any) []byte { r := v.(RejoinedRequest); return EncodeRejoined(nil, &r) },
	},
	"decision": {
		func(b []byte) (any, error) { return DecodeDecision(b) },
		func(v any) []byte { d := v.(Decision); return EncodeDecision(nil, &d) },
	},
	"auth": {
		func(b []byte) (any, error) { return DecodeAuth(b) },
		func(v any) []byte { a := v.(Auth); return EncodeAuth(nil, &a) },
	},
}

var samples = []struct {
	codec string
	msg   any
}{
	{"report", Report{}},
	{"report", Report{Mirror: "APP", Member: "member-a", Epoch: 1 << 40, Primary: true, SeesPeer: true, QoS: 2 * time.Second}},
	{"report", Report{Mirror: "APP", Member: "b", Epoch: 7, ActiveBackup: true, QoS: 8 * time.Second}},
	{"view", View{}},
	{"view", View{Epoch: 3, Primary: "a", PeerSeen: true, PeerReport: backupReport("b", 3), PeerAge: 1500 * time.Millisecond, BackupLost: 2}},
	{"takeover", TakeoverRequest{Mirror: "APP", Member: "b", Epoch: 3, NewEpoch: 4}},
	{"continue", ContinueRequest{Mirror: "APP", Member: "a", Epoch: 3}},
	{"rejoined", RejoinedRequest{Mirror: "APP", Member: "a", Epoch: 3}},
	{"decision", Decision{Granted: true, Epoch: 4, Primary: "b"}},
	{"decision", Decision{Epoch: 3, Primary: "a", Reason: "primary a was heard from 1s ago, less than the QoS timeout 2s"}},
	{"auth", Auth{}},
	{"auth", Auth{Token: "s3cret"}},
}

func TestMessagesRoundTrip(t *testing.T) {
	for _, tc := range samples {
		t.Run(tc.codec, func(t *testing.T) {
			c := codecs[tc.codec]
			b := c.encode(tc.msg)
			got, err := c.decode(b)
			if err != nil {
				t.Fatalf("decode %x: %v", b, err)
			}
			if got != tc.msg {
				t.Fatalf("decode(encode(%+v)) = %+v", tc.msg, got)
			}
			// Every strict prefix is refused, and so is a trailing byte.
			for n := range len(b) {
				if _, err := c.decode(b[:n]); !errors.Is(err, wire.ErrMalformed) {
					t.Errorf("decode of %d of %d bytes: %v, want ErrMalformed", n, len(b), err)
				}
			}
			if _, err := c.decode(append(b, 0)); !errors.Is(err, wire.ErrMalformed) {
				t.Errorf("decode with a trailing byte: %v, want ErrMalformed", err)
			}
		})
	}
}

func TestMalformedMessages(t *testing.T) {
	tests := []struct {
		name, codec string
		payload     []byte
		want        string
	}{
		{"unknown version", "auth", []byte{2, 0}, "unknown format version 2"},
		{"unknown report flag", "report", []byte{1, 0, 0, 0, 8, 0}, "unknown flags 0x8"},
		{"unknown decision flag", "decision", []byte{1, 2, 0, 0, 0}, "unknown flags 0x2"},
		{"non-minimal uvarint", "continue", []byte{1, 0, 0, 0x80, 0}, "non-minimal varint"},
		{"non-minimal varint", "report", []byte{1, 0, 0, 0, 0, 0x80, 0}, "non-minimal varint"},
		{"string past the end", "auth", []byte{1, 5, 'a'}, "length 5 exceeds the remaining 1 bytes"},
		{"empty", "view", nil, "truncated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := codecs[tc.codec].decode(tc.payload)
			if !errors.Is(err, wire.ErrMalformed) || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Errorf("decode %x = %v, want ErrMalformed saying %q", tc.payload, err, tc.want)
			}
		})
	}
}

// FuzzDecode checks that every decoder refuses or accepts without panicking, and that whatever it accepts re-encodes
// to exactly the input.
func FuzzDecode(f *testing.F) {
	names := []string{"report", "view", "takeover", "continue", "rejoined", "decision", "auth"}
	for _, s := range samples {
		for i, n := range names {
			if n == s.codec {
				f.Add(uint8(i), codecs[n].encode(s.msg))
			}
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		c := codecs[names[int(which)%len(names)]]
		v, err := c.decode(b)
		if err != nil {
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("decode error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if again := c.encode(v); !bytes.Equal(again, b) {
			t.Fatalf("decode(%x) = %+v re-encodes to %x", b, v, again)
		}
	})
}
