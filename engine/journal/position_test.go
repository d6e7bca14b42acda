package journal

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

func TestPositionCompare(t *testing.T) {
	tests := []struct {
		a, b Position
		want int
	}{
		{Position{}, Position{}, 0},
		{Position{}, Position{0, 0, 1}, -1},
		{Position{5, 1, 100}, Position{1, 2, 32}, -1},
		{Position{1, 2, 100}, Position{9, 2, 50}, 1},
		{Position{1, 2, 50}, Position{2, 2, 50}, -1},
		{Position{3, 42, 1837264}, Position{3, 42, 1837264}, 0},
	}
	for _, tt := range tests {
		if got := tt.a.Compare(tt.b); got != tt.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := tt.b.Compare(tt.a); got != -tt.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
		if got := tt.a.Less(tt.b); got != (tt.want < 0) {
			t.Errorf("%s.Less(%s) = %v", tt.a, tt.b, got)
		}
	}
	if !(Position{}).IsZero() || (Position{Offset: 1}).IsZero() {
		t.Error("IsZero wrong")
	}
}

func TestPositionString(t *testing.T) {
	tests := []struct {
		pos  Position
		text string
	}{
		{Position{}, "0:000000:0"},
		{Position{3, 42, 1837264}, "3:000042:1837264"},
		{Position{1, 1234567, 32}, "1:1234567:32"},
		{Position{math.MaxUint64, math.MaxUint64, math.MaxUint64}, "18446744073709551615:18446744073709551615:18446744073709551615"},
	}
	for _, tt := range tests {
		if got := tt.pos.String(); got != tt.text {
			t.Errorf("String() = %q, want %q", got, tt.text)
		}
		got, err := ParsePosition(tt.text)
		if err != nil || got != tt.pos {
			t.Errorf("ParsePosition(%q) = %v, %v; want %v", tt.text, got, err, tt.pos)
		}
	}
	if got, err := ParsePosition("3:42:0100"); err != nil || got != (Position{3, 42, 100}) {
		t.Errorf("leading zeros: %v, %v", got, err)
	}
}

func TestParsePositionErrors(t *testing.T) {
	for _, s := range []string{"", "1", "1:2", "1:2:3:4", "a:1:1", "1::1", "-1:1:1", "+1:1:1", "1:1: 1",
		"1:1:18446744073709551616", "1:0x10:1"} {
		if _, err := ParsePosition(s); err == nil {
			t.Errorf("ParsePosition(%q) succeeded", s)
		}
	}
}

func TestPositionJSON(t *testing.T) {
	in := struct{ Applied Position }{Position{2, 7, 99}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"Applied":"2:000007:99"}` {
		t.Fatalf("marshal: %s", b)
	}
	var out struct{ Applied Position }
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Fatalf("unmarshal: %+v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`{"Applied":"x"}`), &out); err == nil {
		t.Fatal("bad text accepted")
	}
}

func TestPositionEncodeOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	small := func() uint64 { return uint64(rng.IntN(3)) << (rng.IntN(2) * 40) }
	for range 5000 {
		a := Position{small(), small(), small()}
		b := Position{small(), small(), small()}
		ea, eb := a.Encode(), b.Encode()
		if len(ea) != EncodedPositionLen {
			t.Fatalf("encoded length %d", len(ea))
		}
		if got, want := bytes.Compare(ea, eb), a.Compare(b); got != want {
			t.Fatalf("%s vs %s: bytes compare %d, Compare %d", a, b, got, want)
		}
		if d, err := DecodePosition(ea); err != nil || d != a {
			t.Fatalf("decode %s: %v, %v", a, d, err)
		}
	}
	if _, err := DecodePosition(make([]byte, 23)); err == nil {
		t.Fatal("short encoding accepted")
	}
}

func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"0:000000:0", "3:000042:1837264", "1:1:1", "::", "99999999999999999999:1:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePosition(s)
		if err != nil {
			return
		}
		q, err := ParsePosition(p.String())
		if err != nil || q != p {
			t.Fatalf("%q -> %s -> %v, %v", s, p, q, err)
		}
	})
}
