package mirror

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/atomicfile"
)

// Limits of MIRRORING.md §1.
const (
	MaxMembers         = 16
	MaxFailover        = 2
	MaxMirrorName      = 15
	MaxReportingMirror = 10
	DefaultQoS         = 8 * time.Second
	// DefaultAsyncHoldback is how long a disconnected async still holds back journal purges on the primary.
	DefaultAsyncHoldback = 14 * 24 * time.Hour
)

// MemberType is a member's type in a mirror.
type MemberType string

// Member types.
const (
	Failover    MemberType = "failover"
	DR          MemberType = "dr"
	ReportingRO MemberType = "reporting-ro"
	ReportingRW MemberType = "reporting-rw"
)

// ParseMemberType accepts the names used on the command line.
func ParseMemberType(s string) (MemberType, error) {
	switch t := MemberType(strings.ToLower(s)); t {
	case Failover, DR, ReportingRO, ReportingRW:
		return t, nil
	}
	return "", fmt.Errorf("member type %q: want failover, dr, reporting-ro or reporting-rw", s)
}

// IsAsync reports whether members of this type are asyncs.
func (t MemberType) IsAsync() bool { return t != Failover }

// IsReporting reports whether members of this type are reporting asyncs.
func (t MemberType) IsReporting() bool { return t == ReportingRO || t == ReportingRW }

// Label is the type as the Mirror Monitor shows it.
func (t MemberType) Label() string {
	switch t {
	case Failover:
		return "Failover"
	case DR:
		return "Disaster Recovery"
	case ReportingRO:
		return "Read-Only Reporting"
	case ReportingRW:
		return "Read-Write Reporting"
	}
	return string(t)
}

// MemberConfig is one member as the mirror knows it.
type MemberConfig struct {
	Name      string     `json:"name"`
	Addr      string     `json:"addr"`       // data address other members dial
	AdminAddr string     `json:"admin_addr"` // admin HTTP address
	Type      MemberType `json:"type"`
	DN        string     `json:"dn,omitempty"` // certificate subject DN, in a mirror that requires TLS
	// AgentAddr is the address of the host agent that supervises this member ("" when it has none): the other failover
	// member asks it whether this member is down, has it forced down and fetches its journal from it.
	AgentAddr string `json:"agent_addr,omitempty"`
	// Software and Level are the member's software version and format level as the primary last saw them (when it
	// connected, or when it became primary); empty and 0 until then.
	Software string `json:"software,omitempty"`
	Level    int    `json:"format_level,omitempty"`
}

// EpochStart records where an epoch's records begin in the mirror journal: a member whose journal holds records of an
// older epoch past Start has a tail the mirror never had, and must cut it back to Start.
type EpochStart struct {
	Epoch   uint64           `json:"epoch"`
	Primary string           `json:"primary"`
	Start   journal.Position `json:"start"`
}

// maxEpochHistory bounds Config.Epochs; older entries only matter to members that were away for that many failovers.
const maxEpochHistory = 64

// PendingMember is a member whose certificate waits for an operator's authorization on the primary.
type PendingMember struct {
	Member MemberConfig `json:"member"`
	DN     string       `json:"dn"`
	Since  time.Time    `json:"since"`
}

