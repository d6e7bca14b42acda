package timed

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestRunReportsUsageAndFailures(t *testing.T) {
	var out bytes.Buffer
	u, err := Run(context.Background(), []string{"sh", "-c", "echo hi"}, &out, time.Minute)
	if err != nil || out.String() != "hi\n" || u.Seconds <= 0 || u.MaxRSSBytes <= 0 || u.Command != "sh -c echo hi" {
		t.Fatalf("usage %+v, output %q, %v", u, out.String(), err)
	}
	if _, err := Run(context.Background(), []string{"sh", "-c", "exit 3"}, &out, time.Minute); err == nil {
		t.Fatal("a failing command was reported as a success")
	}
	if _, err := Run(context.Background(), []string{"sleep", "10"}, &out, 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a command past its timeout: %v", err)
	}
}
