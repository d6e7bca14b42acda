package globals

import (
	"bytes"
	"cmp"
	"fmt"
	"math/big"
	"strings"
)

// Exponent limits, as the scientific exponent e of d.ddd×10^e. They keep the
// canonical text of any accepted number near a thousand characters and let
// the encoded exponent fit comfortably in two bytes.
const (
	minSciExp = -1000
	maxSciExp = 1000
)

// decimal is a parsed number: value = 0.digits × 10^exp, with digits holding
// ASCII '0'..'9', no leading or trailing zeros, and empty for zero (which is
// never negative). Keeping the mantissa normalised makes comparison a matter
// of sign, exponent and a bytewise comparison of digits.
type decimal struct {
	neg    bool
	digits []byte
	exp    int
}

func (d decimal) isZero() bool { return len(d.digits) == 0 }

// parseDecimal accepts an optional sign, digits with an optional point (at
// least one digit in all), and an optional exponent "e[sign]digits".
func parseDecimal(s string) (decimal, error) {
	var d decimal
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		d.neg = s[i] == '-'
		i++
	}
	var all []byte
	intDigits := 0
	for i < len(s) && isDigit(s[i]) {
		all = append(all, s[i])
		intDigits++
		i++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isDigit(s[i]) {
			all = append(all, s[i])
			i++
		}
	}
	if len(all) == 0 {
		return decimal{}, fmt.Errorf("%w %q: no digits", ErrBadNumber, s)
	}
	litExp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		expNeg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			expNeg = s[i] == '-'
			i++
		}
		start := i
		for i < len(s) && isDigit(s[i]) {
			// Saturate: anything this large is out of range anyway, and
			// saturating avoids overflow on absurdly long exponents.
			if litExp < 1<<30 {
				litExp = litExp*10 + int(s[i]-'0')
			}
			i++
		}
		if i == start {
			return decimal{}, fmt.Errorf("%w %q: no digits in exponent", ErrBadNumber, s)
		}
		if expNeg {
			litExp = -litExp
		}
	}
	if i != len(s) {
		return decimal{}, fmt.Errorf("%w %q: unexpected %q at offset %d", ErrBadNumber, s, s[i], i)
	}
	lead := 0
	for lead < len(all) && all[lead] == '0' {
		lead++
	}
	end := len(all)
	for end > lead && all[end-1] == '0' {
		end--
	}
	if lead == end {
		return decimal{}, nil
	}
	d.digits = all[lead:end]
	d.exp = intDigits - lead + litExp
	if err := d.checkLimits(); err != nil {
		return decimal{}, fmt.Errorf("%w %q: %s", ErrBadNumber, s, err)
	}
	return d, nil
}

