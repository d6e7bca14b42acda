package plans

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWaitFor(t *testing.T) {
	ctx := context.Background()
	calls := 0
	if err := WaitFor(ctx, time.Minute, time.Millisecond, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || calls != 3 {
		t.Fatalf("WaitFor = %v after %d calls, want success at the third", err, calls)
	}
	stop := errors.New("cannot get better")
	calls = 0
	if err := WaitFor(ctx, time.Minute, time.Millisecond, func() error { calls++; return Permanent(stop) }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("WaitFor = %v after %d calls, want the permanent error at once", err, calls)
	}
	err := WaitFor(ctx, 20*time.Millisecond, time.Millisecond, func() error { return errors.New("still down") })
	if err == nil || !strings.Contains(err.Error(), "still down (gave up after 20ms)") {
		t.Fatalf("WaitFor after the wait = %v", err)
	}
}
