package globals

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// randNumber returns a random canonical number. Small digit alphabets and
// exponents make equal prefixes (1.5 and 1.55) and near neighbours common;
// wide also draws exponents from the whole accepted range.
func randNumber(rng *rand.Rand, wide bool) string {
	if rng.IntN(10) == 0 {
		return "0"
	}
	n := 1 + rng.IntN(4)
	if rng.IntN(4) == 0 {
		n = 1 + rng.IntN(MaxDigits)
	}
	alphabet := "0123456789"
	if rng.IntN(2) == 0 {
		alphabet = "0159"
	}
	digits := make([]byte, n)
	for i := range digits {
		digits[i] = alphabet[rng.IntN(len(alphabet))]
	}
	digits[0], digits[n-1] = '1'+byte(rng.IntN(9)), '1'+byte(rng.IntN(9))
	exp := rng.IntN(9) - 3
	if wide && rng.IntN(3) == 0 {
		exp = rng.IntN(maxSciExp-minSciExp+1) + minSciExp + 1
	}
	return decimal{neg: rng.IntN(2) == 0, digits: digits, exp: exp}.String()
}

// randString returns short strings over bytes that stress the encoding
// (0x00, 0x01, 0xFF, quotes), sometimes text that looks like a number.
func randString(rng *rand.Rand) string {
	looksNumeric := []string{"42", "042", "1.0", "-0", "0", "-1.5", ".5", "1e3", "", " 1"}
	if rng.IntN(8) == 0 {
		return looksNumeric[rng.IntN(len(looksNumeric))]
	}
	alphabet := []byte{0x00, 0x01, 0xFF, 'a', 'b', '"', '1', ','}
	var b strings.Builder
	for range rng.IntN(6) {
		if rng.IntN(5) == 0 {
			b.WriteByte(byte(rng.IntN(256)))
		} else {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
	}
	return b.String()
}

func randSubscript(rng *rand.Rand) Subscript {
	if rng.IntN(2) == 0 {
		return Subscript{IsNum: true, Num: randNumber(rng, true)}
	}
	return Str(randString(rng))
}

func randRef(rng *rand.Rand, maxSubs int) Ref {
	names := []string{"A", "AB", "B", "a", "%x", "Z9", "Orders"}
	r := Ref{Name: names[rng.IntN(len(names))]}
	for range rng.IntN(maxSubs + 1) {
		r = r.Child(randSubscript(rng))
	}
	return r
}

func mustEncode(tb testing.TB, r Ref) []byte {
	tb.Helper()
	key, err := Encode(r)
	if err != nil {
		tb.Fatalf("Encode(%s): %v", r, err)
	}
	return key
}

func equalRefs(a, b Ref) bool {
	if a.Name != b.Name || len(a.Subs) != len(b.Subs) {
		return false
	}
	for i := range a.Subs {
		if a.Subs[i] != b.Subs[i] {
			return false
		}
	}
	return true
}
