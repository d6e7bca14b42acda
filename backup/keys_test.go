package backup

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.key")
	if err := GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	text, _ := os.ReadFile(path)
	if len(text) != 65 || text[64] != '\n' {
		t.Fatalf("key file content %q", text)
	}
	key, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(key)+"\n" != string(text) || len(KeyID(key)) != 16 {
		t.Fatalf("loaded %x from %q", key, text)
	}
	if err := GenerateKeyFile(path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second generate: %v", err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, text) {
		t.Fatal("refused generate changed the key file")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	other := filepath.Join(dir, "other.key")
	if err := GenerateKeyFile(other); err != nil {
		t.Fatal(err)
	}
	if k2, _ := LoadKeyFile(other); bytes.Equal(k2, key) {
		t.Fatal("two generated keys are equal")
	}
}

func TestLoadKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content, want string
		sentinel            error
	}{
		{"short", strings.Repeat("ab", 16) + "\n", "holds 32 characters, want 64 hex digits", ErrBadKeyFile},
		{"long", strings.Repeat("ab", 33), "holds 66 characters", ErrBadKeyFile},
		{"garbled", strings.Repeat("zz", 32) + "\n", "not a hex key", ErrBadKeyFile},
		{"empty", "", "holds 0 characters", ErrBadKeyFile},
		{"missing", "", "does not exist", fs.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if tc.name != "missing" {
				if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadKeyFile(path)
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("LoadKeyFile: %v, want %q naming %s", err, tc.want, path)
			}
		})
	}
	crlf := filepath.Join(dir, "crlf")
	os.WriteFile(crlf, []byte(strings.Repeat("0f", 32)+"\r\n"), 0o600)
	if key, err := LoadKeyFile(crlf); err != nil || key[0] != 0x0f {
		t.Fatalf("CRLF key file: %x, %v", key, err)
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add([]byte(strings.Repeat("a1", 32) + "\n"))
	f.Add([]byte(strings.Repeat("a1", 31)))
	f.Add([]byte(strings.Repeat("G1", 32)))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := parseKey(data)
		if err != nil {
			if !errors.Is(err, ErrBadKeyFile) {
				t.Fatalf("error not classified: %v", err)
			}
			return
		}
		if len(key) != KeySize || !strings.EqualFold(hex.EncodeToString(key), strings.TrimRight(string(data), "\r\n")) {
			t.Fatalf("parsed %x from %q", key, data)
		}
	})
}
