package wire

import (
	"errors"
	"strconv"
)

var (
	// ErrFrameTooLarge is returned when a frame exceeds the connection's limit; it is wrapped with the sizes.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrMalformed is returned by decoders; it is wrapped with what was wrong and where.
	ErrMalformed = errors.New("malformed message")
	// ErrHandshake is returned when a connection could not be established at the protocol level.
	ErrHandshake = errors.New("handshake failed")
)

// Code classifies an error that crosses the wire.
type Code uint16

// Error codes. Numbers are part of the protocol: never renumber, only add.
const (
	CodeInternal           Code = 1
	CodeBadRequest         Code = 2
	CodeNoSuchDatabase     Code = 3
	CodeDatabaseDismounted Code = 4
	CodeTooLarge           Code = 5
	CodeNotPrimary         Code = 6 // Redirect holds the primary's data address when known
	CodeReadOnly           Code = 7
	CodeShuttingDown       Code = 8
	CodeVersion            Code = 9
	CodeNotANumber         Code = 10
	CodeExists             Code = 11
	CodeInvalidName        Code = 12
	CodeBusy               Code = 13
	CodeInTrouble          Code = 14 // the primary cannot serve now (its backup or arbiter is lost); the request was not executed
	// CodeOutcomeUnknown: a write was journaled but could not be acknowledged (the member lost the primary role, or
	// its journal failed): it may or may not survive. Only an idempotent request may be sent again.
	CodeOutcomeUnknown Code = 15
)

var codeNames = map[Code]string{
	CodeInternal:           "internal error",
	CodeBadRequest:         "bad request",
	CodeNoSuchDatabase:     "no such database",
	CodeDatabaseDismounted: "database dismounted",
	CodeTooLarge:           "too large",
	CodeNotPrimary:         "not primary",
	CodeReadOnly:           "read-only",
	CodeShuttingDown:       "shutting down",
	CodeVersion:            "protocol version mismatch",
	CodeNotANumber:         "not a number",
	CodeExists:             "already exists",
	CodeInvalidName:        "invalid name",
	CodeBusy:               "busy",
	CodeInTrouble:          "in trouble",
	CodeOutcomeUnknown:     "outcome unknown",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return "error code " + strconv.Itoa(int(c))
}

// Error is a typed error sent across the wire, either inside a Response or as a connection-level KindError frame.
type Error struct {
	Code     Code
	Message  string // complete, user-facing: names the database, key or address involved
	Redirect string // with CodeNotPrimary: the primary's data address, when known
}

// Error returns the message, or the code's description when the message is empty.
func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return e.Code.String()
}

// Is reports whether target is an *Error with the same code, so errors.Is(err, ErrNoSuchDatabase) matches any message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels, one per code, for errors.Is.
var (
	ErrInternal           = &Error{Code: CodeInternal}
	ErrBadRequest         = &Error{Code: CodeBadRequest}
	ErrNoSuchDatabase     = &Error{Code: CodeNoSuchDatabase}
	ErrDatabaseDismounted = &Error{Code: CodeDatabaseDismounted}
	ErrTooLarge           = &Error{Code: CodeTooLarge}
	ErrNotPrimary         = &Error{Code: CodeNotPrimary}
	ErrReadOnly           = &Error{Code: CodeReadOnly}
	ErrShuttingDown       = &Error{Code: CodeShuttingDown}
	ErrVersion            = &Error{Code: CodeVersion}
	ErrNotANumber         = &Error{Code: CodeNotANumber}
	ErrExists             = &Error{Code: CodeExists}
	ErrInvalidName        = &Error{Code: CodeInvalidName}
	ErrBusy               = &Error{Code: CodeBusy}
	ErrInTrouble          = &Error{Code: CodeInTrouble}
	ErrOutcomeUnknown     = &Error{Code: CodeOutcomeUnknown}
)
