package store

import (
	"fmt"
	"strings"

	"github.com/rs/zerolog"
)

// pebbleLogger routes Pebble's log lines into zerolog under the database's logger.
type pebbleLogger struct{ log zerolog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug().Msg(fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error().Msg(fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Fatal().Msg(fmt.Sprintf(format, args...))
}

// inspectLogger is the logger of a store opened read-only to inspect a directory. Pebble calls Fatalf for a state it cannot
// go on from (a table file missing under it); that must fail the inspection with an error, never stop the member, so
// Fatalf panics with an inspectFatal that withReadOnly turns back into an error.
type inspectLogger struct{}

type inspectFatal struct{ msg string }

func (inspectLogger) Infof(string, ...any)  {}
func (inspectLogger) Errorf(string, ...any) {}
func (inspectLogger) Fatalf(format string, args ...any) {
	msg, _, _ := strings.Cut(fmt.Sprintf(format, args...), "\n") // the first line; the rest is a stack trace
	panic(inspectFatal{msg})
}
