package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/adminapi"
)

// remote is embedded by every command that talks to a member. A person names a member by its data address only; the admin
// address comes from the data port's handshake.
type remote struct {
	Member  []string      `required:"" env:"MIRRORKIT_MEMBER" help:"The member's data address host:port; repeat (or separate with commas) to name several members of a mirror: data commands go to whichever is primary."`
	Timeout time.Duration `default:"30s" help:"How long to wait for the member."`
	JSON    bool          `name:"json" help:"Print JSON."`
	TLSCert string        `name:"tls-cert" env:"MIRRORKIT_TLS_CERT" type:"path" help:"Client certificate, for members that require TLS."`
	TLSKey  string        `name:"tls-key" env:"MIRRORKIT_TLS_KEY" type:"path" help:"Client certificate key."`
	TLSCA   string        `name:"tls-ca" env:"MIRRORKIT_TLS_CA" type:"path" help:"CA bundle that signs the members' certificates."`
}

// tlsConfig is the client side of mutual TLS when certificate files are given.
func (r *remote) tlsConfig() (*tls.Config, error) {
	files := wire.TLSFiles{Cert: r.TLSCert, Key: r.TLSKey, CA: r.TLSCA}
	if !files.Enabled() && r.TLSCert == "" && r.TLSKey == "" && r.TLSCA == "" {
		return nil, nil
	}
	if err := files.Validate(); err != nil {
		return nil, usageError{Err: fmt.Errorf("tls: %w", err)}
	}
	return files.ClientConfig()
}

func (r *remote) context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r.Timeout)
}

func (r *remote) dial(ctx context.Context) (*client.Client, error) {
	tlsConf, err := r.tlsConfig()
	if err != nil {
		return nil, err
	}
	c, err := client.DialMirror(ctx, r.Member, client.Options{Conns: 1, Name: "member-cli", RetryTimeout: r.Timeout, TLS: tlsConf})
	if err != nil {
		return nil, wire.ExplainTLSError(fmt.Errorf("member %s: %w", r.members(), err), r.members())
	}
	return c, nil
}

func (r *remote) members() string { return strings.Join(r.Member, ",") }

// adminURL asks the member for its admin address. An admin port bound to a wildcard address is reached on the data host.
func (r *remote) adminURL(ctx context.Context) (string, error) {
	c, err := r.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	admin := c.Welcome().AdminAddr
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return "", fmt.Errorf("member %s announced a bad admin address %q", c.Current(), admin)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		dataHost, _, _ := net.SplitHostPort(c.Current())
		host = dataHost
	}
	tlsConf, err := r.tlsConfig()
	if err != nil {
		return "", err
	}
	return adminapi.BaseURL(net.JoinHostPort(host, port), tlsConf), nil
}

// admin calls the member's admin API and decodes the JSON answer into out.
func (r *remote) admin(ctx context.Context, method, path string, body, out any) error {
	base, err := r.adminURL(ctx)
	if err != nil {
		return err
	}
	tlsConf, err := r.tlsConfig()
	if err != nil {
		return err
	}
	err = adminapi.Call(ctx, adminapi.NewClient(tlsConf, 0), method, base+path, body, out)
	var ae *adminapi.Error
	if err != nil && !errors.As(err, &ae) {
		return fmt.Errorf("member %s admin API: %w", r.members(), err)
	}
	return err
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
