package arbiter

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestStateFileFormat(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := newServer(t, dir, clk, nil)
	run(t, s, clk, scenario(healthy, []step{advance(qos), continueStep("a", 1, true, "")}))
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("state file is not JSON: %v\n%s", err, data)
	}
	want := map[string]any{
		"version": 1.0,
		"mirrors": map[string]any{"APP": map[string]any{"epoch": 1.0, "primary": "a", "backup_lost": 1.0}},
	}
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("state file = %s, want %s", g, w)
	}
}

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func TestMalformedStateFile(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"not JSON", `{"version": 1, "mirrors": {`, "not JSON"},
		{"no version", `{"mirrors": {}}`, "no version"},
		{"newer version", `{"version": 2, "mirrors": {}}`, "format version 2, this build reads version 1"},
		{"unknown field", `{"version": 1, "mirrors": {"APP": {"epoch": 1, "leader": "a"}}}`, `unknown field "leader"`},
		{"bad mirror name", `{"version": 1, "mirrors": {"A-B": {"epoch": 1}}}`, `mirror name "A-B"`},
		{"lower-case mirror", `{"version": 1, "mirrors": {"app": {"epoch": 1}}}`, "not upper-case"},
		{"bad primary", `{"version": 1, "mirrors": {"APP": {"epoch": 1, "primary": "a b"}}}`, `member name "a b"`},
		{"backup lost later than epoch", `{"version": 1, "mirrors": {"APP": {"epoch": 1, "backup_lost": 2}}}`, "backup lost in epoch 2"},
		{"negative epoch", `{"version": 1, "mirrors": {"APP": {"epoch": -1}}}`, "cannot unmarshal"},
		{"trailing data", `{"version": 1, "mirrors": {}} {}`, "after top-level value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, StateFile)
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := NewServer(Options{Dir: dir, Logger: zerolog.New(zerolog.NewTestWriter(t))})
			if err == nil {
				s.Close()
				t.Fatalf("NewServer accepted %s", tc.content)
			}
			if !errors.Is(err, ErrBadState) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want ErrBadState naming %s and saying %q", err, path, tc.want)
			}
			// The directory is not left locked by the failed start.
			if err := os.WriteFile(path, []byte(`{"version": 1, "mirrors": {}}`), 0o644); err != nil {
				t.Fatal(err)
			}
			newServer(t, dir, newClock(), nil)
		})
	}
}

func TestDirectoryLocked(t *testing.T) {
	dir := t.TempDir()
	s := newServer(t, dir, newClock(), nil)
	if s2, err := NewServer(Options{Dir: dir}); !errors.Is(err, ErrLocked) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("second arbiter on %s: %v, want ErrLocked", dir, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	newServer(t, dir, newClock(), nil)
}

func TestNewServerNeedsDir(t *testing.T) {
	if _, err := NewServer(Options{}); err == nil {
		t.Fatal("NewServer without a directory succeeded")
	}
}
