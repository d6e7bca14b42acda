package agent

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/BurntSushi/toml"

	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// DefaultListen is the agent's address when neither the configuration nor a flag sets one.
const DefaultListen = "127.0.0.1:7400"

// maxMemberName is the longest member name (MIRRORING.md §1).
const maxMemberName = 32

var (
	// ErrNoAuth means the configuration sets neither a token nor TLS files: an agent can hand out journals and kill
	// members, so it refuses to run without authenticating its callers.
	ErrNoAuth = errors.New("agent has no authentication configured")
	// ErrBadConfig is wrapped by every other configuration error; the message names the field or member at fault.
	ErrBadConfig = errors.New("bad agent configuration")
)

// Config is the agent's configuration file.
type Config struct {
	Listen string `toml:"listen"`
	// Token is the shared secret callers present as "Authorization: Bearer TOKEN" when TLS is not configured.
	Token string `toml:"token"`
	// TLS makes the port speak mutual TLS: any client certificate signed by the CA is accepted, and the token is not
	// checked.
	TLS     wire.TLSFiles  `toml:"tls"`
	Members []MemberConfig `toml:"member"`
}

// MemberConfig is one supervised member.
type MemberConfig struct {
	Name    string   `toml:"name"`
	Binary  string   `toml:"binary"`   // the member binary
	Args    []string `toml:"args"`     // its arguments, e.g. run --config FILE
	DataDir string   `toml:"data_dir"` // the member's data directory, read for its mirrors' state and journals
	// Log is the file the member's stdout and stderr are appended to; empty: the agent's own stderr.
	Log string `toml:"log"`
	// Autostart starts the member with the agent, and again whenever it exits unless the agent stopped or killed it.
	Autostart bool `toml:"autostart"`
}

// LoadConfig reads a TOML configuration file. Unknown keys are errors, so a misspelt key is not silently ignored. The
// result is not validated: flags may still change it.
func LoadConfig(path string) (Config, error) {
	var cfg Config
	md, err := toml.DecodeFile(path, &cfg)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, fmt.Errorf("agent config file %s does not exist: %w", path, ErrBadConfig)
	}
	if err != nil {
		return cfg, fmt.Errorf("agent config file %s: %w: %w", path, ErrBadConfig, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		return cfg, fmt.Errorf("agent config file %s: unknown key %q: %w", path, undecoded[0].String(), ErrBadConfig)
	}
	return cfg, nil
}

// Defaults fills in the listen address when none is set.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
}

// Validate checks the configuration: authentication (a token or a complete, valid set of TLS files), and members with
// valid, unique names, a binary and a data directory. Errors wrap ErrNoAuth or ErrBadConfig.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return fmt.Errorf("listen: no address set: %w", ErrBadConfig)
	}
	if c.TLS != (wire.TLSFiles{}) && !c.TLS.Enabled() {
		return fmt.Errorf("tls: cert, key and ca go together: %w", ErrBadConfig)
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("tls: %w: %w", ErrBadConfig, err)
	}
	if c.Token == "" && !c.TLS.Enabled() {
		return fmt.Errorf("set token, or [tls] cert, key and ca: %w", ErrNoAuth)
	}
	if len(c.Members) == 0 {
		return fmt.Errorf("no [[member]] to supervise: %w", ErrBadConfig)
	}
	seen := map[string]bool{}
	for i, m := range c.Members {
		if err := validMemberName(m.Name); err != nil {
			return fmt.Errorf("member %d: %w: %w", i+1, ErrBadConfig, err)
		}
		if seen[m.Name] {
			return fmt.Errorf("member %s is listed twice: %w", m.Name, ErrBadConfig)
		}
		seen[m.Name] = true
		if m.Binary == "" {
			return fmt.Errorf("member %s: no binary set: %w", m.Name, ErrBadConfig)
		}
		if m.DataDir == "" {
			return fmt.Errorf("member %s: no data_dir set: %w", m.Name, ErrBadConfig)
		}
	}
	return nil
}

// validMemberName checks a member name as members do: 1 to 32 letters, digits, '_' or '-'. It is repeated here because
// this package must not import engine/server.
func validMemberName(name string) error {
	if name == "" || len(name) > maxMemberName {
		return fmt.Errorf("member name %q must be 1 to %d characters", name, maxMemberName)
	}
	for i, c := range name {
		if !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-') {
			return fmt.Errorf("member name %q: character %q at %d not allowed (letters, digits, '_', '-')", name, c, i+1)
		}
	}
	return nil
}
