package journal

import "errors"

var (
	// ErrCorrupt means a segment failed a check; it is always wrapped with the
	// file name and byte offset.
	ErrCorrupt = errors.New("journal corrupt")
	// ErrMissingSegment means the segment numbers have a gap; the error names
	// the missing file.
	ErrMissingSegment = errors.New("journal segment missing")
	// ErrUnsupportedVersion means a segment header or record was written by a
	// format this code does not know.
	ErrUnsupportedVersion = errors.New("unsupported journal format version")
	// ErrPurged means a position lies before the oldest segment still present.
	ErrPurged = errors.New("journal position purged")
	// ErrBadPosition means a position is not a record boundary of this journal.
	ErrBadPosition = errors.New("not a record boundary")
	// ErrClosed is returned by every call after Close, and (wrapped together
	// with ErrFailed and the cause) after a write or sync failure.
	ErrClosed = errors.New("journal closed")
	// ErrRecordTooLarge means a record's payload exceeds MaxPayloadSize.
	ErrRecordTooLarge = errors.New("journal record too large")
	// ErrFailed marks the sticky error of a journal whose write or sync failed:
	// after it nothing more is appended or acknowledged, because the state of
	// unsynced data in the file is unknown and a retried fsync may lie.
	ErrFailed = errors.New("journal failed")
	// ErrInvalidRecord means Append was given a record it cannot encode
	// faithfully (unknown type, or a value/before-image without its flag).
	ErrInvalidRecord = errors.New("invalid journal record")
)

// failure is the sticky error of a journal after an I/O failure.
type failure struct{ cause error }

func (f *failure) Error() string {
	return "journal failed, refusing further writes: " + f.cause.Error()
}

func (f *failure) Unwrap() []error { return []error{ErrFailed, ErrClosed, f.cause} }