// Config is a mirror's configuration. The primary owns it and pushes every change (Version+1) to the other members, which
// persist it; a member that restarts rejoins with the role its persisted configuration gives it.
type Config struct {
	Name                string         `json:"name"`
	Version             uint64         `json:"version"`
	Epoch               uint64         `json:"epoch"`
	Primary             string         `json:"primary"` // member name of the primary in Epoch
	QoS                 Duration       `json:"qos"`
	CompressionFailover string         `json:"compression_failover"` // none, lz4, zstd, or "" (system selected: lz4)
	CompressionAsync    string         `json:"compression_async"`    // none, lz4, zstd, or "" (system selected: zstd)
	RequireTLS          bool           `json:"require_tls"`
	AsyncHoldback       Duration       `json:"async_holdback"`
	Members             []MemberConfig `json:"members"`
	Databases           []string       `json:"databases"` // mirrored databases on the primary
	// Created is, for each mirrored database, the mirror journal position right after its create marker: where a new
	// copy on another member starts.
	Created map[string]journal.Position `json:"created,omitempty"`
	// Added is, for each database that joined the mirror with existing data, the mirror journal position right after its
	// add marker. Other members cannot start such a database empty: they need a copy (restore, file copy or download).
	Added map[string]journal.Position `json:"added,omitempty"`
	// AddedHash is the logical hash of such a database at its add position, when the primary computed it: a copy that
	// joins the mirror at that position in place (a converted shadow copy) must match it.
	AddedHash  map[string]store.LogicalHash `json:"added_hash,omitempty"`
	Removed    []string                     `json:"removed,omitempty"`    // databases removed from the mirror on the primary
	Authorized []string                     `json:"authorized,omitempty"` // certificate DNs an operator authorized (TLS mirrors)
	Pending    []PendingMember              `json:"pending,omitempty"`    // members waiting for authorization (TLS mirrors)
	// Arbiter is the arbiter's address ("" when the mirror has none: failover is then agent controlled only).
	Arbiter string `json:"arbiter,omitempty"`
	// Epochs is where each recent epoch started, oldest first.
	Epochs []EpochStart `json:"epochs,omitempty"`
	// NotValidated lists former failover members that a promotion without them could not reach: they may hold journal
	// data the mirror does not, and must not start as primary (they rejoin as DR asyncs or are rebuilt).
	NotValidated []string `json:"not_validated,omitempty"`
	// PrimaryLevel is the highest format level of a member that has been primary of this mirror (0: level 1). A failover
	// or DR member of a lower level may neither become primary nor receive the journal until it is upgraded (MIRRORING.md
	// §11); only an upgrade rollback lowers it, and never below FinalizedLevel. PrimarySoftware is that member's version.
	PrimaryLevel    int    `json:"primary_level,omitempty"`
	PrimarySoftware string `json:"primary_software,omitempty"`
	// FinalizedLevel is the format level an operator finalized once every member ran it (0: none, level 1): the mirror
	// journal is written in that level's record format from then on, and no member of a lower level may join.
	FinalizedLevel int       `json:"finalized_level,omitempty"`
	FinalizedAt    time.Time `json:"finalized_at,omitzero"`
}

// forkPoint is where a member whose journal ends at end (carrying the epoch of its last record) must cut it back to, to
// follow this configuration's history: the start of the first epoch after end's, when that lies before end.
func (c *Config) forkPoint(end journal.Position) (journal.Position, bool) {
	for _, e := range c.Epochs {
		if e.Epoch > end.Epoch {
			if e.Start.Less(end) {
				return e.Start, true
			}
			return journal.Position{}, false
		}
	}
	return journal.Position{}, false
}

// addEpoch appends the start of a new epoch to the history.
func (c *Config) addEpoch(e EpochStart) {
	c.Epochs = append(c.Epochs, e)
	if n := len(c.Epochs) - maxEpochHistory; n > 0 {
		c.Epochs = slices.Delete(c.Epochs, 0, n)
	}
}

// Duration is a time.Duration that JSON and TOML write as text.
type Duration struct{ time.Duration }

// MarshalText prints the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a duration such as "2s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	d.Duration = v
	return nil
}

// CanonicalMirrorName validates a mirror name (1 to 15 letters or digits) and returns it upper-cased.
func CanonicalMirrorName(name string) (string, error) {
	if name == "" || len(name) > MaxMirrorName {
		return "", fmt.Errorf("mirror name %q must be 1 to %d letters or digits: %w", name, MaxMirrorName, wire.ErrInvalidName)
	}
	for i, c := range name {
		if !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return "", fmt.Errorf("mirror name %q: character %q at %d is not a letter or digit: %w", name, c, i+1, wire.ErrInvalidName)
		}
	}
	return strings.ToUpper(name), nil
}

// Member returns the named member.
func (c *Config) Member(name string) (MemberConfig, bool) {
	for _, m := range c.Members {
		if m.Name == name {
			return m, true
		}
	}
	return MemberConfig{}, false
}

