package mirror

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/version"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// peerHTTP is the HTTP client for other members' admin APIs: with the member's certificate when TLS is configured.
func (m *Manager) peerHTTP() *http.Client {
	m.httpOnce.Do(func() {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = m.opts.TLS
		m.http = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	})
	return m.http
}

// adminURL is the base URL of a member's admin API.
func (m *Manager) adminURL(adminAddr string) string {
	if m.opts.TLS != nil {
		return "https://" + adminAddr
	}
	return "http://" + adminAddr
}

// AdminAddrOf asks a member's data port for its admin address.
func (m *Manager) AdminAddrOf(ctx context.Context, dataAddr string) (string, error) {
	nc, err := wire.Dial(ctx, dataAddr, m.opts.TLS)
	if err != nil {
		return "", fmt.Errorf("member at %s: %w", dataAddr, err)
	}
	c := wire.NewConn(nc, wire.DefaultMaxFrame)
	defer c.Close()
	w, err := wire.ClientHandshake(ctx, c, wire.Hello{Software: version.Software, Purpose: wire.PurposeAdmin, Name: m.opts.Self})
	if err != nil {
		return "", wire.ExplainTLSError(fmt.Errorf("member at %s: %w", dataAddr, err), dataAddr)
	}
	return w.AdminAddr, nil
}

// APIError is an error answer of a member's admin API.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

// PostJSON calls another member's admin API.
func (m *Manager) PostJSON(ctx context.Context, adminAddr, path string, body, out any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.adminURL(adminAddr)+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return m.do(req, out)
}

// GetJSON reads another member's admin API.
func (m *Manager) GetJSON(ctx context.Context, adminAddr, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.adminURL(adminAddr)+path, nil)
	if err != nil {
		return err
	}
	return m.do(req, out)
}

func (m *Manager) do(req *http.Request, out any) error {
	resp, err := m.peerHTTP().Do(req)
	if err != nil {
		return wire.ExplainTLSError(err, req.URL.Host)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			return &APIError{Status: resp.StatusCode, Message: eb.Error}
		}
		return &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("%s %s: %s", req.Method, req.URL, resp.Status)}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// tlsPeerDN is the verified client certificate DN of an admin request, "" without TLS.
func tlsPeerDN(state *tls.ConnectionState) string {
	if state == nil || len(state.PeerCertificates) == 0 {
		return ""
	}
	return state.PeerCertificates[0].Subject.String()
}

// RequestDN is the verified client certificate DN of an admin HTTP request.
func RequestDN(r *http.Request) string { return tlsPeerDN(r.TLS) }
