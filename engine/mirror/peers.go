package mirror

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/version"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/adminapi"
)

// peerHTTP is the HTTP client for other members' admin APIs: with the member's certificate when TLS is configured.
func (m *Manager) peerHTTP() *http.Client {
	m.httpOnce.Do(func() { m.http = adminapi.NewClient(m.opts.TLS, 30*time.Second) })
	return m.http
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

// PostJSON calls another member's admin API.
func (m *Manager) PostJSON(ctx context.Context, adminAddr, path string, body, out any) error {
	err := adminapi.Call(ctx, m.peerHTTP(), http.MethodPost, adminapi.BaseURL(adminAddr, m.opts.TLS)+path, body, out)
	return wire.ExplainTLSError(err, adminAddr)
}

// GetJSON reads another member's admin API.
func (m *Manager) GetJSON(ctx context.Context, adminAddr, path string, out any) error {
	err := adminapi.Call(ctx, m.peerHTTP(), http.MethodGet, adminapi.BaseURL(adminAddr, m.opts.TLS)+path, nil, out)
	return wire.ExplainTLSError(err, adminAddr)
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
