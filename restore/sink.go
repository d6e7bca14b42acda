package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/engine/store"
)

// ErrMismatch: what was restored does not match the backup's manifest (a file, the position, the format or the hash).
var ErrMismatch = errors.New("restored data does not match the backup")

// Sink is where a restore writes a database directory: a local directory, or one on a member behind its API.
type Sink interface {
	// Existing lists the files already in place, which a restore does not fetch again when they match the manifest.
	// Each file's SHA-256 is backup.FileDigest's, over pieces of chunkSize (the manifest's).
	Existing(ctx context.Context, chunkSize int64) ([]FileSum, error)
	// WriteAt writes data into a file at offset, creating the file. Calls for different chunks may run concurrently.
	// sha256 is the hex SHA-256 the data must have ("" for none): a sink in another process checks it on arrival, so a
	// piece damaged on the way is refused, not written.
	WriteAt(ctx context.Context, name string, offset int64, data []byte, sha256 string) error
	// Commit checks the files against the manifest, makes them durable, puts the directory in place and checks that it
	// opens at the manifest's position and format.
	Commit(ctx context.Context, m *backup.Manifest) error
}

// FileSum is a file already in place.
type FileSum struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// DirSink restores into a local directory. Files are written into Final + ".restore", which survives an interruption so
// a re-run resumes; Commit swaps it in for Final. WriteAt is safe for concurrent use.
//
// A DirSink remembers, for its own life only, which files it found matching (Existing hashed them) and how many bytes it
// wrote into each (each piece checked against its checksum on arrival): Commit re-reads and hashes only the files it
// cannot vouch for that way — those of an earlier run or another process — instead of reading everything back.
type DirSink struct {
	final string
	delta bool
	// arrivals makes WriteAt check each piece against its checksum: pieces that crossed a network (a member receiving a
	// restore); a restore in this process already checked them.
	arrivals bool

	mu      sync.Mutex
	known   map[string]FileSum // files hashed by Existing and not written since
	written map[string]int64   // bytes written into each file by WriteAt
}

var _ Sink = (*DirSink)(nil)

// NewDirSink prepares a restore into final. With delta, files of an existing final directory that match the backup are
// reused (hard-linked, or copied across file systems) instead of being downloaded.
func NewDirSink(final string, delta bool) (*DirSink, error) {
	clean := filepath.Clean(final)
	if final == "" || clean == "." || clean == string(filepath.Separator) {
		return nil, fmt.Errorf("restore: %q is not a directory to restore into", final)
	}
	s := &DirSink{final: clean, delta: delta, known: map[string]FileSum{}, written: map[string]int64{}}
	if err := os.MkdirAll(s.Temp(), 0o755); err != nil {
		return nil, fmt.Errorf("restore into %s: %w", clean, err)
	}
	return s, nil
}

// CheckArrivals makes WriteAt check every piece against the checksum it comes with, for a sink whose pieces arrive from
// another process.
func (s *DirSink) CheckArrivals() *DirSink {
	s.arrivals = true
	return s
}

// Delta reports whether files of an existing final directory are reused.
func (s *DirSink) Delta() bool { return s.delta }

// Final is the directory the database ends up in.
func (s *DirSink) Final() string { return s.final }

// Temp is the directory files are written into until Commit.
func (s *DirSink) Temp() string { return s.final + ".restore" }

func (s *DirSink) aside() string { return s.final + ".old" }

// Discard abandons the restore: the temporary directory and what it holds are removed.
func (s *DirSink) Discard() error {
	if err := os.RemoveAll(s.Temp()); err != nil {
		return fmt.Errorf("discard restore into %s: %w", s.final, err)
	}
	return nil
}

// Existing lists the files in the temporary directory and, with delta, those of the existing final directory that the
// temporary one does not have. Each is hashed, so a file left half-written by an interruption does not match.
func (s *DirSink) Existing(ctx context.Context, chunkSize int64) ([]FileSum, error) {
	sums, err := s.existing(ctx, chunkSize)
	s.mu.Lock()
	for _, f := range sums {
		if s.written[f.Name] == 0 {
			s.known[f.Name] = f
		}
	}
	s.mu.Unlock()
	return sums, err
}

func (s *DirSink) existing(ctx context.Context, chunkSize int64) ([]FileSum, error) {
	sums, err := sumDir(ctx, s.Temp(), chunkSize)
	if err != nil {
		return nil, err
	}
	if !s.delta {
		return sums, nil
	}
	if st, err := os.Stat(s.final); err != nil || !st.IsDir() {
		return sums, nil
	}
	have := make(map[string]bool, len(sums))
	for _, f := range sums {
		have[f.Name] = true
	}
	old, err := sumDir(ctx, s.final, chunkSize)
	if err != nil {
		return nil, err
	}
	for _, f := range old {
		if !have[f.Name] {
			sums = append(sums, f)
		}
	}
	return sums, nil
}

