package main

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/bench/internal/latency"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		recordSize int
		prealloc   bool
		wantSystem string
		wantErr    bool
	}{
		{name: "append and fsync", recordSize: 116, wantSystem: "fsync"},
		{name: "preallocated and fdatasync", recordSize: 116, prealloc: true, wantSystem: "fdatasync"},
		{name: "record larger than a preallocation step", recordSize: preallocStep + 1, prealloc: true, wantSystem: "fdatasync"},
		{name: "one byte", recordSize: 1, wantSystem: "fsync"},
		{name: "no record", recordSize: 0, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := cli{Dir: dir, Duration: 100 * time.Millisecond, Warmup: 10 * time.Millisecond, RecordSize: tt.recordSize,
				Prealloc: tt.prealloc, JSON: true}
			var out bytes.Buffer
			err := c.run(&out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("run error = %v, want error %v", err, tt.wantErr)
			}
			left, readErr := os.ReadDir(dir)
			if readErr != nil {
				t.Fatal(readErr)
			}
			if len(left) != 0 {
				t.Fatalf("run left %d files in %s", len(left), dir)
			}
			if tt.wantErr {
				return
			}
			var s latency.Summary
			if err := json.Unmarshal(out.Bytes(), &s); err != nil {
				t.Fatalf("decode %q: %v", out.String(), err)
			}
			if s.System != tt.wantSystem || s.Clients != 1 || s.Ops == 0 || s.PerSecond <= 0 {
				t.Fatalf("summary %+v: want %s, 1 client, some ops", s, tt.wantSystem)
			}
		})
	}
}

func TestRunMissingDir(t *testing.T) {
	c := cli{Dir: t.TempDir() + "/absent", Duration: time.Millisecond, RecordSize: 116}
	if err := c.run(&bytes.Buffer{}); err == nil {
		t.Fatal("run in a missing directory succeeded")
	}
}
