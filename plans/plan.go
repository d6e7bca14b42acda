package plans

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// FormatVersion is the version of the plan and state documents this package writes, and the newest it reads.
const FormatVersion = 1

var (
	// ErrInvalid classes plan and state documents that are malformed or inconsistent.
	ErrInvalid = errors.New("invalid plan document")
	// ErrNewerFormat classes documents written by a newer version of the tools.
	ErrNewerFormat = errors.New("newer plan format")
)

// formatError carries a complete message for people and a sentinel class for errors.Is.
type formatError struct {
	msg   string
	class error
}

func (e *formatError) Error() string { return e.msg }
func (e *formatError) Unwrap() error { return e.class }

func invalidf(format string, args ...any) error {
	return &formatError{msg: fmt.Sprintf(format, args...), class: ErrInvalid}
}

// Plan is a sequence of steps built by a tool, shown to the operator, dry-run, then executed.
type Plan struct {
	Version int               `json:"version"`
	ID      string            `json:"id"`   // random; identifies the plan for resume
	Tool    string            `json:"tool"` // "migrate add-db", "upgrade", ...
	Title   string            `json:"title"`
	Created time.Time         `json:"created"`
	Params  map[string]string `json:"params,omitempty"` // the inputs that built it (mirror, db, method, ...)
	Steps   []Step            `json:"steps"`
	// PointOfNoReturn is the number (1-based) of the first step that cannot be undone; undo stops before it. 0: none.
	PointOfNoReturn int `json:"point_of_no_return"`
}

// Step is one action of a plan, carried out by the Handler registered for its Kind.
type Step struct {
	N        int               `json:"n"`    // 1-based, consecutive
	Kind     string            `json:"kind"` // handler name, e.g. "add-to-mirror", "restore"
	Member   string            `json:"member,omitempty"`
	Title    string            `json:"title"` // one line for people
	Args     map[string]string `json:"args,omitempty"`
	Checks   []Check           `json:"checks,omitempty"` // pre-checks, re-run at the moment the step executes
	Verify   string            `json:"verify,omitempty"` // what the verification checks, for people
	Undo     string            `json:"undo,omitempty"`   // what undo does; "" when the step has none
	Estimate Duration          `json:"estimate"`
	Downtime bool              `json:"downtime"` // causes application-visible downtime
	// Pause is the application-visible pause a Downtime step is expected to cause when it is shorter than the step (a
	// planned failover pauses applications for a moment within a longer step); 0: the whole estimate.
	Pause Duration `json:"pause,omitempty"`
}

// ExpectedPause is the application-visible pause the step is expected to cause: none unless it is a Downtime step.
func (s *Step) ExpectedPause() time.Duration {
	switch {
	case !s.Downtime:
		return 0
	case s.Pause > 0:
		return time.Duration(s.Pause)
	default:
		return time.Duration(s.Estimate)
	}
}

// Check names a pre-check of a step; the step's handler evaluates it by name.
type Check struct {
	Name  string `json:"name"`
	Title string `json:"title"`
}

// Duration is a time.Duration written in JSON as text ("1m30s") so that plans stay readable.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a quoted duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON reads a quoted duration string such as "1.5s".
func (d *Duration) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"1m30s\"", data)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// New starts a plan for tool with a fresh random ID; the tool then adds its steps with Add.
func New(tool, title string, params map[string]string) *Plan {
	id := make([]byte, 8)
	rand.Read(id) // never fails: crypto/rand aborts the process rather than return an error
	return &Plan{
		Version: FormatVersion,
		ID:      hex.EncodeToString(id),
		Tool:    tool,
		Title:   title,
		Created: time.Now().UTC().Truncate(time.Second),
		Params:  params,
	}
}

// Add appends s as the next step, numbering it, and returns its number (for PointOfNoReturn).
func (p *Plan) Add(s Step) int {
	s.N = len(p.Steps) + 1
	p.Steps = append(p.Steps, s)
	return s.N
}

// Decode reads a plan document strictly: unknown fields, a format newer than FormatVersion and inconsistent steps are refused.
func Decode(data []byte) (*Plan, error) {
	if err := checkVersion("plan", data); err != nil {
		return nil, err
	}
	var p Plan
	if err := decodeStrict(data, &p); err != nil {
		return nil, invalidf("decode plan: %v", err)
	}
	p.normalize()
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Encode validates p and writes it as indented JSON.
func (p *Plan) Encode() ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode plan %s: %w", p.ID, err)
	}
	return append(data, '\n'), nil
}

// checkVersion reads only the version field first, so that a newer document is refused for its version rather than for
// fields this version does not know.
func checkVersion(what string, data []byte) error {
	var v struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return invalidf("decode %s: %v", what, err)
	}
	switch {
	case v.Version > FormatVersion:
		return &formatError{
			msg: fmt.Sprintf("%s format version %d is newer than this tool understands (%d): use a newer migrate/upgrade",
				what, v.Version, FormatVersion),
			class: ErrNewerFormat,
		}
	case v.Version < 1:
		return invalidf("%s format version %d is invalid: not a %s written by migrate or upgrade", what, v.Version, what)
	}
	return nil
}

// decodeStrict decodes data into v, refusing unknown fields. Trailing data is refused earlier, by checkVersion's json.Unmarshal.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// normalize drops empty collections, which encode the same as absent ones, so that a decoded plan equals its re-decoded copy.
func (p *Plan) normalize() {
	if len(p.Params) == 0 {
		p.Params = nil
	}
	for i := range p.Steps {
		s := &p.Steps[i]
		if len(s.Args) == 0 {
			s.Args = nil
		}
		if len(s.Checks) == 0 {
			s.Checks = nil
		}
	}
}

func (p *Plan) validate() error {
	invalid := func(format string, args ...any) error {
		return invalidf("plan %q: %s", p.ID, fmt.Sprintf(format, args...))
	}
	switch {
	case p.Version < 1 || p.Version > FormatVersion:
		return invalid("format version %d, want 1..%d", p.Version, FormatVersion)
	case p.ID == "":
		return invalid("no id")
	case p.Tool == "":
		return invalid("no tool")
	case p.PointOfNoReturn < 0 || p.PointOfNoReturn > len(p.Steps)+1:
		return invalid("point of no return %d is outside 0..%d", p.PointOfNoReturn, len(p.Steps)+1)
	}
	for i, s := range p.Steps {
		switch {
		case s.N != i+1:
			return invalid("step %d is numbered %d: steps must be numbered 1..n in order", i+1, s.N)
		case s.Kind == "":
			return invalid("step %d has no kind", s.N)
		case s.Title == "":
			return invalid("step %d has no title", s.N)
		case s.Estimate < 0:
			return invalid("step %d has a negative estimate %s", s.N, s.Estimate)
		case s.Pause < 0 || s.Pause > s.Estimate:
			return invalid("step %d expects a pause of %s: it must lie between 0 and its estimate %s", s.N, s.Pause, s.Estimate)
		case s.Pause > 0 && !s.Downtime:
			return invalid("step %d expects a pause of %s but is not marked as causing downtime", s.N, s.Pause)
		}
		seen := make(map[string]bool, len(s.Checks))
		for _, c := range s.Checks {
			switch {
			case c.Name == "":
				return invalid("step %d has a check with no name", s.N)
			case c.Title == "":
				return invalid("step %d check %q has no title", s.N, c.Name)
			case seen[c.Name]:
				return invalid("step %d has two checks named %q", s.N, c.Name)
			}
			seen[c.Name] = true
		}
	}
	return nil
}
