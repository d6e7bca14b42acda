// Package version reports what a member binary is and which formats it reads and writes: the software version (set at build
// time), the journal format, the wire protocol and the database format. Handshakes and upgrade checks compare these.
package version

import (
	"runtime/debug"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Software is the release version, set by the build: -ldflags "-X github.com/mirrorkit/mirrorkit/engine/version.Software=1.2.3".
var Software = "0.1.0-dev"

// Info is what `member version --json` prints.
type Info struct {
	Software        string `json:"software"`
	Commit          string `json:"commit,omitempty"`
	GoVersion       string `json:"go"`
	JournalFormat   int    `json:"journal_format"`
	WireProtocol    int    `json:"wire_protocol"`
	WireMinProtocol int    `json:"wire_min_protocol"`
	DatabaseFormat  int    `json:"database_format"`
}

// Get returns this binary's version information.
func Get() Info {
	info := Info{
		Software:        Software,
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
