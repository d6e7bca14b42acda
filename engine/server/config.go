package server

import (
	"fmt"
	"net"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// MaxMemberName is the longest member name (MIRRORING.md §1).
const MaxMemberName = 32

// Config is a member's configuration: the TOML file of `member run --config`, with every key also settable by a flag.
type Config struct {
	Name         string `toml:"name"`
	DataDir      string `toml:"data_dir"`
	Listen       string `toml:"listen"`
	AdminListen  string `toml:"admin_listen"`
	MaxValueSize int    `toml:"max_value_size"`
	// DBCompression is how databases compress their table files: fast (default), balanced or good (store.Compression).
	DBCompression string        `toml:"db_compression"`
	MaxFrame      int           `toml:"max_frame"`
	Journal       JournalConfig `toml:"journal"`
	// Peers overrides how this member reaches other members' data ports: member name → host:port.
	Peers map[string]string `toml:"peers"`
	// TLS: this member's certificate, key and the mirror's CA. When set, every port of the member speaks mutual TLS.
	TLS wire.TLSFiles `toml:"tls"`
	Log LogConfig     `toml:"log"`
	// Failover: this member's host agent and how it reaches agents and arbiters.
	Failover FailoverConfig `toml:"failover"`
}

// FailoverConfig sets what automatic failover needs on this member.
type FailoverConfig struct {
	// AgentAddr is the address of the agent on this member's host; the mirror configuration records it so the other
	// failover member can ask the agent whether this member is down, force it down and fetch its journal.
	AgentAddr string `toml:"agent_addr"`
	// AgentToken and ArbiterToken are the shared secrets presented to agents and arbiters when TLS is not configured.
	AgentToken   string `toml:"agent_token"`
	ArbiterToken string `toml:"arbiter_token"`
	// Arbiter overrides the address this member reaches the mirror's arbiter at; Agents overrides where it reaches
	// another member's agent (member name → host:port).
	Arbiter string            `toml:"arbiter"`
	Agents  map[string]string `toml:"agents"`
	// RollbackLimit is the largest divergent journal tail, in bytes, this member rolls back by itself (default 64 MiB).
	RollbackLimit int64 `toml:"rollback_limit"`
}

// JournalConfig sets journal segment size and retention.
type JournalConfig struct {
	SegmentSize   int64    `toml:"segment_size"`
	KeepSegments  int      `toml:"keep_segments"`
	MaxAge        Duration `toml:"max_age"`
	PurgeInterval Duration `toml:"purge_interval"`
}

// LogConfig sets the log level and format.
type LogConfig struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // json, console, or auto (console on a terminal)
}

// Duration is a time.Duration written as text ("30s", "24h") in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a duration such as "1m30s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	d.Duration = v
	return nil
}

// MarshalText prints the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7001"
	}
	if c.AdminListen == "" {
		c.AdminListen = "127.0.0.1:8001"
	}
	if c.MaxValueSize == 0 {
		c.MaxValueSize = store.DefaultMaxValueSize
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = wire.DefaultMaxFrame
	}
	if c.Journal.SegmentSize == 0 {
		c.Journal.SegmentSize = journal.DefaultSegmentSize
	}
	if c.Journal.KeepSegments == 0 {
		c.Journal.KeepSegments = 4
	}
	if c.Journal.MaxAge.Duration == 0 {
		c.Journal.MaxAge.Duration = 24 * time.Hour
	}
	if c.Journal.PurgeInterval.Duration == 0 {
		c.Journal.PurgeInterval.Duration = time.Minute
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "auto"
	}
}

// Validate reports the first configuration error, naming the key.
func (c *Config) Validate() error {
	if err := ValidMemberName(c.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if c.DataDir == "" {
		return fmt.Errorf("data_dir: required")
	}
	for key, addr := range map[string]string{"listen": c.Listen, "admin_listen": c.AdminListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s: %q is not host:port: %w", key, addr, err)
		}
	}
	if c.Journal.SegmentSize < 1<<20 {
		return fmt.Errorf("journal.segment_size: %d is below the minimum of 1 MiB", c.Journal.SegmentSize)
	}
	if _, err := store.ParseCompression(c.DBCompression); err != nil {
		return fmt.Errorf("db_compression: %w", err)
	}
	if c.MaxValueSize < 1 || c.MaxValueSize > 64<<20 {
		return fmt.Errorf("max_value_size: %d is outside 1 byte..64 MiB", c.MaxValueSize)
	}
	if c.MaxFrame < 64<<10 {
		return fmt.Errorf("max_frame: %d is below the minimum of 64 KiB", c.MaxFrame)
	}
	if c.MaxValueSize+(64<<10) > c.MaxFrame {
		return fmt.Errorf("max_frame: %d must exceed max_value_size (%d) by at least 64 KiB", c.MaxFrame, c.MaxValueSize)
	}
	for key, addr := range map[string]string{"failover.agent_addr": c.Failover.AgentAddr, "failover.arbiter": c.Failover.Arbiter} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s: %q is not host:port: %w", key, addr, err)
		}
	}
	for name, addr := range c.Failover.Agents {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("failover.agents.%s: %q is not host:port: %w", name, addr, err)
		}
	}
	if c.Failover.RollbackLimit < 0 {
		return fmt.Errorf("failover.rollback_limit: %d is negative", c.Failover.RollbackLimit)
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console", "auto":
	default:
		return fmt.Errorf("log.format: %q is not one of json, console, auto", c.Log.Format)
	}
	return nil
}

// ValidMemberName checks a member name: 1 to 32 letters, digits, '_' or '-'.
func ValidMemberName(name string) error {
	if name == "" || len(name) > MaxMemberName {
		return fmt.Errorf("member name %q must be 1 to %d characters", name, MaxMemberName)
	}
	for i, c := range name {
		if !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-') {
			return fmt.Errorf("member name %q: character %q at %d not allowed (letters, digits, '_', '-')", name, c, i+1)
		}
	}
	return nil
}
