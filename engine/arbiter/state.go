package arbiter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/mirrorkit/mirrorkit/internal/atomicfile"
)

// StateFile is the name of the persisted decisions in Options.Dir; lockFile keeps a second arbiter off the same directory.
const (
	StateFile = "state.json"
	lockFile  = "LOCK"
)

// stateVersion is the format version of the state file; a file with another version is refused.
const stateVersion = 1

var (
	// ErrBadState is wrapped by every error about a state file that cannot be read as this version's format; the
	// message names the file.
	ErrBadState = errors.New("bad arbiter state file")
	// ErrLocked is returned by NewServer when another arbiter process uses the same directory.
	ErrLocked = errors.New("arbiter directory in use")
)

// record is what the arbiter has decided for one mirror: all of it is persisted before any answer that depends on it.
type record struct {
	Epoch      uint64 `json:"epoch"`
	Primary    string `json:"primary,omitempty"`
	BackupLost uint64 `json:"backup_lost,omitempty"`
}

// stateFile is the on-disk form of every mirror's record.
type stateFile struct {
	Version int               `json:"version"`
	Mirrors map[string]record `json:"mirrors"`
}

// store persists the records of every mirror in one file. Writers are serialized: each write replaces the whole file
// with the last persisted records plus one changed mirror, so concurrent decisions on different mirrors never lose
// each other's records.
type store struct {
	path string

	mu      sync.Mutex
	durable map[string]record // what the file holds
}

// openStore reads dir's state file; a missing file is an empty state.
func openStore(dir string) (*store, error) {
	st := &store{path: filepath.Join(dir, StateFile), durable: map[string]record{}}
	data, err := os.ReadFile(st.path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read arbiter state %s: %w", st.path, err)
	}
	mirrors, err := decodeState(data)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrBadState, st.path, err)
	}
	st.durable = mirrors
	return st, nil
}

// decodeState parses and checks a state file's contents.
func decodeState(data []byte) (map[string]record, error) {
	var version struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &version); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if version.Version == nil {
		return nil, errors.New("no version")
	}
	if *version.Version != stateVersion {
		return nil, fmt.Errorf("format version %d, this build reads version %d", *version.Version, stateVersion)
	}
	var f stateFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	mirrors := make(map[string]record, len(f.Mirrors))
	for name, rec := range f.Mirrors {
		canon, err := canonicalMirror(name)
		if err != nil {
			return nil, err
		}
		if canon != name {
			return nil, fmt.Errorf("mirror %q is not upper-case", name)
		}
		if rec.Primary != "" {
			if err := validMember(rec.Primary); err != nil {
				return nil, fmt.Errorf("mirror %s: primary: %w", name, err)
			}
		}
		if rec.BackupLost > rec.Epoch {
			return nil, fmt.Errorf("mirror %s: backup lost in epoch %d, after the recorded epoch %d", name, rec.BackupLost, rec.Epoch)
		}
		mirrors[name] = rec
	}
	return mirrors, nil
}

// save makes mirror's record durable: when it returns nil, a restarted arbiter loads rec for mirror.
func (st *store) save(mirror string, rec record) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	next := maps.Clone(st.durable)
	next[mirror] = rec
	if err := atomicfile.WriteJSON(st.path, stateFile{Version: stateVersion, Mirrors: next}); err != nil {
		return fmt.Errorf("persist decision for mirror %s: %w", mirror, err)
	}
	st.durable = next
	return nil
}

// lockDir takes an exclusive advisory lock on dir, held until the returned file is closed (or the process exits):
// two arbiters deciding from the same state would each grant what the other refused.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by another arbiter process", ErrLocked, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}