// checkLimits reports why d is outside the representable range; the caller
// wraps it with ErrBadNumber and the offending text.
func (d decimal) checkLimits() error {
	if len(d.digits) > MaxDigits {
		return fmt.Errorf("%d significant digits, limit %d", len(d.digits), MaxDigits)
	}
	if e := d.exp - 1; !d.isZero() && (e < minSciExp || e > maxSciExp) {
		return fmt.Errorf("exponent %d outside [%d, %d]", e, minSciExp, maxSciExp)
	}
	return nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// String renders d in canonical form: plain positional notation, a single
// "0" before the point of a pure fraction, no trailing zeros or point.
func (d decimal) String() string {
	if d.isZero() {
		return "0"
	}
	var b strings.Builder
	if d.neg {
		b.WriteByte('-')
	}
	n := len(d.digits)
	switch {
	case d.exp <= 0:
		b.WriteString("0.")
		for range -d.exp {
			b.WriteByte('0')
		}
		b.Write(d.digits)
	case d.exp < n:
		b.Write(d.digits[:d.exp])
		b.WriteByte('.')
		b.Write(d.digits[d.exp:])
	default:
		b.Write(d.digits)
		for range d.exp - n {
			b.WriteByte('0')
		}
	}
	return b.String()
}

func (d decimal) sign() int {
	switch {
	case d.isZero():
		return 0
	case d.neg:
		return -1
	default:
		return 1
	}
}

func compareDecimal(a, b decimal) int {
	if sa, sb := a.sign(), b.sign(); sa != sb || sa == 0 {
		return cmp.Compare(sa, sb)
	}
	// Same nonzero sign: compare magnitudes, then flip for negatives.
	c := cmp.Compare(a.exp, b.exp)
	if c == 0 {
		// Without trailing zeros, equal exponents make the bytewise
		// order of the digits (a prefix first) the numeric order.
		c = bytes.Compare(a.digits, b.digits)
	}
	if a.neg {
		return -c
	}
	return c
}

// Canonical returns the canonical text of the number s, which may be written
// in any accepted form ("+01.50", ".5", "1E-2"). Numbers with more than
// MaxDigits significant digits, or whose scientific exponent (d.ddd×10^e) is
// outside ±1000, are rejected.
func Canonical(s string) (string, error) {
	d, err := parseDecimal(s)
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

// IsCanonical reports whether s is a number in canonical form; such strings
// are numbers when used as subscripts.
func IsCanonical(s string) bool {
	_, ok := canonicalDecimal(s)
	return ok
}

// canonicalDecimal parses s if it is a number in canonical form. Strings are
// checked against this on every encode, so most are turned away by a cheap
// scan before any parsing.
func canonicalDecimal(s string) (decimal, bool) {
	if s == "" || len(s) > maxCanonicalLen {
		return decimal{}, false
	}
	body := s
	if body[0] == '-' {
		body = body[1:]
	}
	if body == "" || !isDigit(body[0]) {
		return decimal{}, false
	}
	for i := 1; i < len(body); i++ {
		if !isDigit(body[i]) && body[i] != '.' {
			return decimal{}, false
		}
	}
	d, err := parseDecimal(s)
	if err != nil || d.String() != s {
		return decimal{}, false
	}
	return d, true
}

// maxCanonicalLen bounds the canonical text of any accepted number: a sign,
// "0.", the zeros after the point of the smallest magnitude, and MaxDigits
// digits. Longer strings are not canonical numbers.
const maxCanonicalLen = len("-0.") + (-minSciExp - 1) + MaxDigits

// Add returns the exact sum of two numbers in canonical form. Either operand
// may be the empty string, which counts as zero so that an absent value
// increments from zero. A sum that needs more than MaxDigits significant
// digits, or falls outside the exponent range, is an error.
func Add(a, b string) (string, error) {
	x, err := parseOperand(a)
	if err != nil {
		return "", fmt.Errorf("add: %w", err)
	}
	y, err := parseOperand(b)
	if err != nil {
		return "", fmt.Errorf("add: %w", err)
	}
	switch {
	case x.isZero():
		return y.String(), nil
	case y.isZero():
		return x.String(), nil
	}
	// value = coefficient × 10^scale; align both to the smaller scale so
	// the integer sum is exact.
	cx, sx := x.coefficient()
	cy, sy := y.coefficient()
	scale := min(sx, sy)
	ten := big.NewInt(10)
	cx.Mul(cx, new(big.Int).Exp(ten, big.NewInt(int64(sx-scale)), nil))
	cy.Mul(cy, new(big.Int).Exp(ten, big.NewInt(int64(sy-scale)), nil))
	sum := cx.Add(cx, cy)
	if sum.Sign() == 0 {
		return "0", nil
	}
	d := decimal{neg: sum.Sign() < 0}
	text := []byte(sum.Abs(sum).String())
	// The exponent counts from the leftmost digit, so stripping trailing
	// zeros afterwards leaves it unchanged.
	d.exp = len(text) + scale
	for text[len(text)-1] == '0' {
		text = text[:len(text)-1]
	}
	d.digits = text
	if err := d.checkLimits(); err != nil {
		return "", fmt.Errorf("add %q and %q: %w: %s", a, b, ErrBadNumber, err)
	}
	return d.String(), nil
}

func parseOperand(s string) (decimal, error) {
	if s == "" {
		return decimal{}, nil
	}
	return parseDecimal(s)
}

// coefficient returns the signed integer c and scale s with d = c × 10^s.
func (d decimal) coefficient() (*big.Int, int) {
	c, _ := new(big.Int).SetString(string(d.digits), 10)
	if d.neg {
		c.Neg(c)
	}
	return c, d.exp - len(d.digits)
}
