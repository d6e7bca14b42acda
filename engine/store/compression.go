package store

import (
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// Compression is how a member's databases compress the blocks of their table files. It applies to the files written from
// then on (flushes and compactions), so a member can change it at any restart; every setting reads every other's files.
type Compression string

const (
	// CompressionFast compresses every level with Snappy: the least CPU when writing and reading (the default).
	CompressionFast Compression = "fast"
	// CompressionBalanced uses zstd level 1 in the bottom level, where most data lives, and Snappy-class elsewhere.
	CompressionBalanced Compression = "balanced"
	// CompressionGood uses zstd level 3 in the bottom level and level 1 in the one above it: the smallest databases and
	// the fastest backups and copies, for more CPU spent compacting.
	CompressionGood Compression = "good"
)

// Compressions lists the settings, for help texts and errors.
var Compressions = []Compression{CompressionFast, CompressionBalanced, CompressionGood}

// ParseCompression checks a setting's name ("" is the default, fast).
func ParseCompression(s string) (Compression, error) {
	if s == "" {
		return CompressionFast, nil
	}
	for _, c := range Compressions {
		if string(c) == strings.ToLower(s) {
			return c, nil
		}
	}
	names := make([]string, len(Compressions))
	for i, c := range Compressions {
		names[i] = string(c)
	}
	return "", fmt.Errorf("database compression %q: want one of %s", s, strings.Join(names, ", "))
}

// apply sets the per-level compression of opts.
func (c Compression) apply(opts *pebble.Options) {
	switch c {
	case CompressionBalanced:
		opts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionBalanced })
	case CompressionGood:
		opts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionGood })
	}
	// CompressionFast is Pebble's default: Snappy in every level.
}
