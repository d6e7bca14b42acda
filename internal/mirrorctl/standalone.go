package mirrorctl

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/server"
	"github.com/mirrorkit/mirrorkit/engine/shadow"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/adminapi"
)

// Standalone reaches members by their data addresses whether or not they belong to the mirror yet: a tool that builds a
// mirror out of them (the shadow converter) acts on them before the mirror exists. The first address is the member that is
// (or becomes) the primary; mirrorName is the mirror the fleet's membership calls (Local, DatabaseStatus, …) refer to.
func Standalone(ctx context.Context, addrs []string, mirrorName string, o Options) (*Fleet, error) {
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.Name == "" {
		o.Name = "mirrorctl"
	}
	f := &Fleet{Mirror: mirrorName, opts: o, http: adminapi.NewClient(o.TLS, o.Timeout), stream: adminapi.NewClient(o.TLS, 0)}
	for _, addr := range addrs {
		admin, err := f.adminURL(ctx, addr)
		if err != nil {
			return nil, err
		}
		m := &Member{DataAddr: addr, AdminURL: admin, fleet: f}
		st, err := m.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("member at %s: %w", addr, err)
		}
		m.Name = st.Member
		for _, other := range f.Members {
			if other.Name == m.Name {
				return nil, fmt.Errorf("%s and %s are the same member %s", other.DataAddr, addr, m.Name)
			}
		}
		f.Members = append(f.Members, m)
	}
	if len(f.Members) > 0 {
		f.Primary = f.Members[0].Name
	}
	return f, nil
}

// Status is the member's own status (databases, journal, shadows, version).
func (m *Member) Status(ctx context.Context) (server.Status, error) {
	var st server.Status
	err := m.call(ctx, http.MethodGet, "/api/v1/status", nil, &st)
	return st, err
}

// Mirrors is the member's view of every mirror it belongs to.
func (m *Member) Mirrors(ctx context.Context) ([]mirror.Status, error) {
	var sts []mirror.Status
	err := m.call(ctx, http.MethodGet, "/api/v1/mirror/local", nil, &sts)
	return sts, err
}

// InMirror returns the member's view of the fleet's mirror, and whether it belongs to it.
func (m *Member) InMirror(ctx context.Context) (mirror.Status, bool, error) {
	sts, err := m.Mirrors(ctx)
	if err != nil {
		return mirror.Status{}, false, err
	}
	for _, st := range sts {
		if strings.EqualFold(st.Mirror, m.fleet.Mirror) {
			return st, true, nil
		}
	}
	return mirror.Status{}, false, nil
}

// CreateMirror creates the fleet's mirror with this member as its primary.
func (m *Member) CreateMirror(ctx context.Context, qos string) error {
	return m.call(ctx, http.MethodPost, "/api/v1/mirrors", server.CreateMirrorRequest{Name: m.fleet.Mirror, QoS: qos}, nil)
}

// JoinMirror makes this member join the fleet's mirror as the given type, through the primary at primaryAddr.
func (m *Member) JoinMirror(ctx context.Context, primaryAddr, as string) error {
	return m.call(ctx, http.MethodPost, "/api/v1/mirrors/join", server.JoinMirrorRequest{Mirror: m.fleet.Mirror, Primary: primaryAddr, As: as}, nil)
}

// MirrorAction posts one of the per-mirror actions (leave, remove, …) to this member.
func (m *Member) MirrorAction(ctx context.Context, action string) error {
	return m.call(ctx, http.MethodPost, "/api/v1/mirrors/"+url.PathEscape(m.fleet.Mirror)+"/"+action, struct{}{}, nil)
}

// MirrorPost posts a per-mirror action with a JSON body (no-failover, allow-level, finalize, …) and decodes the answer
// into out (nil: ignored).
func (m *Member) MirrorPost(ctx context.Context, action string, body, out any) error {
	if body == nil {
		body = struct{}{}
	}
	return m.call(ctx, http.MethodPost, "/api/v1/mirrors/"+url.PathEscape(m.fleet.Mirror)+"/"+action, body, out)
}

// Shadows lists the shadows configured on this member and the streams it serves.
func (m *Member) Shadows(ctx context.Context) (server.ShadowsStatus, error) {
	var st server.ShadowsStatus
	err := m.call(ctx, http.MethodGet, "/api/v1/shadows", nil, &st)
	return st, err
}

// Shadow is one shadow's status.
func (m *Member) Shadow(ctx context.Context, name string) (shadow.Status, error) {
	var st shadow.Status
	err := m.call(ctx, http.MethodGet, "/api/v1/shadows/"+url.PathEscape(name), nil, &st)
	return st, err
}

// ShadowAction posts start, stop, suspend, resume or restart to a shadow.
func (m *Member) ShadowAction(ctx context.Context, name, action string) (shadow.Status, error) {
	var st shadow.Status
	err := m.call(ctx, http.MethodPost, "/api/v1/shadows/"+url.PathEscape(name)+"/"+action, nil, &st)
	return st, err
}

// RemoveShadow removes a stopped shadow.
func (m *Member) RemoveShadow(ctx context.Context, name string) error {
	return m.call(ctx, http.MethodDelete, "/api/v1/shadows/"+url.PathEscape(name), nil, nil)
}

// ShadowJoin makes the shadowed copy of db join the fleet's mirror in place.
func (m *Member) ShadowJoin(ctx context.Context, name, db string) (mirror.JoinResult, error) {
	var res mirror.JoinResult
	err := m.call(ctx, http.MethodPost, "/api/v1/shadows/"+url.PathEscape(name)+"/join", server.ShadowJoinRequest{DB: db, Mirror: m.fleet.Mirror}, &res)
	return res, err
}

// Hash is the logical hash of the member's copy of db.
func (m *Member) Hash(ctx context.Context, db string) (store.LogicalHash, error) {
	var h store.LogicalHash
	err := m.call(ctx, http.MethodGet, "/api/v1/databases/"+url.PathEscape(db)+"/hash", nil, &h)
	return h, err
}
