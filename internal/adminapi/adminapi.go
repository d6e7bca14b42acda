// Package adminapi calls a member's admin HTTP API: one JSON request and its answer, with the API's error bodies turned into
// errors that carry the member's own message. The member CLI and members talking to each other both use it; it owns nothing else.
package adminapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Error is an error answer of an admin API: the HTTP status and the member's message.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// maxBody bounds what is read of an answer.
const maxBody = 64 << 20

// NewClient returns an HTTP client for admin APIs, with the given TLS client configuration (nil: plain HTTP).
func NewClient(tlsConf *tls.Config, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	return &http.Client{Transport: tr, Timeout: timeout}
}

// BaseURL is the URL of the admin API at addr (host:port): https when TLS is used.
func BaseURL(addr string, tlsConf *tls.Config) string {
	if tlsConf != nil {
		return "https://" + addr
	}
	return "http://" + addr
}

// Call sends body (nil: none) as JSON and decodes a JSON answer into out (nil: ignore it). An answer with an error status
// becomes an *Error with the member's message.
func Call(ctx context.Context, hc *http.Client, method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if resp.StatusCode >= 300 {
		return errorOf(resp, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: bad answer: %w", method, url, err)
	}
	return nil
}

// ReadError turns an error answer (status 300 or above) into an *Error with the member's message; the caller closes the body.
func ReadError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return errorOf(resp, data)
}

func errorOf(resp *http.Response, data []byte) error {
	var eb struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
		return &Error{Status: resp.StatusCode, Message: eb.Error}
	}
	return &Error{Status: resp.StatusCode, Message: fmt.Sprintf("%s %s: %s", resp.Request.Method, resp.Request.URL, resp.Status)}
}
