// Command fsyncbench measures the baseline a journal must beat: one sync per commit, single-threaded, on the same
// filesystem as the member's data directory. It writes a fixed-size record (16-byte key + 100-byte value by default) and
// syncs it, in a loop, for --duration, and reports operations per second and latency percentiles.
//
// By default it appends to a growing file and calls fsync, the naive way to make each commit durable on its own.
// With --prealloc it writes into a file preallocated ahead of the data and calls fdatasync, the way the member's journal
// (and PostgreSQL's WAL) writes: a sync then has no file size to make durable, which is markedly cheaper on most disks.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/alecthomas/kong"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mirrorkit/mirrorkit/bench/internal/latency"
)

// preallocStep is how far ahead of the data the file is extended in --prealloc mode, as the journal does.
const preallocStep = 4 << 20

type cli struct {
	Dir        string        `required:"" help:"Directory to write the test file in (same filesystem as the data directory)."`
	Duration   time.Duration `default:"10s" help:"How long to measure."`
	Warmup     time.Duration `default:"1s" help:"How long to run before measuring."`
	RecordSize int           `default:"116" help:"Bytes written per commit."`
	Prealloc   bool          `help:"Write into a preallocated file and fdatasync instead of appending and fsyncing."`
	JSON       bool          `name:"json" help:"Print the result as one line of JSON."`
}

func main() {
	var c cli
	kong.Parse(&c, kong.Name("fsyncbench"), kong.Description("Write a record and sync it, in a loop: the one-sync-per-commit baseline."))
	if err := c.run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fsyncbench:", err)
		os.Exit(1)
	}
}

// System names under which the two modes are reported.
const (
	systemAppend   = "fsync"
	systemPrealloc = "fdatasync"
)

func (c *cli) run(out io.Writer) (err error) {
	if c.RecordSize <= 0 {
		return fmt.Errorf("record size %d: must be positive", c.RecordSize)
	}
	path := filepath.Join(c.Dir, fmt.Sprintf("fsyncbench-%d.dat", os.Getpid()))
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("create test file: %w", err)
	}
	defer func() {
		err = errors.Join(err, f.Close(), os.Remove(path))
	}()
	w := &writer{f: f, path: path, prealloc: c.Prealloc}
	// The new file's directory entry is made durable once, as a journal does when it creates a segment, so the loop
	// measures only the per-commit cost.
	if err := syncDir(c.Dir); err != nil {
		return err
	}
	record := make([]byte, c.RecordSize)
	for i := range record {
		record[i] = byte('a' + i%26)
	}
	if _, err := w.loop(record, time.Now().Add(c.Warmup), nil); err != nil {
		return err
	}
	start := time.Now()
	samples, err := w.loop(record, start.Add(c.Duration), make([]time.Duration, 0, 1<<16))
	if err != nil {
		return err
	}
	system := systemAppend
	if c.Prealloc {
		system = systemPrealloc
	}
	s, err := latency.Summarize(system, 1, time.Since(start), samples)
	if err != nil {
		return err
	}
	return s.Output(out, c.JSON)
}

// writer writes records one after another into f, in either mode.
type writer struct {
	f        vfs.File
	path     string
	prealloc bool
	off      int64 // end of the records written
	size     int64 // file size in --prealloc mode, preallocated zeros included
}

// loop writes and syncs record until deadline, appending each operation's latency to samples when it is non-nil.
func (w *writer) loop(record []byte, deadline time.Time, samples []time.Duration) ([]time.Duration, error) {
	for {
		t0 := time.Now()
		if !t0.Before(deadline) {
			return samples, nil
		}
		if err := w.commit(record); err != nil {
			return nil, err
		}
		if samples != nil {
			samples = append(samples, time.Since(t0))
		}
	}
}

func (w *writer) commit(record []byte) error {
	if !w.prealloc {
		if _, err := w.f.Write(record); err != nil {
			return fmt.Errorf("append to %s: %w", w.path, err)
		}
		if err := w.f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", w.path, err)
		}
		return nil
	}
	end := w.off + int64(len(record))
	if end > w.size {
		target := (end + preallocStep - 1) / preallocStep * preallocStep
		// Preallocate is only a hint; writing the last byte is what extends the file.
		_ = w.f.Preallocate(w.size, target-w.size)
		if _, err := w.f.WriteAt([]byte{0}, target-1); err != nil {
			return fmt.Errorf("extend %s to %d bytes: %w", w.path, target, err)
		}
		w.size = target
	}
	if _, err := w.f.WriteAt(record, w.off); err != nil {
		return fmt.Errorf("write %s at offset %d: %w", w.path, w.off, err)
	}
	w.off = end
	if err := w.f.SyncData(); err != nil {
		return fmt.Errorf("fdatasync %s: %w", w.path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	if err := d.Sync(); err != nil {
		return errors.Join(fmt.Errorf("fsync directory %s: %w", dir, err), d.Close())
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("close directory %s: %w", dir, err)
	}
	return nil
}
