package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/server"
)

// remote is embedded by every command that talks to a member. A person names a member by its data address only; the admin
// address comes from the data port's handshake.
type remote struct {
	Member  []string      `required:"" env:"MIRRORKIT_MEMBER" help:"The member's data address host:port; repeat (or separate with commas) to name several members of a mirror: data commands go to whichever is primary."`
	Timeout time.Duration `default:"30s" help:"How long to wait for the member."`
	JSON    bool          `name:"json" help:"Print JSON."`
}

func (r *remote) context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r.Timeout)
}

func (r *remote) dial(ctx context.Context) (*client.Client, error) {
	c, err := client.DialMirror(ctx, r.Member, client.Options{Conns: 1, Name: "member-cli", RetryTimeout: r.Timeout})
	if err != nil {
		return nil, fmt.Errorf("member %s: %w", r.members(), err)
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
	return "http://" + net.JoinHostPort(host, port), nil
}

// admin calls the member's admin API and decodes the JSON answer into out.
func (r *remote) admin(ctx context.Context, method, path string, body, out any) error {
	base, err := r.adminURL(ctx)
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("member %s admin API: %w", r.members(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("member %s admin API: %w", r.members(), err)
	}
	if resp.StatusCode >= 300 {
		var eb server.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			return errors.New(eb.Error)
		}
		return fmt.Errorf("member %s admin API: %s %s: %s", r.members(), method, path, resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("member %s admin API: %s %s: bad answer: %w", r.members(), method, path, err)
	}
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
