// Package jsonl reads the result files of the benchmark scripts: one JSON object per line, written as the run goes.
package jsonl

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// maxLine bounds one result line; real ones are at most a few kilobytes.
const maxLine = 1 << 20

// Each calls f with every non-blank line of r, in order; an error from f is returned with the line's number.
func Each(r io.Reader, f func(line []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := f(line); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	return nil
}
