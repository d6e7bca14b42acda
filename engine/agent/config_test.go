package agent

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/testpki"
)

func TestConfigValidate(t *testing.T) {
	files := testpki.New(t).Issue(t, "agent")
	member := MemberConfig{Name: "A", Binary: "/usr/local/bin/member", DataDir: "/var/lib/mirrorkit/A"}
	tests := []struct {
		name    string
		change  func(c *Config)
		want    error
		message string
	}{
		{"token", func(c *Config) {}, nil, ""},
		{"tls", func(c *Config) { c.Token, c.TLS = "", files }, nil, ""},
		{"no authentication", func(c *Config) { c.Token = "" }, ErrNoAuth, "set token"},
		{"partial tls", func(c *Config) { c.TLS = wire.TLSFiles{Cert: files.Cert} }, ErrBadConfig, "go together"},
		{"missing tls file", func(c *Config) {
			c.TLS = files
			c.TLS.Key = filepath.Join(t.TempDir(), "none.key")
		}, ErrBadConfig, "none.key"},
		{"no listen", func(c *Config) { c.Listen = "" }, ErrBadConfig, "listen"},
		{"no members", func(c *Config) { c.Members = nil }, ErrBadConfig, "[[member]]"},
		{"bad member name", func(c *Config) { c.Members[0].Name = "a b" }, ErrBadConfig, `"a b"`},
		{"long member name", func(c *Config) { c.Members[0].Name = strings.Repeat("a", 33) }, ErrBadConfig, "1 to 32"},
		{"duplicate member", func(c *Config) { c.Members = append(c.Members, member) }, ErrBadConfig, "member A is listed twice"},
		{"no binary", func(c *Config) { c.Members[0].Binary = "" }, ErrBadConfig, "member A: no binary"},
		{"no data dir", func(c *Config) { c.Members[0].DataDir = "" }, ErrBadConfig, "member A: no data_dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Listen: DefaultListen, Token: testToken, Members: []MemberConfig{member}}
			tc.change(&cfg)
			err := cfg.Validate()
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != nil && (!errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.message)):
				t.Fatalf("Validate: %v; want %v mentioning %q", err, tc.want, tc.message)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "agent.toml", []byte(`
token = "secret"
[tls]
cert = "a.crt"
key = "a.key"
ca = "ca.crt"
[[member]]
name = "A"
binary = "/usr/local/bin/member"
args = ["run", "--config", "/etc/mirrorkit/A.toml"]
data_dir = "/var/lib/mirrorkit/A"
autostart = true
`))
	cfg, err := LoadConfig(filepath.Join(dir, "agent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Defaults()
	want := MemberConfig{Name: "A", Binary: "/usr/local/bin/member", Args: []string{"run", "--config", "/etc/mirrorkit/A.toml"},
		DataDir: "/var/lib/mirrorkit/A", Autostart: true}
	if cfg.Listen != DefaultListen || cfg.Token != "secret" || cfg.TLS != (wire.TLSFiles{Cert: "a.crt", Key: "a.key", CA: "ca.crt"}) ||
		len(cfg.Members) != 1 || !reflect.DeepEqual(cfg.Members[0], want) {
		t.Fatalf("config = %+v", cfg)
	}

	writeFile(t, dir, "typo.toml", []byte("tokn = \"x\"\n"))
	if _, err := LoadConfig(filepath.Join(dir, "typo.toml")); !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "tokn") {
		t.Fatalf("LoadConfig with an unknown key: %v", err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "none.toml")); !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "none.toml") {
		t.Fatalf("LoadConfig of a missing file: %v", err)
	}
}

func TestNewRefusesWithoutAuthentication(t *testing.T) {
	cfg := Config{Members: []MemberConfig{helperMemberConfig(t, "A", false, "serve")}}
	if _, err := New(cfg, Options{}); !errors.Is(err, ErrNoAuth) {
		t.Fatalf("New without token or tls: %v, want ErrNoAuth", err)
	}
}
