package globals

import (
	"cmp"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Ref
		text string // canonical String(); empty means same as in
	}{
		{in: "^X", want: Ref{Name: "X"}},
		{in: "^X()", want: Ref{Name: "X"}, text: "^X"},
		{in: "^%sys", want: Ref{Name: "%sys"}},
		{in: `^Orders(42,"total")`, want: Ref{Name: "Orders", Subs: []Subscript{Int(42), Str("total")}}},
		{in: `^Orders(42, "total",	7)`, want: Ref{Name: "Orders", Subs: []Subscript{Int(42), Str("total"), Int(7)}},
			text: `^Orders(42,"total",7)`},
		{in: "^N(-1.50,.5,1e3,+7,-0)", want: Ref{Name: "N", Subs: []Subscript{
			{IsNum: true, Num: "-1.5"}, {IsNum: true, Num: "0.5"}, Int(1000), Int(7), Int(0)}},
			text: "^N(-1.5,0.5,1000,7,0)"},
		{in: `^S("42")`, want: Ref{Name: "S", Subs: []Subscript{Int(42)}}, text: "^S(42)"},
		{in: `^S("-1.5")`, want: Ref{Name: "S", Subs: []Subscript{{IsNum: true, Num: "-1.5"}}}, text: "^S(-1.5)"},
		{in: `^S("042","1.0","-0",".5","")`, want: Ref{Name: "S", Subs: []Subscript{
			{Str: "042"}, {Str: "1.0"}, {Str: "-0"}, {Str: ".5"}, {Str: ""}}}},
		{in: `^S("a""b","""","(,)")`, want: Ref{Name: "S", Subs: []Subscript{{Str: `a"b`}, {Str: `"`}, {Str: "(,)"}}}},
		{in: "^S(\"\x00\xff\n\")", want: Ref{Name: "S", Subs: []Subscript{{Str: "\x00\xff\n"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if !equalRefs(got, tt.want) {
				t.Fatalf("Parse(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			text := tt.text
			if text == "" {
				text = tt.in
			}
			if s := got.String(); s != text {
				t.Errorf("String() = %q, want %q", s, text)
			}
			if back := MustParse(got.String()); !equalRefs(back, got) {
				t.Errorf("Parse(String()) = %#v, want %#v", back, got)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	long := "^X(" + strings.TrimSuffix(strings.Repeat(`"`+strings.Repeat("x", 100)+`",`, 11), ",") + ")"
	tests := []struct {
		in   string
		want error
	}{
		{in: "", want: ErrSyntax},
		{in: "X", want: ErrSyntax},
		{in: "^X(", want: ErrSyntax},
		{in: "^X(1", want: ErrSyntax},
		{in: "^X(1,", want: ErrSyntax},
		{in: "^X(1,)", want: ErrSyntax},
		{in: "^X(,1)", want: ErrSyntax},
		{in: "^X(1))", want: ErrSyntax},
		{in: "^X()x", want: ErrSyntax},
		{in: "^X(1)x", want: ErrSyntax},
		{in: "^X x", want: ErrSyntax},
		{in: "^X (1)", want: ErrSyntax},
		{in: "^X( 1)", want: ErrSyntax},
		{in: `^X("a)`, want: ErrSyntax},
		{in: `^X("a"b)`, want: ErrSyntax},
		{in: "^X(abc)", want: ErrSyntax},
		{in: "^X(abc)", want: ErrBadNumber},
		{in: "^X(1.2.3)", want: ErrBadNumber},
		{in: "^X(1e1001)", want: ErrBadNumber},
		{in: "^X(1 )", want: ErrBadNumber},
		{in: "^", want: ErrBadName},
		{in: "^(1)", want: ErrBadName},
		{in: "^9X", want: ErrBadName},
		{in: "^X%", want: ErrBadName},
		{in: "^" + strings.Repeat("A", MaxNameLen+1), want: ErrBadName},
		{in: "^X(" + strings.TrimSuffix(strings.Repeat("1,", MaxSubscripts+1), ",") + ")", want: ErrTooManySubs},
		{in: long, want: ErrKeyTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse(%q) = %v, %v; want error %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MustParse of an invalid reference did not panic")
		}
	}()
	MustParse("^X(")
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{name: "X", ok: true},
		{name: "%", ok: true},
		{name: "%Sys9", ok: true},
		{name: "orders2024", ok: true},
		{name: strings.Repeat("a", MaxNameLen), ok: true},
		{name: ""},
		{name: "9X"},
		{name: "X%"},
		{name: "X_Y"},
		{name: "X.Y"},
		{name: "é"},
		{name: strings.Repeat("a", MaxNameLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidName(tt.name)
			if tt.ok != (err == nil) {
				t.Fatalf("ValidName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadName) {
				t.Fatalf("ValidName(%q) = %v, want ErrBadName", tt.name, err)
			}
		})
	}
}

func TestSubscriptString(t *testing.T) {
	tests := []struct {
		sub  Subscript
		want string
	}{
		{sub: Int(42), want: "42"},
		{sub: Int(-7), want: "-7"},
		{sub: Str("a"), want: `"a"`},
		{sub: Str(`a"b`), want: `"a""b"`},
		{sub: Str(""), want: `""`},
		{sub: Str("42"), want: "42"},
		{sub: Str("042"), want: `"042"`},
		{sub: Subscript{IsNum: true, Num: "+01.50"}, want: "1.5"},
		{sub: Subscript{Str: "-1.5"}, want: "-1.5"},
	}
	for _, tt := range tests {
		if got := tt.sub.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.sub, got, tt.want)
		}
	}
}

func TestSubscriptCompare(t *testing.T) {
	// Each entry sorts strictly before the next.
	ordered := []Subscript{
		Int(-1000), {IsNum: true, Num: "-1.55"}, {IsNum: true, Num: "-1.5"}, Int(-1),
		{IsNum: true, Num: "-0.5"}, Int(0), {IsNum: true, Num: "0.001"}, {IsNum: true, Num: "0.5"},
		Int(1), {IsNum: true, Num: "1.5"}, {IsNum: true, Num: "1.55"}, Int(2), Int(10), Int(1e18),
		Str(""), Str("\x00"), Str("-0"), Str("042"), Str("1.0"), Str("A"), Str("a"), Str("a\x00"), Str("ab"), Str("\xff"),
	}
	for i, a := range ordered {
		for j, b := range ordered {
			if got, want := a.Compare(b), cmp.Compare(i, j); got != want {
				t.Errorf("%s.Compare(%s) = %d, want %d", a, b, got, want)
			}
		}
	}
	equal := [][2]Subscript{
		{Str("42"), Int(42)},
		{{Str: "42"}, Int(42)},
		{{IsNum: true, Num: "+042.0"}, Int(42)},
	}
	for _, p := range equal {
		if c := p[0].Compare(p[1]); c != 0 {
			t.Errorf("%#v.Compare(%#v) = %d, want 0", p[0], p[1], c)
		}
	}
}

func TestChildParent(t *testing.T) {
	root := MustParse("^X")
	if _, ok := root.Parent(); ok {
		t.Fatal("root has a parent")
	}
	a := root.Child(Int(1))
	b := a.Child(Str("b"))
	c := a.Child(Str("c"))
	if b.String() != `^X(1,"b")` || c.String() != `^X(1,"c")` {
		t.Fatalf("children alias each other: %s, %s", b, c)
	}
	p, ok := b.Parent()
	if !ok || !equalRefs(p, a) {
		t.Fatalf("Parent(%s) = %s, %v; want %s", b, p, ok, a)
	}
	// The parent must not share storage with the child.
	_ = p.Child(Str("z"))
	if b.String() != `^X(1,"b")` {
		t.Fatalf("appending to a parent changed the child: %s", b)
	}
}

func TestStringRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 5000 {
		r := randRef(rng, 6)
		got, err := Parse(r.String())
		if err != nil {
			t.Fatalf("Parse(%q): %v", r.String(), err)
		}
		if !equalRefs(got, r) {
			t.Fatalf("Parse(%q) = %#v, want %#v", r.String(), got, r)
		}
	}
}
