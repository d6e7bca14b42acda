package plans

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// permanentError ends a WaitFor at once.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// Permanent marks an error that waiting cannot cure: WaitFor returns it at once.
func Permanent(err error) error { return permanentError{err} }

// WaitFor retries f every interval until it succeeds, returns a Permanent error, or wait has passed (then the last error
// is returned, saying how long it waited). Step handlers use it to wait for the state their action leads to.
func WaitFor(ctx context.Context, wait, interval time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		err := f()
		var pe permanentError
		if err == nil || errors.As(err, &pe) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up after %s)", err, wait)
		case <-time.After(interval):
		}
	}
}
