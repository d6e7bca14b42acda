package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// maxMirrorName is the longest mirror name (MIRRORING.md §1).
const maxMirrorName = 15

// MirrorRole is what a member's persisted state of one mirror says: the epoch, the primary in it and so the role the
// member holds. It is read from the files, so it is what the member would resume with, whether it runs or not.
type MirrorRole struct {
	Mirror  string `json:"mirror"`
	Epoch   uint64 `json:"epoch"`
	Primary string `json:"primary"`
	Role    string `json:"role"`            // primary, backup, async or none
	Error   string `json:"error,omitempty"` // the state file could not be read
}

// mirrorState is the part of a member's DATA/mirrors/<NAME>/state.json the agent reads.
type mirrorState struct {
	Config struct {
		Epoch   uint64 `json:"epoch"`
		Primary string `json:"primary"`
		Members []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"members"`
	} `json:"config"`
}

// role says what the state makes member: the primary of the epoch, a failover member that is not it (the backup), any
// other member (an async), or not a member at all.
func (st *mirrorState) role(member string) string {
	if st.Config.Primary == member {
		return "primary"
	}
	for _, m := range st.Config.Members {
		if m.Name == member {
			if m.Type == "failover" {
				return "backup"
			}
			return "async"
		}
	}
	return "none"
}

func mirrorsDir(dataDir string) string { return filepath.Join(dataDir, "mirrors") }

// readMirrors reads the state of every mirror in the member's data directory. A directory without a state file is not
// (or no longer) a mirror and is left out; a state file that cannot be read is reported in its entry.
func readMirrors(dataDir, member string) ([]MirrorRole, error) {
	entries, err := os.ReadDir(mirrorsDir(dataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return []MirrorRole{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mirrors of member %s: %w", member, err)
	}
	roles := []MirrorRole{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		path := filepath.Join(mirrorsDir(dataDir), e.Name(), "state.json")
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		r := MirrorRole{Mirror: e.Name()}
		var st mirrorState
		if err == nil {
			err = json.Unmarshal(data, &st)
		}
		if err != nil {
			r.Error = fmt.Sprintf("mirror state %s: %v", path, err)
		} else {
			r.Epoch, r.Primary, r.Role = st.Config.Epoch, st.Config.Primary, st.role(member)
		}
		roles = append(roles, r)
	}
	slices.SortFunc(roles, func(a, b MirrorRole) int { return strings.Compare(a.Mirror, b.Mirror) })
	return roles, nil
}

// mirrorJournalDir returns the journal directory of a mirror of the member, which must exist. Mirror names are stored
// upper-case; a name that is not a mirror name cannot be one of the member's mirrors (nor escape its directory).
func mirrorJournalDir(dataDir, member, mirror string) (string, error) {
	canon := strings.ToUpper(mirror)
	valid := canon != "" && len(canon) <= maxMirrorName && strings.IndexFunc(canon, func(c rune) bool {
		return !((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
	}) < 0
	if !valid {
		return "", fmt.Errorf("member %s has no mirror %q: %w", member, mirror, ErrNotFound)
	}
	dir := filepath.Join(mirrorsDir(dataDir), canon, "journal")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("member %s has no journal of mirror %s in %s: %w", member, canon, dataDir, ErrNotFound)
	} else if err != nil {
		return "", fmt.Errorf("journal of mirror %s of member %s: %w", canon, member, err)
	}
	return dir, nil
}

// journalRange is what readJournal found: the frames from the requested position to the valid end on disk, the oldest
// position present and the position after the last frame.
type journalRange struct {
	Frames     []byte
	First, End journal.Position
}

// readJournal reads the record frames of the journal in dir from `from` (the zero Position: the oldest) to the end of
// what is valid on disk, with the journal package's offline reading: a torn tail of the last segment is left out, as
// recovery would cut it, and any other damage is journal.ErrCorrupt naming file and offset. Records are re-encoded with
// journal.AppendRecord, which gives back the bytes on disk. A position before the oldest segment is journal.ErrPurged
// naming the oldest position; one that is not a record boundary, or lies past the end, is journal.ErrBadPosition.
func readJournal(dir string, from journal.Position) (journalRange, error) {
	report, err := journal.Check(vfs.Default, dir)
	if err != nil {
		return journalRange{}, err
	}
	r := journalRange{First: report.First}
	var last journal.Record
	records := 0
	err = journal.Dump(vfs.Default, dir, from, func(rec journal.Record) error {
		r.Frames = journal.AppendRecord(r.Frames, &rec)
		last = rec
		records++
		return nil
	})
	if err != nil {
		return journalRange{}, err
	}
	switch {
	case records > 0:
		r.End = journal.Position{Epoch: last.Pos.Epoch, Segment: last.Pos.Segment, Offset: last.Pos.Offset + uint64(last.Size())}
	case from.IsZero() || from.Less(report.End):
		// Nothing after from: it is the end, or the start of a segment at the end.
		r.End = report.End
	default:
		// A running member appended between the check and the dump, and from is that newer end.
		r.End = from
	}
	return r, nil
}
