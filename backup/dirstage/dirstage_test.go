package dirstage

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/backup/stagetest"
)

func TestConformance(t *testing.T) {
	stagetest.Run(t, func(t *testing.T) backup.Target { return newTarget(t, t.TempDir()) })
}

func newTarget(tb testing.TB, root string) *Target {
	tb.Helper()
	target, err := New(root)
	if err != nil {
		tb.Fatal(err)
	}
	return target
}

func TestNewCreatesRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "b")
	newTarget(t, root)
	if info, err := os.Stat(root); err != nil || !info.IsDir() {
		t.Fatalf("root %s not created: %v", root, err)
	}
	if _, err := New(""); err == nil {
		t.Fatal("New with an empty path: no error")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(filepath.Join(file, "below")); err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("New below a file: %v, want an error naming the path", err)
	}
}

// TestTempFilesNotListed stands for a crash during Put: its temporary file stays behind and must never show as an object.
func TestTempFilesNotListed(t *testing.T) {
	root := t.TempDir()
	target := newTarget(t, root)
	stagetest.Put(t, target, "dir/object", []byte("data"))
	if err := os.WriteFile(filepath.Join(root, "dir", ".object.tmp-123456"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := target.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Key != "dir/object" {
		t.Fatalf("list = %v, want only dir/object", got)
	}
	if err := target.Put(t.Context(), "dir/.object.tmp-1", bytes.NewReader(nil), 0); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("put of a temporary file's name: %v, want ErrInvalidKey", err)
	}
}

func TestPutLeavesNoTempFiles(t *testing.T) {
	root := t.TempDir()
	target := newTarget(t, root)
	stagetest.Put(t, target, "a/b/c", []byte("data"))
	err := target.Put(t.Context(), "a/b/d", bytes.NewReader([]byte("short")), 100)
	if err == nil {
		t.Fatal("put of a short reader: no error")
	}
	if want := filepath.Join(root, "a", "b", "d"); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name the file %s", err, want)
	}
	if got := files(t, root); !slices.Equal(got, []string{"a", "a/b", "a/b/c"}) {
		t.Fatalf("files under the root: %q", got)
	}
	if info, err := os.Stat(filepath.Join(root, "a", "b", "c")); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("object file: %v %v, want mode 0600", info, err)
	}
}

func TestDeleteRemovesEmptyDirectories(t *testing.T) {
	root := t.TempDir()
	target := newTarget(t, root)
	stagetest.Put(t, target, "x/y/z/1", []byte("1"))
	stagetest.Put(t, target, "x/2", []byte("2"))
	if err := target.Delete(t.Context(), "x/y/z/1"); err != nil {
		t.Fatal(err)
	}
	if got := files(t, root); !slices.Equal(got, []string{"x", "x/2"}) {
		t.Fatalf("after deleting x/y/z/1: %q", got)
	}
	if err := target.Delete(t.Context(), "x/2"); err != nil {
		t.Fatal(err)
	}
	if got := files(t, root); len(got) != 0 {
		t.Fatalf("after deleting everything: %q", got)
	}
	if _, err := os.Stat(root); err != nil {
		t.Fatalf("the root itself was removed: %v", err)
	}
}

// TestDeleteReportsFailures deletes a key the file system refuses (a name longer than any file system allows) beside a
// good one: the error names the bad one and the good one is still deleted.
func TestDeleteReportsFailures(t *testing.T) {
	root := t.TempDir()
	target := newTarget(t, root)
	stagetest.Put(t, target, "open/2", []byte("2"))
	tooLong := "open/" + strings.Repeat("x", 300)
	err := target.Delete(t.Context(), tooLong, "open/2")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(root, tooLong)) {
		t.Fatalf("delete of an impossible name: %v, want an error naming the file", err)
	}
	if _, statErr := os.Stat(filepath.Join(root, "open", "2")); !errors.Is(statErr, fs.ErrNotExist) {
		t.Fatalf("the other key was not deleted: %v", statErr)
	}
}

func TestInvalidKeys(t *testing.T) {
	target := newTarget(t, t.TempDir())
	tests := []struct {
		key  string
		want string
	}{
		{"", "empty key"},
		{"/etc/passwd", "absolute path"},
		{"a//b", "empty path segment"},
		{"a/../../b", `".." segment`},
		{"a/./b", `"." segment`},
		{`a\b`, "backslash"},
		{"a\x00b", "NUL"},
	}
	for _, tt := range tests {
		err := target.Put(t.Context(), tt.key, bytes.NewReader(nil), 0)
		if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("put %q: %v, want ErrInvalidKey saying %q", tt.key, err, tt.want)
		}
	}
	for _, prefix := range []string{"/a", "a//", "../", "a/../b"} {
		if _, err := target.List(t.Context(), prefix); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("list %q: %v, want ErrInvalidKey", prefix, err)
		}
	}
}

// TestConcurrentPutDelete writes and deletes keys in one directory at once: a Delete that empties a directory and removes
// it must not break a Put that is creating a file in it.
func TestConcurrentPutDelete(t *testing.T) {
	target := newTarget(t, t.TempDir())
	const workers, rounds = 6, 25
	var g errgroup.Group
	for w := range workers {
		g.Go(func() error {
			key := fmt.Sprintf("pd/dir/sub/%d", w)
			for r := range rounds {
				if err := target.Put(t.Context(), key, bytes.NewReader([]byte{byte(r)}), 1); err != nil {
					return err
				}
				if err := target.Delete(t.Context(), key); err != nil {
					return err
				}
			}
			return target.Put(t.Context(), key, bytes.NewReader([]byte{byte(w)}), 1)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("concurrent put and delete: %v", err)
	}
	got, err := target.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != workers {
		t.Fatalf("list after the last puts: %v, want %d objects", got, workers)
	}
	for w, o := range got {
		if want := fmt.Sprintf("pd/dir/sub/%d", w); o.Key != want || o.Size != 1 {
			t.Fatalf("object %d: %s of %d bytes, want %s of 1", w, o.Key, o.Size, want)
		}
	}
}

// files lists every file and directory under root as slash paths.
func files(tb testing.TB, root string) []string {
	tb.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		rel, err := filepath.Rel(root, path)
		out = append(out, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// FuzzCheckKey checks that every accepted key maps to a file strictly inside the root and is also a valid prefix.
func FuzzCheckKey(f *testing.F) {
	for _, seed := range []string{"a", "a/b", "../a", "a/../../b", "/a", "a//b", ".a.tmp-1", `a\..\b`, "a/./b", "...", "a/.."} {
		f.Add(seed)
	}
	root := filepath.FromSlash("/stage/root")
	f.Fuzz(func(t *testing.T, key string) {
		if CheckKey(key) != nil {
			return
		}
		rel, err := filepath.Rel(root, filepath.Join(root, filepath.FromSlash(key)))
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			t.Fatalf("key %q accepted but maps to %q relative to the root", key, rel)
		}
		if filepath.ToSlash(rel) != key {
			t.Fatalf("key %q accepted but is not clean: the file is %q", key, rel)
		}
		if err := CheckPrefix(key); err != nil {
			t.Fatalf("key %q accepted but not as a prefix: %v", key, err)
		}
	})
}
