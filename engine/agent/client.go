package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// ErrUnavailable is wrapped by a Client's errors when the agent cannot be reached or the exchange with it broke off.
var ErrUnavailable = errors.New("agent unavailable")

// maxErrorBody bounds the error body a Client reads.
const maxErrorBody = 64 << 10

// Client calls an agent's API. Its methods are safe for concurrent use; every call is bounded by its context only.
// Errors wrap ErrUnavailable, ErrUnauthorized, ErrNotFound, journal.ErrPurged, journal.ErrBadPosition, ErrBadRequest,
// ErrChecksumMismatch or ErrNoPreviousBinary as the case may be.
type Client struct {
	addr  string
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client of the agent at addr (host:port): over mutual TLS when tlsConf is set (a client
// configuration, e.g. wire.TLSFiles.ClientConfig), presenting token as a bearer token otherwise.
func NewClient(addr string, tlsConf *tls.Config, token string) *Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
		transport.TLSClientConfig = tlsConf
	}
	return &Client{addr: addr, base: scheme + "://" + addr, token: token, http: &http.Client{Transport: transport}}
}

// Members returns the status of every member the agent supervises.
func (c *Client) Members(ctx context.Context) ([]MemberStatus, error) {
	var sts []MemberStatus
	if err := c.callJSON(ctx, http.MethodGet, "/v1/members", &sts); err != nil {
		return nil, fmt.Errorf("members from agent %s: %w", c.addr, err)
	}
	return sts, nil
}

// Member returns the status of one member.
func (c *Client) Member(ctx context.Context, name string) (MemberStatus, error) {
	var st MemberStatus
	if err := c.callJSON(ctx, http.MethodGet, memberPath(name), &st); err != nil {
		return MemberStatus{}, fmt.Errorf("status of member %s from agent %s: %w", name, c.addr, err)
	}
	return st, nil
}

// Start has the agent start the member (nothing if it runs already).
func (c *Client) Start(ctx context.Context, name string) error { return c.action(ctx, name, "start") }

// Stop has the agent send the member SIGTERM and wait until it has exited.
func (c *Client) Stop(ctx context.Context, name string) error { return c.action(ctx, name, "stop") }

// Kill has the agent send the member SIGKILL and wait until it has exited: when it returns nil, the member's process is
// gone.
func (c *Client) Kill(ctx context.Context, name string) error { return c.action(ctx, name, "kill") }

// Install has the agent install the binary at source (an absolute path on the agent's host, s3://bucket/prefix/object or
// file:///dir/object) as the member's, once checked against sum (its SHA-256 in lower-case hex); with restart, a running
// member is restarted with it. A wrong checksum wraps ErrChecksumMismatch and changes nothing.
func (c *Client) Install(ctx context.Context, name, source, sum string, restart bool) (InstallResult, error) {
	var res InstallResult
	req := installRequest{Source: source, SHA256: sum, Restart: &restart}
	if err := c.exchangeJSON(ctx, http.MethodPost, memberPath(name)+"/install", req, &res); err != nil {
		return res, fmt.Errorf("install %s on member %s through agent %s: %w", source, name, c.addr, err)
	}
	return res, nil
}

// RollbackBinary has the agent swap the member's installed binary with the previous one and restart the member if it
// runs; a second rollback goes forward again. Without a previous binary it wraps ErrNoPreviousBinary.
func (c *Client) RollbackBinary(ctx context.Context, name string) (InstallResult, error) {
	var res InstallResult
	if err := c.callJSON(ctx, http.MethodPost, memberPath(name)+"/rollback-binary", &res); err != nil {
		return res, fmt.Errorf("roll back the binary of member %s through agent %s: %w", name, c.addr, err)
	}
	return res, nil
}

// Binary returns the binary the member runs with, the previous one and the configured one.
func (c *Client) Binary(ctx context.Context, name string) (BinaryInfo, error) {
	var info BinaryInfo
	if err := c.callJSON(ctx, http.MethodGet, memberPath(name)+"/binary", &info); err != nil {
		return BinaryInfo{}, fmt.Errorf("binary of member %s from agent %s: %w", name, c.addr, err)
	}
	return info, nil
}

