package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// allocEnv makes the test binary a child that touches that many MiB and exits, for the peak RSS tests.
const allocEnv = "BACKUPBENCH_TEST_ALLOC_MIB"

var sink []byte

func TestMain(m *testing.M) {
	if v := os.Getenv(allocEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		sink = make([]byte, n<<20)
		for i := range sink {
			sink[i] = byte(i)
		}
		fmt.Println("allocated")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child is a shell command running the test binary as a child that touches mib MiB: the shell in between checks that
// the peak RSS of descendants counts.
func child(tb testing.TB, mib int) []string {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	return []string{"sh", "-c", fmt.Sprintf("%s=%d %s | cat", allocEnv, mib, exe)}
}

// The peak RSS counts the grandchild behind the shell: one that touches 128 MiB more shows most of it (the runtime
// takes part of the first child's RSS too).
func TestMeasurePeakRSSOfDescendants(t *testing.T) {
	rss := map[int]int64{}
	for _, mib := range []int{0, 128} {
		var out bytes.Buffer
		res, err := measure(t.Context(), child(t, mib), &out, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if res.Seconds <= 0 || res.CPUSeconds <= 0 || res.CPUSeconds > 10*res.Seconds || res.Kind != kindRun || !strings.HasPrefix(res.Command, "sh -c ") {
			t.Errorf("result %+v", res)
		}
		if out.String() != "allocated\n" {
			t.Errorf("standard output %q, want the child's", out.String())
		}
		rss[mib] = res.MaxRSSBytes
	}
	if rss[0] <= 0 || rss[128]-rss[0] < 96<<20 {
		t.Fatalf("peak RSS %d bytes for a child touching nothing, %d for one touching 128 MiB", rss[0], rss[128])
	}
}

func TestMeasureFailsOnAFailedCommand(t *testing.T) {
	_, err := measure(t.Context(), []string{"sh", "-c", "exit 3"}, &bytes.Buffer{}, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("error %v, want exit status 3", err)
	}
}

// A timeout kills the whole pipeline: if the sleep outlived its shell, the wait for its output would last 60s.
func TestMeasureTimeoutKillsTheProcessGroup(t *testing.T) {
	start := time.Now()
	_, err := measure(t.Context(), []string{"sh", "-c", "sleep 60 | cat"}, &bytes.Buffer{}, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "stopped after") {
		t.Fatalf("error %v, want a timeout", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("returned after %v: the pipeline was not killed", took)
	}
}
