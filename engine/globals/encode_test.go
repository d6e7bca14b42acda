package globals

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestEncodeFormat(t *testing.T) {
	tests := []struct {
		ref  string
		want []byte
	}{
		{ref: "^X", want: []byte("X\x00")},
		{ref: "^X(0)", want: []byte("X\x00\x14")},
		{ref: "^X(1.5)", want: []byte("X\x00\x15\x80\x01\x02\x06\x00")},
		{ref: "^X(-1.5)", want: []byte("X\x00\x13\x7f\xfe\xfd\xf9\xff")},
		{ref: "^X(0.05)", want: []byte("X\x00\x15\x7f\xff\x06\x00")},
		{ref: "^X(\"a\x00b\")", want: []byte("X\x00\x20a\x00\xffb\x00\x01")},
		{ref: `^X("",1)`, want: []byte("X\x00\x20\x00\x01\x15\x80\x01\x02\x00")},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			if got := mustEncode(t, MustParse(tt.ref)); !bytes.Equal(got, tt.want) {
				t.Fatalf("Encode(%s) = %q, want %q", tt.ref, got, tt.want)
			}
		})
	}
}

func TestEncodeNormalizesLiterals(t *testing.T) {
	want := mustEncode(t, Ref{Name: "X", Subs: []Subscript{Int(42)}})
	for _, sub := range []Subscript{{Str: "42"}, {IsNum: true, Num: "+042.00"}, {IsNum: true, Num: "4.2e1"}} {
		if got := mustEncode(t, Ref{Name: "X", Subs: []Subscript{sub}}); !bytes.Equal(got, want) {
			t.Errorf("Encode with %#v = %q, want %q", sub, got, want)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	tooMany := Ref{Name: "X"}
	for range MaxSubscripts + 1 {
		tooMany = tooMany.Child(Int(1))
	}
	tests := []struct {
		name string
		ref  Ref
		want error
	}{
		{name: "empty name", ref: Ref{}, want: ErrBadName},
		{name: "bad name", ref: Ref{Name: "X\x00"}, want: ErrBadName},
		{name: "bad number", ref: Ref{Name: "X", Subs: []Subscript{{IsNum: true, Num: "1x"}}}, want: ErrBadNumber},
		{name: "empty number", ref: Ref{Name: "X", Subs: []Subscript{{IsNum: true}}}, want: ErrBadNumber},
		{name: "too many", ref: tooMany, want: ErrTooManySubs},
		{name: "too long", ref: Ref{Name: "X", Subs: []Subscript{Str(strings.Repeat("x", MaxKeyLen))}}, want: ErrKeyTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("prefix")
			got, err := AppendEncode(dst, tt.ref)
			if !errors.Is(err, tt.want) {
				t.Fatalf("AppendEncode(%s) error = %v, want %v", tt.ref, err, tt.want)
			}
			if string(got) != "prefix" {
				t.Errorf("AppendEncode changed dst on error: %q", got)
			}
			if err := tt.ref.Validate(); !errors.Is(err, tt.want) {
				t.Errorf("Validate(%s) = %v, want %v", tt.ref, err, tt.want)
			}
		})
	}
}

func TestEncodeLimits(t *testing.T) {
	full := Ref{Name: strings.Repeat("N", MaxNameLen)}
	for range MaxSubscripts {
		full = full.Child(Int(1))
	}
	mustEncode(t, full)
	// Exactly MaxKeyLen bytes: name, 0x00, tag, string bytes, terminator.
	exact := Ref{Name: "X", Subs: []Subscript{Str(strings.Repeat("x", MaxKeyLen-5))}}
	if key := mustEncode(t, exact); len(key) != MaxKeyLen {
		t.Fatalf("key length %d, want %d", len(key), MaxKeyLen)
	}
}

// TestCollation sorts random references with Ref.Compare (built on
// Subscript.Compare) and checks that their encodings sort the same way.
func TestCollation(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var refs []Ref
	for range 3000 {
		r := randRef(rng, 5)
		refs = append(refs, r)
		// Add ancestors and siblings so prefixes and near neighbours are
		// common rather than left to chance.
		for p, ok := r.Parent(); ok; p, ok = p.Parent() {
			if rng.IntN(3) == 0 {
				refs = append(refs, p, p.Child(randSubscript(rng)))
			}
		}
	}
	slices.SortFunc(refs, Ref.Compare)
	keys := make([][]byte, len(refs))
	for i, r := range refs {
		keys[i] = mustEncode(t, r)
	}
	check := func(i, j int) {
		t.Helper()
		want := refs[i].Compare(refs[j])
		if got := bytes.Compare(keys[i], keys[j]); got != want {
			t.Fatalf("bytes.Compare(enc(%s), enc(%s)) = %d, want %d", refs[i], refs[j], got, want)
		}
	}
	for i := 1; i < len(refs); i++ {
		check(i-1, i)
	}
	for range 50000 {
		check(rng.IntN(len(refs)), rng.IntN(len(refs)))
	}
}

// TestPrefix checks that a node's key prefixes exactly its descendants' keys
// and that PrefixEnd bounds the subtree below its next sibling.
func TestPrefix(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for range 3000 {
		node := randRef(rng, 3)
		enc := mustEncode(t, node)
		end := PrefixEnd(enc)
		if bytes.Compare(end, enc) <= 0 {
			t.Fatalf("PrefixEnd(enc(%s)) = %q, not above the node", node, end)
		}
		desc := node
		for range 1 + rng.IntN(3) {
			desc = desc.Child(randSubscript(rng))
			d := mustEncode(t, desc)
			if !bytes.HasPrefix(d, enc) {
				t.Fatalf("enc(%s) = %q lacks prefix enc(%s) = %q", desc, d, node, enc)
			}
			if bytes.Compare(d, end) >= 0 {
				t.Fatalf("enc(%s) = %q not below PrefixEnd(enc(%s)) = %q", desc, d, node, end)
			}
		}
		parent, ok := node.Parent()
		if !ok {
			continue
		}
		sibling := parent.Child(randSubscript(rng))
		s := mustEncode(t, sibling)
		cmp := node.Subs[len(node.Subs)-1].Compare(sibling.Subs[len(sibling.Subs)-1])
		switch {
		case cmp == 0:
			continue
		case bytes.HasPrefix(s, enc):
			t.Fatalf("sibling enc(%s) = %q has prefix enc(%s) = %q", sibling, s, node, enc)
		case cmp < 0 && bytes.Compare(end, s) > 0:
			t.Fatalf("PrefixEnd(enc(%s)) = %q above next sibling enc(%s) = %q", node, end, sibling, s)
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct {
		in, want []byte
	}{
		{in: []byte("X\x00"), want: []byte("X\x01")},
		{in: []byte("X\x00\x13\xff"), want: []byte("X\x00\x14")},
		{in: []byte("a\xff\xff"), want: []byte("b")},
		{in: []byte{0xff, 0xff}, want: nil},
		{in: nil, want: nil},
	}
	for _, tt := range tests {
		in := bytes.Clone(tt.in)
		if got := PrefixEnd(in); !bytes.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
			t.Errorf("PrefixEnd(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if !bytes.Equal(in, tt.in) {
			t.Errorf("PrefixEnd modified its input: %q", in)
		}
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for range 10000 {
		r := randRef(rng, 8)
		got, err := Decode(mustEncode(t, r))
		if err != nil {
			t.Fatalf("Decode(Encode(%s)): %v", r, err)
		}
		if !equalRefs(got, r) {
			t.Fatalf("Decode(Encode(%#v)) = %#v", r, got)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		key  string
	}{
		{name: "empty", key: ""},
		{name: "unterminated name", key: "X"},
		{name: "empty name", key: "\x00"},
		{name: "bad name", key: "9\x00"},
		{name: "unknown tag", key: "X\x00\x30"},
		{name: "truncated exponent", key: "X\x00\x15\x80"},
		{name: "unterminated number", key: "X\x00\x15\x80\x01\x02"},
		{name: "no digits", key: "X\x00\x15\x80\x01\x00"},
		{name: "leading zero", key: "X\x00\x15\x80\x01\x01\x02\x00"},
		{name: "trailing zero", key: "X\x00\x15\x80\x01\x02\x01\x00"},
		{name: "digit byte", key: "X\x00\x15\x80\x01\x0b\x00"},
		{name: "exponent range", key: "X\x00\x15\x90\x00\x02\x00"},
		{name: "negative terminator", key: "X\x00\x13\x7f\xfe\xfd\x00"},
		{name: "too many digits", key: "X\x00\x15\x80\x01" + strings.Repeat("\x02", MaxDigits+1) + "\x00"},
		{name: "unterminated string", key: "X\x00\x20ab"},
		{name: "string ends in 0x00", key: "X\x00\x20ab\x00"},
		{name: "bad escape", key: "X\x00\x20a\x00\x02"},
		{name: "canonical number as string", key: "X\x00\x2042\x00\x01"},
		{name: "too many subscripts", key: "X\x00" + strings.Repeat("\x14", MaxSubscripts+1)},
		{name: "too long", key: "X\x00\x20" + strings.Repeat("x", MaxKeyLen) + "\x00\x01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Decode([]byte(tt.key))
			if !errors.Is(err, ErrCorruptKey) {
				t.Fatalf("Decode(%q) = %#v, %v; want ErrCorruptKey", tt.key, r, err)
			}
		})
	}
}

func TestSplitLevel(t *testing.T) {
	r := MustParse(`^X(1,"a",-2.5)`)
	key := mustEncode(t, r)
	for level := range r.Subs {
		n, sub, err := SplitLevel(key, level)
		if err != nil {
			t.Fatalf("SplitLevel(level %d): %v", level, err)
		}
		prefix := mustEncode(t, Ref{Name: r.Name, Subs: r.Subs[:level+1]})
		if n != len(prefix) || !bytes.HasPrefix(key, prefix) {
			t.Errorf("SplitLevel(level %d) prefixLen = %d, want %d", level, n, len(prefix))
		}
		if sub != r.Subs[level] {
			t.Errorf("SplitLevel(level %d) sub = %s, want %s", level, sub, r.Subs[level])
		}
	}
	for _, level := range []int{-1, 3, MaxSubscripts} {
		if _, _, err := SplitLevel(key, level); !errors.Is(err, ErrShallowKey) {
			t.Errorf("SplitLevel(level %d) = %v, want ErrShallowKey", level, err)
		}
	}
	for _, bad := range []string{"X", "X\x00\x30", "X\x00\x14\x15"} {
		if _, _, err := SplitLevel([]byte(bad), 1); !errors.Is(err, ErrCorruptKey) {
			t.Errorf("SplitLevel(%q, 1) = %v, want ErrCorruptKey", bad, err)
		}
	}
}

func benchmarkRefs(b *testing.B) []Ref {
	b.Helper()
	return []Ref{
		MustParse(`^Orders(12345,"total")`),
		MustParse(`^Customer("Smith, John",42,"address",3)`),
		MustParse(`^Ledger(-1234.5678,"2024-01-31",0.001,"x")`),
	}
}

func BenchmarkEncode(b *testing.B) {
	refs := benchmarkRefs(b)
	var buf []byte
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var err error
		if buf, err = AppendEncode(buf[:0], refs[i%len(refs)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	refs := benchmarkRefs(b)
	keys := make([][]byte, len(refs))
	for i, r := range refs {
		keys[i] = mustEncode(b, r)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := Decode(keys[i%len(keys)]); err != nil {
			b.Fatal(err)
		}
	}
}
