// Package version reports what a member binary is and which formats it reads and writes: the software version (set at build
// time), the journal format, the wire protocol and the database format. Handshakes and upgrade checks compare these.
package version

import (
	"fmt"
	"runtime/debug"
	"strconv"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Software is the release version, set by the build: -ldflags "-X github.com/mirrorkit/mirrorkit/engine/version.Software=1.2.3".
var Software = "0.1.0-dev"

// level is the format level of this build, set by the build like Software:
// -ldflags "-X github.com/mirrorkit/mirrorkit/engine/version.level=1" builds a member that reads and writes only what
// format level 1 did (the journal's first record format), exactly as a release of that level behaves.
var level = "2"

// NewestLevel is the newest format level this source code knows.
const NewestLevel = 2

// Level is the format level of this build: the newest journal record format it reads. Level 2 added the record
// format that carries each record's origin member; a mirror writes it only once its upgrade is finalized.
var Level = mustLevel(level)

func mustLevel(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > NewestLevel {
		panic(fmt.Sprintf("version: build format level %q is not 1..%d", s, NewestLevel))
	}
	journal.SetMaxRecordVersion(uint8(RecordVersion(n)))
	return n
}

// RecordVersion is the journal record format a member of format level l writes once its mirror is finalized at l.
func RecordVersion(l int) int { return l }

// Describe names a software version and format level as refusals print them: "0.1.0 (format level 2)".
func Describe(software string, level int) string {
	return fmt.Sprintf("%s (format level %d)", software, level)
}

// Self describes this build.
func Self() string { return Describe(Software, Level) }

// Info is what `member version --json` prints.
type Info struct {
	Software        string `json:"software"`
	Level           int    `json:"format_level"`
	Commit          string `json:"commit,omitempty"`
	GoVersion       string `json:"go"`
	JournalFormat   int    `json:"journal_format"`
	RecordFormat    int    `json:"journal_record_format"`
	WireProtocol    int    `json:"wire_protocol"`
	WireMinProtocol int    `json:"wire_min_protocol"`
	DatabaseFormat  int    `json:"database_format"`
}

// Get returns this binary's version information.
func Get() Info {
	info := Info{
		Software:        Software,
		Level:           Level,
		RecordFormat:    int(journal.MaxRecordVersion()),
		JournalFormat:   journal.FormatVersion,
		WireProtocol:    wire.ProtocolVersion,
		WireMinProtocol: wire.MinProtocolVersion,
		DatabaseFormat:  store.FormatVersion,
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.GoVersion = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				info.Commit = s.Value
			}
		}
	}
	return info
}
