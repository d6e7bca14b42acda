// Package cli is what the mirrorkit command-line programs share: parsing a kong grammar, running the chosen command, and
// the exit codes (0 success, 1 the operation failed, 2 bad usage or bad configuration). It owns nothing else.
package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/alecthomas/kong"
)

// Exit codes.
const (
	ExitFailed = 1
	ExitUsage  = 2
)

// UsageError marks errors caused by how the command was called (bad flags, bad names, bad configuration): exit code 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usage makes a UsageError.
func Usage(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

// Main parses the arguments into grammar (a kong command struct), runs the chosen command and exits with its code.
func Main(name, description string, grammar any) {
	parser, err := kong.New(grammar,
		kong.Name(name),
		kong.Description(description),
		kong.UsageOnError(),
		kong.Exit(func(code int) {
			if code != 0 {
				code = ExitUsage
			}
			os.Exit(code)
		}),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(ExitUsage)
	}
	ctx, err := parser.Parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(ExitUsage)
	}
	if err := ctx.Run(); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		var ue UsageError
		if errors.As(err, &ue) {
			os.Exit(ExitUsage)
		}
		os.Exit(ExitFailed)
	}
}
