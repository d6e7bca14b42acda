package store

import (
	"fmt"
	"strings"

	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// MaxDatabaseName is the longest database name accepted (MIRRORING.md §1).
const MaxDatabaseName = 62

// CanonicalDatabaseName validates a database name and returns its stored form (upper case; names are unique ignoring case).
// A name starts with a letter or '_', then letters, digits, '-' or '_', 1 to 62 characters.
func CanonicalDatabaseName(name string) (string, error) {
	if name == "" || len(name) > MaxDatabaseName {
		return "", fmt.Errorf("database name %q: must be 1 to %d characters: %w", name, MaxDatabaseName, wire.ErrInvalidName)
	}
	for i, c := range name {
		letter := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
		ok := letter || (i > 0 && ((c >= '0' && c <= '9') || c == '-'))
		if !ok {
			return "", fmt.Errorf("database name %q: character %q at %d not allowed (start with a letter or '_', then letters, digits, '-', '_'): %w",
				name, c, i+1, wire.ErrInvalidName)
		}
	}
	return strings.ToUpper(name), nil
}
