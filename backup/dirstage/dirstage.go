// Package dirstage is the directory staging target: each backup object is one file under a root directory, its key the
// file's slash-separated path relative to the root. Writes are crash-safe (temporary file, fsync, rename, fsync of the
// directory), so a reader or a crash never sees half an object; temporary files of interrupted writes are never listed.
// Files are created owner-only (0600, directories 0700) because backups hold database contents. The package owns only the
// files under its root; it knows nothing of what the objects contain.
package dirstage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/mirrorkit/mirrorkit/backup"
)

// ErrInvalidKey is returned (wrapped) for a key or prefix that is not a clean relative slash-separated path.
var ErrInvalidKey = errors.New("invalid key")

// tempMarker is part of every temporary file's name: ".<name>.tmp-<random>".
const tempMarker = ".tmp-"

// Target stores objects as files under a root directory. It is safe for concurrent use.
type Target struct {
	root string
}

var _ backup.Target = (*Target)(nil)

// New returns a target rooted at root, creating the directory if needed.
func New(root string) (*Target, error) {
	if root == "" {
		return nil, errors.New("staging directory: empty path")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("staging directory %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("staging directory %s: %w", abs, err)
	}
	return &Target{root: abs}, nil
}

// Put writes r to a temporary file beside the object, fsyncs it, renames it over the object and fsyncs the directory.
func (t *Target) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	path, err := t.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	tmp, err := t.createTemp(path)
	if err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	src := io.Reader(&ctxReader{ctx: ctx, r: r})
	if size >= 0 {
		// One byte past size tells a reader that is longer than announced from one that is exact.
		src = io.LimitReader(src, size+1)
	}
	n, err := io.Copy(tmp, src)
	if err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("put %s: reader gave %s bytes, announced %d", path, countText(n, size), size)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("put %s: sync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	done = true
	return syncDir(filepath.Dir(path))
}

// countText says how many bytes a reader gave when it gave more than announced (only size+1 were read).
func countText(n, size int64) string {
	if n > size {
		return "more than"
	}
	return fmt.Sprint(n)
}

// createTemp creates the temporary file for path, creating and fsyncing missing parent directories. A concurrent Delete
// may remove an empty parent between its creation and the file's; that is retried.
func (t *Target) createTemp(path string) (*os.File, error) {
	dir := filepath.Dir(path)
	var err error
	for range 5 {
		err = t.mkdirs(dir)
		if err == nil {
			var f *os.File
			if f, err = os.CreateTemp(dir, "."+filepath.Base(path)+tempMarker+"*"); err == nil {
				return f, nil
			}
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, err
}

// mkdirs creates dir and its missing parents below the root, fsyncing each parent so the new entries are durable.
func (t *Target) mkdirs(dir string) error {
	rel, err := filepath.Rel(t.root, dir)
	if err != nil || rel == "." {
		return err
	}
	cur := t.root
	for _, name := range strings.Split(rel, string(filepath.Separator)) {
		next := filepath.Join(cur, name)
		err := os.Mkdir(next, 0o700)
		switch {
		case err == nil:
			if err := syncDir(cur); err != nil {
				return err
			}
		case !errors.Is(err, fs.ErrExist):
			return err
		}
		cur = next
	}
	return nil
}

// Get opens the object's file and returns the requested section of it.
func (t *Target) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	path, err := t.path(key)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d", path, offset)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", path, err)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, fmt.Errorf("%w: %s in directory %s", backup.ErrNotFound, key, t.root)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", path, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s in directory %s", backup.ErrNotFound, key, t.root)
	}
	n := max(info.Size()-offset, 0)
	if length >= 0 {
		n = min(n, length)
	}
	return &sectionFile{Reader: io.NewSectionReader(f, offset, n), f: f}, nil
}

// sectionFile reads a section of a file and closes the file.
type sectionFile struct {
	io.Reader
	f *os.File
}

func (s *sectionFile) Close() error { return s.f.Close() }

// List walks the directory that holds every key with the prefix and returns the matching files in key order.
func (t *Target) List(ctx context.Context, prefix string) ([]backup.Object, error) {
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	start := t.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(t.root, filepath.FromSlash(prefix[:i]))
	}
	var objects []backup.Object
	err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// Entries removed by a concurrent Delete, or a start directory that does not exist: nothing to list.
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() || isTemp(d.Name()) {
			return nil
		}
		rel, err := filepath.Rel(t.root, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		objects = append(objects, backup.Object{Key: key, Size: info.Size(), Modified: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q in directory %s: %w", prefix, t.root, err)
	}
	// The walk goes directory by directory, which is not key order: "a/b.txt" sorts before "a/b/c".
	slices.SortFunc(objects, func(a, b backup.Object) int { return strings.Compare(a.Key, b.Key) })
	return objects, nil
}

// Delete removes each object's file and then the parent directories it leaves empty, up to the root.
func (t *Target) Delete(ctx context.Context, keys ...string) error {
	paths := make([]string, len(keys))
	for i, key := range keys {
		path, err := t.path(key)
		if err != nil {
			return err
		}
		paths[i] = path
	}
	var errs []error
	for _, path := range paths {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, fmt.Errorf("delete in directory %s: %w", t.root, err))...)
		}
		if err := t.remove(path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (t *Target) remove(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	if info.IsDir() {
		// A key that names a directory is no object; there is nothing to delete.
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	// Removing a directory fails once it is not empty; one that is already gone was emptied by a concurrent Delete.
	dir := filepath.Dir(path)
	for dir != t.root {
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			break
		}
		dir = filepath.Dir(dir)
	}
	if err := syncDir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// path maps a key to its file, refusing keys that could point outside the root.
func (t *Target) path(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return filepath.Join(t.root, filepath.FromSlash(key)), nil
}

// CheckKey accepts clean relative slash-separated paths: no empty, "." or ".." segments, no leading slash, no backslash
// or NUL, and no name of a temporary file (".x.tmp-N"). Every staging target applies these rules, so that any staged backup can be copied into a directory.
func CheckKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	segments := strings.Split(key, "/")
	if isTemp(segments[len(segments)-1]) {
		return fmt.Errorf("%w %q: names like .x%sN are reserved for unfinished writes", ErrInvalidKey, key, tempMarker)
	}
	return checkSegments(key, segments)
}

// CheckPrefix accepts "" and anything that is the start of a valid key: the last segment may be partial or empty.
func CheckPrefix(prefix string) error {
	segments := strings.Split(prefix, "/")
	return checkSegments(prefix, segments[:len(segments)-1])
}

func checkSegments(key string, segments []string) error {
	if strings.HasPrefix(key, "/") {
		return fmt.Errorf("%w %q: absolute path; keys are relative slash-separated paths", ErrInvalidKey, key)
	}
	for _, s := range segments {
		var why string
		switch s {
		case "":
			why = "empty path segment"
		case ".", "..":
			why = fmt.Sprintf("%q segment", s)
		}
		if strings.ContainsAny(s, "\\\x00") {
			why = "backslash or NUL byte"
		}
		if why != "" {
			return fmt.Errorf("%w %q: %s; keys are relative slash-separated paths like \"backups/2024/manifest.json\"",
				ErrInvalidKey, key, why)
		}
	}
	return nil
}

func isTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempMarker)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// ctxReader stops a copy as soon as the context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
