// Package mirrorctl is how the workflow tools (migrate, upgrade) see and drive a running mirror: from any member's data
// address it finds the mirror, its members and their admin APIs, and calls them (status, databases, snapshots, downloads,
// incoming copies). It holds no state of its own; the members are the truth.
package mirrorctl

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/version"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/adminapi"
)

// Options say how to reach the members.
type Options struct {
	TLS     *tls.Config   // client side of mutual TLS; nil for plain connections
	Timeout time.Duration // per admin call (transfers have none); default 30s
	Name    string        // how the tool names itself to members
}

// Fleet is one mirror's members as seen by a tool.
type Fleet struct {
	Mirror  string
	Primary string
	Members []*Member
	opts    Options
	http    *http.Client // admin calls
	stream  *http.Client // transfers: no overall timeout
}

// Member is one member of the mirror.
type Member struct {
	Name     string
	Type     string // as the monitor shows it: Failover, DR Async, ...
	DataAddr string
	AdminURL string // "" when it could not be reached
	Err      error  // why it could not be reached
	fleet    *Fleet
}

const defaultTimeout = 30 * time.Second

// ErrUnknownMember is returned for a member name the mirror does not have.
var ErrUnknownMember = errors.New("unknown member")

// Connect finds the mirror through the members at addrs (any of them will do) and resolves every member's admin API.
// mirrorName may be "" when the member belongs to exactly one mirror.
func Connect(ctx context.Context, addrs []string, mirrorName string, o Options) (*Fleet, error) {
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.Name == "" {
		o.Name = "mirrorctl"
	}
	f := &Fleet{opts: o, http: adminapi.NewClient(o.TLS, o.Timeout), stream: adminapi.NewClient(o.TLS, 0)}
	var errs []error
	for _, addr := range addrs {
		admin, err := f.adminURL(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var sts []mirror.Status
		if err := adminapi.Call(ctx, f.http, http.MethodGet, admin+"/api/v1/mirror/local", nil, &sts); err != nil {
			errs = append(errs, fmt.Errorf("member at %s: %w", addr, err))
			continue
		}
		st, err := pick(sts, mirrorName, addr)
		if err != nil {
			return nil, err
		}
		f.Mirror, f.Primary = st.Mirror, st.Primary
		for _, row := range st.Members {
			m := &Member{Name: row.Name, Type: row.Type, DataAddr: row.Addr, fleet: f}
			if m.AdminURL, m.Err = f.adminURL(ctx, row.Addr); m.Err != nil {
				m.AdminURL = ""
			}
			f.Members = append(f.Members, m)
		}
		return f, nil
	}
	return nil, fmt.Errorf("no member of the mirror could be reached at %s: %w", strings.Join(addrs, ", "), errors.Join(errs...))
}

func pick(sts []mirror.Status, name, addr string) (mirror.Status, error) {
	var names []string
	for _, st := range sts {
		if name == "" && len(sts) == 1 || strings.EqualFold(st.Mirror, name) {
			return st, nil
		}
		names = append(names, st.Mirror)
	}
	switch {
	case len(sts) == 0:
		return mirror.Status{}, fmt.Errorf("member at %s is in no mirror", addr)
	case name == "":
		return mirror.Status{}, fmt.Errorf("member at %s is in several mirrors (%s): name one with --mirror-name", addr, strings.Join(names, ", "))
	}
	return mirror.Status{}, fmt.Errorf("member at %s is not in mirror %s (it is in %s)", addr, name, strings.Join(names, ", "))
}

// adminURL asks a member's data port for its admin address; an admin port on a wildcard address is reached on the data host.
func (f *Fleet) adminURL(ctx context.Context, dataAddr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	nc, err := wire.Dial(ctx, dataAddr, f.opts.TLS)
	if err != nil {
		return "", fmt.Errorf("member at %s: %w", dataAddr, err)
	}
	c := wire.NewConn(nc, wire.DefaultMaxFrame)
	defer c.Close()
	w, err := wire.ClientHandshake(ctx, c, wire.Hello{Software: version.Software, Purpose: wire.PurposeAdmin, Name: f.opts.Name})
	if err != nil {
		return "", wire.ExplainTLSError(fmt.Errorf("member at %s: %w", dataAddr, err), dataAddr)
	}
	host, port, err := net.SplitHostPort(w.AdminAddr)
	if err != nil {
		return "", fmt.Errorf("member at %s announced a bad admin address %q", dataAddr, w.AdminAddr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host, _, _ = net.SplitHostPort(dataAddr)
	}
	return adminapi.BaseURL(net.JoinHostPort(host, port), f.opts.TLS), nil
}

// Member returns the named member.
func (f *Fleet) Member(name string) (*Member, error) {
	for _, m := range f.Members {
		if strings.EqualFold(m.Name, name) {
			return m, nil
		}
	}
	names := make([]string, 0, len(f.Members))
	for _, m := range f.Members {
		names = append(names, m.Name)
	}
	return nil, fmt.Errorf("%w %s in mirror %s (members: %s)", ErrUnknownMember, name, f.Mirror, strings.Join(names, ", "))
}

// PrimaryMember is the member the mirror's configuration names as primary.
func (f *Fleet) PrimaryMember() (*Member, error) { return f.Member(f.Primary) }

// Others are the members other than the primary, backup first, then DR asyncs, then reporting asyncs.
func (f *Fleet) Others() []*Member {
	var out []*Member
	for _, m := range f.Members {
		if m.Name != f.Primary {
			out = append(out, m)
		}
	}
	slices.SortStableFunc(out, func(a, b *Member) int { return typeRank(a.Type) - typeRank(b.Type) })
	return out
}

func typeRank(t string) int {
	switch {
	case strings.EqualFold(t, "failover"):
		return 0
	case strings.Contains(strings.ToLower(t), "dr"):
		return 1
	}
	return 2
}

func (m *Member) call(ctx context.Context, method, path string, body, out any) error {
	if m.AdminURL == "" {
		return fmt.Errorf("member %s (%s) is not reachable: %w", m.Name, m.DataAddr, m.Err)
	}
	ctx, cancel := context.WithTimeout(ctx, m.fleet.opts.Timeout)
	defer cancel()
	if err := adminapi.Call(ctx, m.fleet.http, method, m.AdminURL+path, body, out); err != nil {
		return fmt.Errorf("member %s: %w", m.Name, err)
	}
	return nil
}

// Local is the member's own view of the mirror.
func (m *Member) Local(ctx context.Context) (mirror.Status, error) {
	var sts []mirror.Status
	if err := m.call(ctx, http.MethodGet, "/api/v1/mirror/local", nil, &sts); err != nil {
		return mirror.Status{}, err
	}
	for _, st := range sts {
		if st.Mirror == m.fleet.Mirror {
			return st, nil
		}
	}
	return mirror.Status{}, fmt.Errorf("member %s is no longer in mirror %s", m.Name, m.fleet.Mirror)
}

// DatabaseStatus is the member's status of one mirrored database ("" when it has no copy).
func (m *Member) DatabaseStatus(ctx context.Context, db string) (mirror.DatabaseStatus, error) {
	st, err := m.Local(ctx)
	if err != nil {
		return mirror.DatabaseStatus{}, err
	}
	for _, d := range st.Databases {
		if strings.EqualFold(d.Name, db) {
			return d, nil
		}
	}
	return mirror.DatabaseStatus{}, nil
}

// ErrNoDatabase is returned by Database for a database the member does not have.
var ErrNoDatabase = errors.New("no such database")

// Database describes the member's database (ErrNoDatabase when it has none).
func (m *Member) Database(ctx context.Context, db string) (store.Info, error) {
	var info store.Info
	err := m.call(ctx, http.MethodGet, "/api/v1/databases/"+url.PathEscape(db), nil, &info)
	var ae *adminapi.Error
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return store.Info{}, fmt.Errorf("member %s: %w %s", m.Name, ErrNoDatabase, db)
	}
	return info, err
}

// AddToMirror adds an existing database to the mirror on the primary (repeatable).
func (m *Member) AddToMirror(ctx context.Context, db string) (store.Info, error) {
	var info store.Info
	err := m.call(ctx, http.MethodPost, "/api/v1/databases/"+url.PathEscape(db)+"/add-to-mirror", map[string]string{"mirror": m.fleet.Mirror}, &info)
	return info, err
}

// RemoveFromMirror takes a database out of the mirror on this member (it stays as a local database).
func (m *Member) RemoveFromMirror(ctx context.Context, db string) error {
	return m.call(ctx, http.MethodPost, "/api/v1/databases/"+url.PathEscape(db)+"/remove-from-mirror", struct{}{}, nil)
}

// DeleteDatabase deletes the member's copy of a database.
func (m *Member) DeleteDatabase(ctx context.Context, db string) error {
	return m.call(ctx, http.MethodDelete, "/api/v1/databases/"+url.PathEscape(db), nil, nil)
}

// Download makes the member fetch a copy of a database from another member (from "" lets it choose).
func (m *Member) Download(ctx context.Context, db, from string) (mirror.DownloadStatus, error) {
	var st mirror.DownloadStatus
	err := m.call(ctx, http.MethodPost, "/api/v1/databases/"+url.PathEscape(db)+"/download", map[string]string{"mirror": m.fleet.Mirror, "from": from}, &st)
	return st, err
}

// CreateInMirror creates the database with the mirror's name on the member (on a backup or async, a database that joined
// with data is then downloaded automatically).
func (m *Member) CreateInMirror(ctx context.Context, db string) error {
	return m.call(ctx, http.MethodPost, "/api/v1/databases", map[string]string{"name": db, "mirror": m.fleet.Mirror}, nil)
}
