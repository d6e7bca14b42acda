package globals

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Limits on references. MaxKeyLen bounds the encoded form, which is what the
// storage engine sees.
const (
	MaxNameLen    = 31
	MaxSubscripts = 31
	MaxKeyLen     = 1023
	MaxDigits     = 38
)

// Sentinel errors, usable with errors.Is; returned errors wrap them with the
// offending text, position or key offset.
var (
	ErrSyntax      = errors.New("invalid global reference")
	ErrBadName     = errors.New("invalid global name")
	ErrTooManySubs = errors.New("too many subscripts")
	ErrKeyTooLong  = errors.New("global reference too long")
	ErrBadNumber   = errors.New("invalid number")
	ErrCorruptKey  = errors.New("corrupt encoded key")
	// ErrShallowKey is returned by SplitLevel for a well-formed key that has
	// no subscript at the requested level (an ancestor of the scanned level).
	ErrShallowKey = errors.New("encoded key has no subscript at that level")
)

// Subscript is one subscript: a canonical number or a string.
//
// Build subscripts with Str, Num, Int, Parse or Decode. Following the MUMPS
// rule that a canonical numeric string is a number, a literal Subscript whose
// Str is a canonical number, or whose Num is a number in a non-canonical
// form, is treated everywhere (Compare, String, Encode) as that canonical
// number.
type Subscript struct {
	IsNum bool
	Num   string
	Str   string
}

// Str returns the subscript for s; a canonical number such as "42" yields
// the number 42, so ^X("42") and ^X(42) are the same node.
func Str(s string) Subscript {
	if IsCanonical(s) {
		return Subscript{IsNum: true, Num: s}
	}
	return Subscript{Str: s}
}

// Num returns the numeric subscript for s, written in any accepted form.
func Num(s string) (Subscript, error) {
	c, err := Canonical(s)
	if err != nil {
		return Subscript{}, err
	}
	return Subscript{IsNum: true, Num: c}, nil
}

// Int returns the numeric subscript for i.
func Int(i int64) Subscript {
	return Subscript{IsNum: true, Num: strconv.FormatInt(i, 10)}
}

// normalize returns the canonical subscript s stands for (see Subscript),
// or s itself and an error for an invalid number.
func (s Subscript) normalize() (Subscript, error) {
	if s.IsNum {
		c, err := Canonical(s.Num)
		if err != nil {
			return s, err
		}
		return Subscript{IsNum: true, Num: c}, nil
	}
	return Str(s.Str), nil
}

// String renders numbers bare and strings quoted, with an embedded quote
// doubled: 42, -1.5, "a""b". An invalid number is rendered as given.
func (s Subscript) String() string {
	if n, err := s.normalize(); err == nil {
		s = n
	}
	if s.IsNum {
		return s.Num
	}
	return `"` + strings.ReplaceAll(s.Str, `"`, `""`) + `"`
}

// Compare orders subscripts by collation: numbers before strings, numbers
// numerically, strings bytewise. It returns -1, 0 or +1. Invalid numbers,
// possible only in literals, sort by their text between the valid numbers
// and the strings.
func (s Subscript) Compare(o Subscript) int {
	a, aErr := s.normalize()
	b, bErr := o.normalize()
	if a.IsNum != b.IsNum {
		if a.IsNum {
			return -1
		}
		return 1
	}
	if !a.IsNum {
		return strings.Compare(a.Str, b.Str)
	}
	switch {
	case aErr != nil && bErr != nil:
		return strings.Compare(s.Num, o.Num)
	case aErr != nil:
		return 1
	case bErr != nil:
		return -1
	}
	x, _ := parseDecimal(a.Num)
	y, _ := parseDecimal(b.Num)
	return compareDecimal(x, y)
}

// Ref is a global reference ^Name(subs...). A Ref with no subscripts is the
// whole global (its root node).
type Ref struct {
	Name string
	Subs []Subscript
}

// String returns the canonical text of r, which Parse reads back to r.
func (r Ref) String() string {
	var b strings.Builder
	b.WriteByte('^')
	b.WriteString(r.Name)
	if len(r.Subs) == 0 {
		return b.String()
	}
	b.WriteByte('(')
	for i, s := range r.Subs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s.String())
	}
	b.WriteByte(')')
	return b.String()
}

// Child returns a new Ref with s appended; it does not share r.Subs.
func (r Ref) Child(s Subscript) Ref {
	subs := make([]Subscript, len(r.Subs), len(r.Subs)+1)
	copy(subs, r.Subs)
	return Ref{Name: r.Name, Subs: append(subs, s)}
}

// Parent returns r without its last subscript, or false for a root.
func (r Ref) Parent() (Ref, bool) {
	if len(r.Subs) == 0 {
		return Ref{}, false
	}
	return Ref{Name: r.Name, Subs: slices.Clone(r.Subs[:len(r.Subs)-1])}, true
}