// sumDir hashes every regular file under dir.
func sumDir(ctx context.Context, dir string, chunkSize int64) ([]FileSum, error) {
	var sums []FileSum
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		size, sum, err := hashFile(p, chunkSize)
		if err != nil {
			return err
		}
		sums = append(sums, FileSum{Name: filepath.ToSlash(rel), Size: size, SHA256: sum})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("restore: list files of %s: %w", dir, err)
	}
	return sums, nil
}

// hashFile returns a file's size and backup.FileDigest over pieces of chunkSize.
func hashFile(path string, chunkSize int64) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	n, sum, err := backup.DigestReader(f, chunkSize)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", path, err)
	}
	return n, sum, nil
}

// WriteAt checks data against sum (with CheckArrivals, when given) and writes it at offset into the named file of the temporary directory,
// creating it and its parents.
func (s *DirSink) WriteAt(_ context.Context, name string, offset int64, data []byte, sum string) error {
	if err := backup.CheckFileName(name); err != nil {
		return fmt.Errorf("restore into %s: %w", s.final, err)
	}
	if sum != "" && s.arrivals {
		if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum {
			return fmt.Errorf("restore into %s: the piece of %s at offset %d does not have the checksum it was sent with: %w", s.final, name, offset, ErrMismatch)
		}
	}
	if offset < 0 {
		return fmt.Errorf("restore into %s: file %s: negative offset %d", s.final, name, offset)
	}
	p := filepath.Join(s.Temp(), filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("restore into %s: %w", s.final, err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("restore into %s: %w", s.final, err)
	}
	if _, err := f.WriteAt(data, offset); err != nil {
		f.Close()
		return fmt.Errorf("restore into %s: write %s at %d: %w", s.final, name, offset, err)
	}
	// Start writing the piece to disk now, so that the disk works while later pieces arrive and Commit's syncs find
	// little left to do.
	startWriteback(f, offset, int64(len(data)))
	if err := f.Close(); err != nil {
		return fmt.Errorf("restore into %s: write %s: %w", s.final, name, err)
	}
	s.mu.Lock()
	s.written[name] += int64(len(data))
	delete(s.known, name)
	s.mu.Unlock()
	return nil
}

// vouched reports whether this DirSink already knows the file to be the manifest's without reading it again: it hashed
// it in Existing and has not written it since, or it wrote exactly the file's size into it from verified chunks.
func (s *DirSink) vouched(f backup.File, size int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if size != f.Size {
		return false
	}
	if k, ok := s.known[f.Name]; ok {
		return k.Size == f.Size && k.SHA256 == f.SHA256
	}
	return s.written[f.Name] == f.Size
}

// Commit checks every file of the manifest (reusing matching files of the old directory with delta), removes any other
// file, syncs everything, swaps the directory in (the old one is moved aside and removed once the new one checks) and
// opens it: its name, position and format must be the manifest's. If they are not, the restored directory is removed
// and the old one put back.
func (s *DirSink) Commit(ctx context.Context, m *backup.Manifest) error {
	temp := s.Temp()
	needDirs := map[string]bool{temp: true}
	for _, f := range m.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.checkFile(f, m.ChunkSize); err != nil {
			return err
		}
		for dir := filepath.Dir(filepath.Join(temp, filepath.FromSlash(f.Name))); dir != temp; dir = filepath.Dir(dir) {
			needDirs[dir] = true
		}
	}
	if err := removeOthers(temp, m, needDirs); err != nil {
		return fmt.Errorf("restore into %s: %w", s.final, err)
	}
	for _, f := range m.Files {
		if err := syncPath(filepath.Join(temp, filepath.FromSlash(f.Name))); err != nil {
			return fmt.Errorf("restore into %s: %w", s.final, err)
		}
	}
	dirs := slices.Collect(maps.Keys(needDirs))
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	for _, d := range dirs {
		if err := syncPath(d); err != nil {
			return fmt.Errorf("restore into %s: %w", s.final, err)
		}
	}
	return s.swapIn(m)
}

// checkFile makes the named file of the temporary directory match the manifest, or says why it does not.
func (s *DirSink) checkFile(f backup.File, chunkSize int64) error {
	if err := backup.CheckFileName(f.Name); err != nil {
		return fmt.Errorf("restore into %s: %w", s.final, err)
	}
	p := filepath.Join(s.Temp(), filepath.FromSlash(f.Name))
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) && s.delta {
		err = s.reuse(f.Name, p)
		if err == nil {
			st, err = os.Stat(p)
		}
	}
	if err != nil {
		return fmt.Errorf("restore into %s: file %s: %w", s.final, f.Name, err)
	}
	if s.vouched(f, st.Size()) {
		return nil
	}
	if st.Size() > f.Size {
		// Left over from an earlier content of the file; the checksum below decides whether the rest is right.
		if err := os.Truncate(p, f.Size); err != nil {
			return fmt.Errorf("restore into %s: file %s: %w", s.final, f.Name, err)
		}
	}
	size, sum, err := hashFile(p, chunkSize)
	if err != nil {
		return fmt.Errorf("restore into %s: file %s: %w", s.final, f.Name, err)
	}
	if size != f.Size || sum != f.SHA256 {
		return fmt.Errorf("restore into %s: file %s is %d bytes with SHA-256 %s, the backup says %d bytes with %s; run the restore again: %w",
			s.final, f.Name, size, sum, f.Size, f.SHA256, ErrMismatch)
	}
	return nil
}

