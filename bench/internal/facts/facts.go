// Package facts is the environment table of the benchmark reports: "name=value" lines given on the command line,
// kept in order. It owns nothing else.
package facts

import (
	"fmt"
	"strings"
)

// Fact is one line of the environment table.
type Fact struct{ Name, Value string }

// Parse reads "name=value" arguments (the value may contain "=").
func Parse(raw []string) ([]Fact, error) {
	out := make([]Fact, 0, len(raw))
	for _, r := range raw {
		name, value, ok := strings.Cut(r, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("fact %q: want name=value", r)
		}
		out = append(out, Fact{name, value})
	}
	return out, nil
}

// WriteRows writes one Markdown table row per fact, with "|" escaped.
func WriteRows(b *strings.Builder, facts []Fact) {
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, f := range facts {
		fmt.Fprintf(b, "| %s | %s |\n", esc(f.Name), esc(f.Value))
	}
}
