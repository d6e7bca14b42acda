package store

import (
	"fmt"

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