// Validate checks the mirror rules of MIRRORING.md §1.
func (c *Config) Validate() error {
	if _, err := CanonicalMirrorName(c.Name); err != nil {
		return err
	}
	if len(c.Members) > MaxMembers {
		return fmt.Errorf("mirror %s: %d members, at most %d", c.Name, len(c.Members), MaxMembers)
	}
	failover := 0
	seen := map[string]bool{}
	for _, m := range c.Members {
		if seen[m.Name] {
			return fmt.Errorf("mirror %s: member %s listed twice", c.Name, m.Name)
		}
		seen[m.Name] = true
		if m.Type == Failover {
			failover++
		}
	}
	if failover > MaxFailover {
		return fmt.Errorf("mirror %s: %d failover members, at most %d", c.Name, failover, MaxFailover)
	}
	if p, ok := c.Member(c.Primary); !ok || p.Type != Failover {
		return fmt.Errorf("mirror %s: primary %q is not a failover member", c.Name, c.Primary)
	}
	return nil
}

// backup returns the failover member that is not the primary, if any.
func (c *Config) backup() (MemberConfig, bool) {
	for _, m := range c.Members {
		if m.Type == Failover && m.Name != c.Primary {
			return m, true
		}
	}
	return MemberConfig{}, false
}

// codecFor is the stream compression for a member of type t.
func (c *Config) codecFor(t MemberType) (wire.Codec, error) {
	name, def := c.CompressionFailover, wire.CodecLZ4
	if t.IsAsync() {
		name, def = c.CompressionAsync, wire.CodecZstd
	}
	if name == "" {
		return def, nil
	}
	return wire.ParseCodec(name)
}

func (c Config) clone() Config {
	c.Members = slices.Clone(c.Members)
	c.Databases = slices.Clone(c.Databases)
	c.Removed = slices.Clone(c.Removed)
	c.Created = maps.Clone(c.Created)
	c.Added = maps.Clone(c.Added)
	c.AddedHash = maps.Clone(c.AddedHash)
	c.Authorized = slices.Clone(c.Authorized)
	c.Pending = slices.Clone(c.Pending)
	c.Epochs = slices.Clone(c.Epochs)
	c.NotValidated = slices.Clone(c.NotValidated)
	return c
}

// localState is what one member persists about one mirror: the configuration it last saw and its own settings.
type localState struct {
	Config           Config   `json:"config"`
	NoFailover       bool     `json:"no_failover"`
	MirroringStopped bool     `json:"mirroring_stopped"`
	DejournalPaused  bool     `json:"dejournal_paused"`
	PausedDatabases  []string `json:"paused_databases,omitempty"`
	// Received is, on the primary, what each other member last had (purge holdback).
	Received map[string]received `json:"received,omitempty"`
	// RollbackTo is set while this member must cut its mirror journal back to this position and undo what its databases
	// applied beyond it (a former primary's divergent tail); it is cleared once that is done.
	RollbackTo *journal.Position `json:"rollback_to,omitempty"`
	// RollbackRefused says why the last rollback was refused (too large): the member must be rebuilt.
	RollbackRefused string `json:"rollback_refused,omitempty"`
	// VersionRefused is why the primary last refused this member the journal for its version (MIRRORING.md §11), until a
	// primary accepts it again: such a member does not know the mirror's newer configuration, and must not become
	// primary on its own word.
	VersionRefused string `json:"version_refused,omitempty"`
	// Downloads are the database copies this member is to fetch from other members, until each is activated.
	Downloads []DownloadRequest `json:"downloads,omitempty"`
}

const stateFile = "state.json"

func loadState(dir string) (localState, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return localState{}, fmt.Errorf("mirror state in %s: %w", dir, err)
	}
	var st localState
	if err := json.Unmarshal(data, &st); err != nil {
		return localState{}, fmt.Errorf("mirror state %s is malformed: %w", filepath.Join(dir, stateFile), err)
	}
	if err := st.Config.Validate(); err != nil {
		return localState{}, fmt.Errorf("mirror state %s: %w", filepath.Join(dir, stateFile), err)
	}
	return st, nil
}

func saveState(dir string, st localState) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return atomicfile.WriteJSON(filepath.Join(dir, stateFile), st)
}