// reuse places the old directory's file at p: a hard link where possible (the old directory is removed after the swap,
// and nothing writes to either), else a copy.
func (s *DirSink) reuse(name, p string) error {
	old := filepath.Join(s.final, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.Link(old, p); err == nil {
		return nil
	}
	src, err := os.Open(old)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("copy %s: %w", old, err)
	}
	return dst.Close()
}

// removeOthers deletes what the temporary directory holds beyond the manifest's files and their directories.
func removeOthers(temp string, m *backup.Manifest, needDirs map[string]bool) error {
	want := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		want[filepath.Join(temp, filepath.FromSlash(f.Name))] = true
	}
	return filepath.WalkDir(temp, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir() && !needDirs[p]:
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			return fs.SkipDir
		case !d.IsDir() && !want[p]:
			return os.Remove(p)
		}
		return nil
	})
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p, err)
	}
	return nil
}

// swapIn renames the checked temporary directory to final, keeping an existing final aside until the result opens at
// the manifest's position. A run interrupted between the two renames left final missing and the old directory aside:
// that old directory is kept, not replaced by the restored one of the interrupted run.
func (s *DirSink) swapIn(m *backup.Manifest) error {
	parent := filepath.Dir(s.final)
	_, finalErr := os.Stat(s.final)
	_, asideErr := os.Stat(s.aside())
	switch {
	case finalErr == nil:
		if asideErr == nil {
			if err := os.RemoveAll(s.aside()); err != nil {
				return fmt.Errorf("restore into %s: remove stale %s: %w", s.final, s.aside(), err)
			}
		}
		if err := os.Rename(s.final, s.aside()); err != nil {
			return fmt.Errorf("restore into %s: move the existing directory aside: %w", s.final, err)
		}
	case !errors.Is(finalErr, fs.ErrNotExist):
		return fmt.Errorf("restore into %s: %w", s.final, finalErr)
	}
	if err := os.Rename(s.Temp(), s.final); err != nil {
		return fmt.Errorf("restore into %s: rename %s: %w", s.final, s.Temp(), err)
	}
	if err := syncPath(parent); err != nil {
		return fmt.Errorf("restore into %s: %w", s.final, err)
	}
	if err := checkOpened(s.final, m); err != nil {
		return s.rollBack(err)
	}
	if err := os.RemoveAll(s.aside()); err != nil {
		return fmt.Errorf("restore into %s is complete, but removing the previous directory %s failed: %w", s.final, s.aside(), err)
	}
	if err := syncPath(parent); err != nil {
		return fmt.Errorf("restore into %s: %w", s.final, err)
	}
	return nil
}

// checkOpened opens the restored directory and compares it with the manifest.
func checkOpened(dir string, m *backup.Manifest) error {
	info, err := store.InspectDir(dir)
	if err != nil {
		return err
	}
	if canon, err := store.CanonicalDatabaseName(info.Name); err != nil || canon != m.Database {
		return fmt.Errorf("it holds database %s, the backup is of %s: %w", info.Name, m.Database, ErrMismatch)
	}
	if info.Applied != m.Position {
		return fmt.Errorf("it is at journal position %s, the backup at %s: %w", info.Applied, m.Position, ErrMismatch)
	}
	if info.Format != m.DatabaseFormat {
		return fmt.Errorf("it has database format %d, the backup %d: %w", info.Format, m.DatabaseFormat, ErrMismatch)
	}
	return nil
}

// rollBack removes a restored directory that failed its check and puts the previous one back.
func (s *DirSink) rollBack(cause error) error {
	notes := []string{"the restored directory was removed"}
	if err := os.RemoveAll(s.final); err != nil {
		notes[0] = fmt.Sprintf("removing the restored directory failed (%v): delete it by hand", err)
	}
	if _, err := os.Stat(s.aside()); err == nil {
		if err := os.Rename(s.aside(), s.final); err != nil {
			notes = append(notes, fmt.Sprintf("putting the previous directory back failed (%v): it is at %s", err, s.aside()))
		} else {
			notes = append(notes, "the previous directory is back in place")
		}
	}
	if err := syncPath(filepath.Dir(s.final)); err != nil {
		notes = append(notes, err.Error())
	}
	return fmt.Errorf("restored database at %s does not check: %w; %s", s.final, cause, strings.Join(notes, "; "))
}