// Compare orders references as their encodings do: by name (bytewise), then
// subscript by subscript, with a node before all its descendants.
func (r Ref) Compare(o Ref) int {
	if c := strings.Compare(r.Name, o.Name); c != 0 {
		return c
	}
	for i := range min(len(r.Subs), len(o.Subs)) {
		if c := r.Subs[i].Compare(o.Subs[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(r.Subs), len(o.Subs))
}

// Validate checks the name, the number of subscripts, that every numeric
// subscript is a valid number, and the encoded length.
func (r Ref) Validate() error {
	_, err := AppendEncode(nil, r)
	return err
}

// ValidName checks a global name (without ^): a letter or '%', then letters
// and digits, 1 to MaxNameLen characters. Names are case-sensitive.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrBadName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w %q: %d characters, limit %d", ErrBadName, name, len(name), MaxNameLen)
	case !isLetter(name[0]) && name[0] != '%':
		return fmt.Errorf("%w %q: must start with a letter or %%", ErrBadName, name)
	}
	for i := 1; i < len(name); i++ {
		if !isLetter(name[i]) && !isDigit(name[i]) {
			return fmt.Errorf("%w %q: %q at offset %d is not a letter or digit", ErrBadName, name, name[i], i)
		}
	}
	return nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// MustParse is Parse for fixtures and tests; it panics on error.
func MustParse(s string) Ref {
	r, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return r
}

// Parse reads a reference such as ^Orders(42,"total"). "^X()" is "^X".
// Unquoted subscripts are numbers in any accepted form, stored canonical.
// Quoted subscripts are strings with "" for an embedded quote; a quoted
// canonical number ("42") is that number, while a non-canonical one ("042")
// stays a string. Spaces and tabs may follow a comma. The result is
// validated as by Validate.
func Parse(s string) (Ref, error) {
	p := parser{text: s}
	r, err := p.ref()
	if err != nil {
		return Ref{}, err
	}
	if err := r.Validate(); err != nil {
		return Ref{}, err
	}
	return r, nil
}

type parser struct {
	text string
	pos  int
}

func (p *parser) errorf(expected string) error {
	return fmt.Errorf("%w %q: offset %d: expected %s", ErrSyntax, p.text, p.pos, expected)
}

func (p *parser) peek() (byte, bool) {
	if p.pos < len(p.text) {
		return p.text[p.pos], true
	}
	return 0, false
}

func (p *parser) ref() (Ref, error) {
	if c, ok := p.peek(); !ok || c != '^' {
		return Ref{}, p.errorf("'^'")
	}
	p.pos++
	start := p.pos
	for c, ok := p.peek(); ok && (isLetter(c) || isDigit(c) || c == '%'); c, ok = p.peek() {
		p.pos++
	}
	r := Ref{Name: p.text[start:p.pos]}
	if err := ValidName(r.Name); err != nil {
		return Ref{}, fmt.Errorf("parse %q: %w", p.text, err)
	}
	c, ok := p.peek()
	if !ok {
		return r, nil
	}
	if c != '(' {
		return Ref{}, p.errorf("'(' or end of reference")
	}
	p.pos++
	if c, ok := p.peek(); ok && c == ')' {
		p.pos++
		return r, p.end()
	}
	for {
		if len(r.Subs) == MaxSubscripts {
			return Ref{}, fmt.Errorf("%w: %q has more than %d", ErrTooManySubs, p.text, MaxSubscripts)
		}
		sub, err := p.subscript()
		if err != nil {
			return Ref{}, err
		}
		r.Subs = append(r.Subs, sub)
		c, ok := p.peek()
		switch {
		case ok && c == ')':
			p.pos++
			return r, p.end()
		case ok && c == ',':
			p.pos++
			for c, ok := p.peek(); ok && (c == ' ' || c == '\t'); c, ok = p.peek() {
				p.pos++
			}
		default:
			return Ref{}, p.errorf("',' or ')'")
		}
	}
}

func (p *parser) end() error {
	if p.pos != len(p.text) {
		return p.errorf("end of reference")
	}
	return nil
}

func (p *parser) subscript() (Subscript, error) {
	c, ok := p.peek()
	if ok && c == '"' {
		return p.quoted()
	}
	start := p.pos
	for c, ok := p.peek(); ok && c != ',' && c != ')'; c, ok = p.peek() {
		p.pos++
	}
	if p.pos == start {
		return Subscript{}, p.errorf("a subscript")
	}
	sub, err := Num(p.text[start:p.pos])
	if err != nil {
		return Subscript{}, fmt.Errorf("%w %q: offset %d: unquoted subscript must be a number: %w",
			ErrSyntax, p.text, start, err)
	}
	return sub, nil
}

func (p *parser) quoted() (Subscript, error) {
	p.pos++ // opening quote
	var b strings.Builder
	for {
		i := strings.IndexByte(p.text[p.pos:], '"')
		if i < 0 {
			p.pos = len(p.text)
			return Subscript{}, p.errorf(`closing '"'`)
		}
		b.WriteString(p.text[p.pos : p.pos+i])
		p.pos += i + 1
		if c, ok := p.peek(); !ok || c != '"' {
			return Str(b.String()), nil
		}
		b.WriteByte('"')
		p.pos++
	}
}