func (c *Client) action(ctx context.Context, name, action string) error {
	if err := c.callJSON(ctx, http.MethodPost, memberPath(name)+"/"+action, nil); err != nil {
		return fmt.Errorf("%s member %s through agent %s: %w", action, name, c.addr, err)
	}
	return nil
}

// Journal fetches the frames of the member's mirror journal from `from` (the zero Position: the oldest) to the end of
// what is valid on the member's disk, as journal.Journal.AppendEncoded accepts them, and the position after the last
// frame. A position the member has purged wraps journal.ErrPurged and names the oldest one it still has.
func (c *Client) Journal(ctx context.Context, member, mirror string, from journal.Position) (frames []byte, end journal.Position, err error) {
	path := memberPath(member) + "/mirrors/" + url.PathEscape(mirror) + "/journal"
	if !from.IsZero() {
		path += "?from=" + url.QueryEscape(from.String())
	}
	frames, end, err = c.journal(ctx, path)
	if err != nil {
		return nil, journal.Position{}, fmt.Errorf("journal of mirror %s of member %s from %s through agent %s: %w", mirror, member, from, c.addr, err)
	}
	return frames, end, nil
}

func (c *Client) journal(ctx context.Context, path string) ([]byte, journal.Position, error) {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, journal.Position{}, err
	}
	defer resp.Body.Close()
	end, err := journal.ParsePosition(resp.Header.Get(HeaderJournalEnd))
	if err != nil {
		return nil, journal.Position{}, fmt.Errorf("header %s: %w", HeaderJournalEnd, err)
	}
	frames, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, journal.Position{}, fmt.Errorf("%w: read journal: %w", ErrUnavailable, err)
	}
	return frames, end, nil
}

// callJSON makes one call without a body and decodes the JSON answer into out (when not nil).
func (c *Client) callJSON(ctx context.Context, method, path string, out any) error {
	return c.exchangeJSON(ctx, method, path, nil, out)
}

// exchangeJSON makes one call with in (when not nil) as its JSON body and decodes the JSON answer into out (when not
// nil).
func (c *Client) exchangeJSON(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		// Drained so the connection can be reused.
		_, err = io.Copy(io.Discard, resp.Body)
	} else {
		err = json.NewDecoder(resp.Body).Decode(out)
	}
	if err != nil {
		return fmt.Errorf("%w: read answer: %w", ErrUnavailable, err)
	}
	return nil
}

// do sends a request, with body as JSON when not nil, and returns a 200 response; any other status is turned into an
// error.
func (c *Client) do(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var e errorBody
	if json.Unmarshal(answer, &e) != nil || e.Error == "" {
		e.Error = fmt.Sprintf("%s: %q", resp.Status, answer)
	}
	return nil, statusError(resp.StatusCode, e)
}

// statusError turns an error answer back into the sentinel the agent answered for.
func statusError(status int, e errorBody) error {
	var sentinel error
	switch {
	case status == http.StatusUnauthorized:
		sentinel = ErrUnauthorized
	case status == http.StatusNotFound:
		sentinel = ErrNotFound
	case status == http.StatusGone:
		sentinel = journal.ErrPurged
	case e.Code == codeBadPosition:
		sentinel = journal.ErrBadPosition
	case e.Code == codeChecksumMismatch:
		sentinel = ErrChecksumMismatch
	case e.Code == codeBadRequest:
		sentinel = ErrBadRequest
	case status == http.StatusConflict:
		sentinel = ErrNoPreviousBinary
	default:
		return fmt.Errorf("agent answered %d: %s", status, e.Error)
	}
	return &answerError{msg: e.Error, sentinel: sentinel}
}

// answerError is an error answer whose message already says what its sentinel means, so the sentinel is not repeated.
type answerError struct {
	msg      string
	sentinel error
}

func (e *answerError) Error() string { return e.msg }
func (e *answerError) Unwrap() error { return e.sentinel }

func memberPath(name string) string { return "/v1/members/" + url.PathEscape(name) }
