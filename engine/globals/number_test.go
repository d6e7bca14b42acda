package globals

import (
	"errors"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestCanonical(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{in: "0", want: "0"},
		{in: "42", want: "42"},
		{in: "+01.50", want: "1.5"},
		{in: "-0", want: "0"},
		{in: "-0.000", want: "0"},
		{in: "0e99999", want: "0"},
		{in: "1e3", want: "1000"},
		{in: ".5", want: "0.5"},
		{in: "-.5", want: "-0.5"},
		{in: "+7", want: "7"},
		{in: "1E-2", want: "0.01"},
		{in: "1.", want: "1"},
		{in: "-1.50", want: "-1.5"},
		{in: "0012300", want: "12300"},
		{in: "123.456e1", want: "1234.56"},
		{in: "123.456e-5", want: "0.00123456"},
		{in: "1e+2", want: "100"},
		{in: "1e1000", want: "1" + strings.Repeat("0", 1000)},
		{in: "1e-1000", want: "0." + strings.Repeat("0", 999) + "1"},
		{in: "0.001e1003", want: "1" + strings.Repeat("0", 1000)},
		{in: strings.Repeat("9", 38), want: strings.Repeat("9", 38)},
		{in: "0." + strings.Repeat("9", 38) + "000", want: "0." + strings.Repeat("9", 38)},
		{in: "", err: ErrBadNumber},
		{in: "abc", err: ErrBadNumber},
		{in: "1.2.3", err: ErrBadNumber},
		{in: "--1", err: ErrBadNumber},
		{in: "+-1", err: ErrBadNumber},
		{in: "NaN", err: ErrBadNumber},
		{in: "Inf", err: ErrBadNumber},
		{in: "-Inf", err: ErrBadNumber},
		{in: ".", err: ErrBadNumber},
		{in: "-", err: ErrBadNumber},
		{in: "e5", err: ErrBadNumber},
		{in: "1e", err: ErrBadNumber},
		{in: "1e+", err: ErrBadNumber},
		{in: " 1", err: ErrBadNumber},
		{in: "1 ", err: ErrBadNumber},
		{in: "0x10", err: ErrBadNumber},
		{in: "1_000", err: ErrBadNumber},
		{in: strings.Repeat("9", 39), err: ErrBadNumber},
		{in: "1." + strings.Repeat("1", 38), err: ErrBadNumber},
		{in: "1e1001", err: ErrBadNumber},
		{in: "10e1000", err: ErrBadNumber},
		{in: "1e-1001", err: ErrBadNumber},
		{in: "1e99999999999999999999999", err: ErrBadNumber},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Canonical(tt.in)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Canonical(%q) = %q, %v; want error %v", tt.in, got, err, tt.err)
				}
				if IsCanonical(tt.in) {
					t.Errorf("IsCanonical(%q) = true for an invalid number", tt.in)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Canonical(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			if !IsCanonical(got) {
				t.Errorf("IsCanonical(%q) = false for Canonical output", got)
			}
			if IsCanonical(tt.in) != (tt.in == tt.want) {
				t.Errorf("IsCanonical(%q) = %v", tt.in, IsCanonical(tt.in))
			}
		})
	}
}

func TestAdd(t *testing.T) {
	tests := []struct {
		a, b, want string
		err        error
	}{
		{a: "", b: "", want: "0"},
		{a: "", b: "1", want: "1"},
		{a: "5", b: "", want: "5"},
		{a: "1", b: "2", want: "3"},
		{a: "1.5", b: "-1.5", want: "0"},
		{a: "0.1", b: "0.2", want: "0.3"},
		{a: "-1", b: "0.25", want: "-0.75"},
		{a: "+01.50", b: "1e3", want: "1001.5"},
		{a: "9.99", b: "0.01", want: "10"},
		{a: "-7", b: "-3", want: "-10"},
		{a: "1e-1000", b: "-1e-1000", want: "0"},
		{a: "123456789012345678901234567890", b: "1", want: "123456789012345678901234567891"},
		{a: strings.Repeat("9", 38), b: "-" + strings.Repeat("9", 38), want: "0"},
		{a: strings.Repeat("9", 38), b: "1", want: "1" + strings.Repeat("0", 38)},
		{a: "x", b: "1", err: ErrBadNumber},
		{a: "1", b: "1.2.3", err: ErrBadNumber},
		{a: "1e38", b: "1", err: ErrBadNumber},
		{a: strings.Repeat("9", 38), b: "0.1", err: ErrBadNumber},
		{a: "9e1000", b: "9e1000", err: ErrBadNumber},
		{a: "1e1000", b: "1e-1000", err: ErrBadNumber},
	}
	for _, tt := range tests {
		t.Run(tt.a+"+"+tt.b, func(t *testing.T) {
			got, err := Add(tt.a, tt.b)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Add(%q, %q) = %q, %v; want error %v", tt.a, tt.b, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Add(%q, %q) = %q, %v; want %q", tt.a, tt.b, got, err, tt.want)
			}
		})
	}
}

// TestAddMatchesRat checks Add against math/big on random operands.
func TestAddMatchesRat(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		a, b := randNumber(rng, true), randNumber(rng, true)
		got, err := Add(a, b)
		want := new(big.Rat).Add(mustRat(t, a), mustRat(t, b))
		if err != nil {
			if !errors.Is(err, ErrBadNumber) {
				t.Fatalf("Add(%q, %q): %v", a, b, err)
			}
			continue
		}
		if !IsCanonical(got) {
			t.Fatalf("Add(%q, %q) = %q, not canonical", a, b, got)
		}
		if mustRat(t, got).Cmp(want) != 0 {
			t.Fatalf("Add(%q, %q) = %q, want %s", a, b, got, want.FloatString(40))
		}
	}
}

// TestCompareNumbersMatchesRat checks the numeric collation against math/big.
func TestCompareNumbersMatchesRat(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		a, b := randNumber(rng, false), randNumber(rng, false)
		got := Subscript{IsNum: true, Num: a}.Compare(Subscript{IsNum: true, Num: b})
		if want := mustRat(t, a).Cmp(mustRat(t, b)); got != want {
			t.Fatalf("Compare(%s, %s) = %d, want %d", a, b, got, want)
		}
	}
}

func mustRat(tb testing.TB, s string) *big.Rat {
	tb.Helper()
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		tb.Fatalf("big.Rat cannot parse %q", s)
	}
	return r
}
