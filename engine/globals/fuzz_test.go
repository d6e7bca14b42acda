package globals

import (
	"bytes"
	"testing"
)

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`^X`, `^X(0)`, `^Orders(42,"total")`, `^N(-1.55,0.001,1e20)`, "^S(\"a\x00\xffb\",\"\")"} {
		f.Add(mustEncode(f, MustParse(s)))
	}
	f.Add([]byte("X\x00\x2042\x00\x01"))
	f.Add([]byte("X\x00\x15\x80\x01\x01\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, key []byte) {
		r, err := Decode(key)
		if err != nil {
			return
		}
		again, err := Encode(r)
		if err != nil {
			t.Fatalf("Decode(%q) = %s, which does not encode: %v", key, r, err)
		}
		if !bytes.Equal(again, key) {
			t.Fatalf("Decode(%q) = %s, which encodes to %q", key, r, again)
		}
		for level := range r.Subs {
			n, sub, err := SplitLevel(key, level)
			if err != nil || sub != r.Subs[level] || !bytes.Equal(key[:n], mustEncode(t, Ref{Name: r.Name, Subs: r.Subs[:level+1]})) {
				t.Fatalf("SplitLevel(%q, %d) = %d, %s, %v", key, level, n, sub, err)
			}
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`^X`, `^X()`, `^Orders(42, "total")`, `^N(-1.50,.5,1e3,+7)`, `^S("a""b","42","042")`, `^X(1,)`, `^9`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(r.String())
		if err != nil || !equalRefs(back, r) {
			t.Fatalf("Parse(%q) = %#v; Parse(String()) = %#v, %v", s, r, back, err)
		}
		key, err := Encode(r)
		if err != nil {
			t.Fatalf("Encode(Parse(%q)): %v", s, err)
		}
		decoded, err := Decode(key)
		if err != nil || !equalRefs(decoded, r) {
			t.Fatalf("Decode(Encode(%#v)) = %#v, %v", r, decoded, err)
		}
	})
}
