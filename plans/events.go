package plans

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/mirrorkit/mirrorkit/internal/units"
)

// Phases of the events an execution reports.
const (
	PhaseChecks   = "checks"   // pre-checks are being evaluated
	PhaseRun      = "run"      // the step's action started
	PhaseVerify   = "verify"   // the step's verification started
	PhaseDone     = "done"     // the step is done; Estimate and Elapsed are set
	PhaseFailed   = "failed"   // the step failed; Message says why
	PhaseUndo     = "undo"     // the step's undo started
	PhaseUndone   = "undone"   // the step's undo finished; Elapsed is set
	PhaseProgress = "progress" // emitted by handlers during long work: Bytes of Total (Total <= 0: unknown)
	PhaseNote     = "note"     // emitted by handlers: a remark on what the step did (Message)
)

// Event is one thing that happened while a plan executed.
type Event struct {
	Time     time.Time `json:"time"`
	Plan     string    `json:"plan,omitempty"`
	Step     int       `json:"step,omitempty"`
	Kind     string    `json:"kind,omitempty"`
	Phase    string    `json:"phase"`
	Message  string    `json:"message,omitempty"`
	Bytes    int64     `json:"bytes,omitempty"`
	Total    int64     `json:"total,omitempty"`
	Estimate Duration  `json:"estimate,omitempty"`
	Elapsed  Duration  `json:"elapsed,omitempty"`
}

// Events receives the events of an execution. Implementations must be safe for concurrent use: handlers may report progress
// from several goroutines.
type Events interface {
	Event(e Event)
}

type discard struct{}

func (discard) Event(Event) {}

type jsonEvents struct {
	mu  sync.Mutex
	enc *json.Encoder
}

var _ Events = (*jsonEvents)(nil)

// JSONEvents writes each event as one JSON object per line, for programs that follow an execution.
func JSONEvents(w io.Writer) Events {
	return &jsonEvents{enc: json.NewEncoder(w)}
}

func (j *jsonEvents) Event(e Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	j.enc.Encode(e) // an event stream that cannot be written must not stop the plan
}

// textEvents writes one line per event for people. Progress is written at most once per tenth of the total (or once a second
// when the total is unknown) so that a log stays readable.
type textEvents struct {
	mu           sync.Mutex
	w            io.Writer
	progressStep int
	progressMark int64 // tenths written for progressStep, or the unix second of the last line when the total is unknown
}

var _ Events = (*textEvents)(nil)

// TextEvents writes events as lines for people, with the actual time of each step against its estimate when it is done.
func TextEvents(w io.Writer) Events {
	return &textEvents{w: w}
}

func (t *textEvents) Event(e Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.write(e)
}

func (t *textEvents) write(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	var line string
	switch e.Phase {
	case PhaseProgress:
		if !t.progressDue(e) {
			return
		}
		line = progressText(e.Bytes, e.Total)
	case PhaseDone:
		line = fmt.Sprintf("%s (took %s, estimated %s)", e.Message, roundDuration(e.Elapsed), e.Estimate)
	case PhaseUndone:
		line = fmt.Sprintf("%s (took %s)", e.Message, roundDuration(e.Elapsed))
	default:
		line = e.Message
	}
	fmt.Fprintf(t.w, "%s step %d %-8s %s\n", e.Time.Format("15:04:05"), e.Step, e.Phase, line)
}

func (t *textEvents) progressDue(e Event) bool {
	var mark int64
	if e.Total > 0 {
		mark = min(e.Bytes, e.Total) * 10 / e.Total
	} else {
		mark = e.Time.Unix()
	}
	if e.Step == t.progressStep && mark <= t.progressMark {
		return false
	}
	t.progressStep, t.progressMark = e.Step, mark
	return true
}

func progressText(done, total int64) string {
	if total <= 0 {
		return units.Bytes(done)
	}
	return fmt.Sprintf("%s of %s (%d%%)", units.Bytes(done), units.Bytes(total), min(done, total)*100/total)
}

func roundDuration(d Duration) Duration {
	return Duration(time.Duration(d).Round(time.Millisecond))
}

// barEvents draws progress events as a byte bar per step and every other event as a text line.
type barEvents struct {
	mu      sync.Mutex
	w       io.Writer
	text    textEvents
	bar     *progressbar.ProgressBar
	barStep int
	barMax  int64
}

var _ Events = (*barEvents)(nil)

// ProgressBar draws each step's progress as a byte bar with rate and time left, and other events as text lines. Use it when
// the output is a terminal.
func ProgressBar(w io.Writer) Events {
	return &barEvents{w: w, text: textEvents{w: w}}
}

func (b *barEvents) Event(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e.Phase != PhaseProgress {
		b.endBar(e.Phase == PhaseDone && e.Step == b.barStep)
		b.text.write(e)
		return
	}
	limit := e.Total
	if limit <= 0 {
		limit = -1 // unknown length: the bar shows bytes and rate only
	}
	if b.bar == nil || e.Step != b.barStep || limit != b.barMax {
		b.endBar(false)
		b.bar = progressbar.NewOptions64(limit,
			progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetDescription(fmt.Sprintf("step %d", e.Step)),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionUseIECUnits(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetSpinnerChangeInterval(0), // no background redraw goroutine to leak
		)
		b.barStep, b.barMax = e.Step, limit
	}
	bytes := e.Bytes
	if limit > 0 {
		bytes = min(bytes, limit)
	}
	b.bar.Set64(bytes) // a bar that cannot be drawn must not stop the plan
}

// endBar finishes the line of the current bar, filling it when its step is done.
func (b *barEvents) endBar(full bool) {
	if b.bar == nil {
		return
	}
	if full && b.barMax > 0 {
		b.bar.Finish()
	}
	fmt.Fprintln(b.w)
	b.bar = nil
}
