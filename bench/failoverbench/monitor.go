package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
)

// pollInterval is how often a wait re-reads the members' state: short next to the pauses being measured.
const pollInterval = 20 * time.Millisecond

// requestTimeout bounds one admin API call; a member slower than this under load is treated as not answering.
const requestTimeout = 5 * time.Second

var (
	// ErrNoPrimary is returned when no member of the mirror says it is primary.
	ErrNoPrimary = errors.New("no member is primary")
	// ErrNotReady is returned when a backup did not become Active, or an async did not catch up, in time.
	ErrNotReady = errors.New("mirror not ready")
)

// monitor reads a mirror's state from its members' admin APIs, the same JSON `member status --json` prints.
// It is used by one goroutine at a time.
type monitor struct {
	mirror  string   // as the members print it (upper-case)
	members []string // data addresses
	http    *http.Client
	admin   map[string]string // data address → admin base URL, learnt from the data port's handshake
}

func newMonitor(name string, members []string) *monitor {
	return &monitor{mirror: strings.ToUpper(name), members: members, http: &http.Client{Timeout: requestTimeout},
		admin: map[string]string{}}
}

// adminURL asks the member at addr for its admin address, as the member command line does.
func (m *monitor) adminURL(ctx context.Context, addr string) (string, error) {
	if u, ok := m.admin[addr]; ok {
		return u, nil
	}
	c, err := client.Dial(ctx, addr, client.Options{Conns: 1, Name: "failoverbench", RetryTimeout: requestTimeout})
	if err != nil {
		return "", fmt.Errorf("member %s: %w", addr, err)
	}
	admin := c.Welcome().AdminAddr
	if err := c.Close(); err != nil {
		return "", fmt.Errorf("member %s: %w", addr, err)
	}
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return "", fmt.Errorf("member %s announced a bad admin address %q", addr, admin)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host, _, _ = net.SplitHostPort(addr)
	}
	u := "http://" + net.JoinHostPort(host, port)
	m.admin[addr] = u
	return u, nil
}

// get decodes the answer to GET path on the admin API of the member at addr into out.
func (m *monitor) get(ctx context.Context, addr, path string, out any) error {
	base, err := m.adminURL(ctx, addr)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return fmt.Errorf("member %s: %w", addr, err)
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return fmt.Errorf("member %s admin API: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("member %s admin API: GET %s: %w", addr, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("member %s admin API: GET %s: %s: %s", addr, path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("member %s admin API: GET %s: bad answer: %w", addr, path, err)
	}
	return nil
}

// view returns the mirror as the member at addr shows it: its own view (path /api/v1/mirror/local) or the merged Mirror
// Monitor (path /api/v1/mirror/status).
func (m *monitor) view(ctx context.Context, addr, path string) (mirror.Status, error) {
	var all []mirror.Status
	if err := m.get(ctx, addr, path, &all); err != nil {
		return mirror.Status{}, err
	}
	for _, st := range all {
		if st.Mirror == m.mirror {
			return st, nil
		}
	}
	return mirror.Status{}, fmt.Errorf("member %s is not a member of mirror %s", addr, m.mirror)
}

// primary finds the member acting as primary: among the members' own views, the one with the primary role in the highest
// epoch (a former primary that has not yet heard of its successor has a lower one).
func (m *monitor) primary(ctx context.Context) (string, mirror.Status, error) {
	var (
		best     mirror.Status
		bestAddr string
		errs     []error
	)
	for _, addr := range m.members {
		st, err := m.view(ctx, addr, "/api/v1/mirror/local")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Role == mirror.RolePrimary.String() && (bestAddr == "" || st.Epoch > best.Epoch) {
			best, bestAddr = st, addr
		}
	}
	if bestAddr == "" {
		return "", mirror.Status{}, fmt.Errorf("mirror %s on %s: %w", m.mirror, strings.Join(m.members, ", "),
			errors.Join(append([]error{ErrNoPrimary}, errs...)...))
	}
	return bestAddr, best, nil
}

// notReady says which member keeps the mirror from being ready, as the primary st sees it: every failover member other
// than the primary must be an Active backup and every async caught up. It returns "" when the mirror is ready.
func notReady(st mirror.Status) string {
	var out []string
	for _, r := range st.Members {
		if r.Name == st.Primary {
			continue
		}
		want := mirror.CaughtUp
		if r.Type == mirror.Failover.Label() {
			want = mirror.TransferActive
		}
		if r.JournalTransfer != want {
			out = append(out, fmt.Sprintf("%s is %s, journal transfer %q (want %q)", r.Name, r.Status, r.JournalTransfer, want))
		}
	}
	return strings.Join(out, "; ")
}

// waitReady waits until the mirror has a primary whose backups are Active and whose asyncs are caught up, and returns the
// primary's data address and view.
func (m *monitor) waitReady(ctx context.Context, timeout time.Duration) (string, mirror.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		addr, st, err := m.primary(ctx)
		if err == nil {
			why := notReady(st)
			if why == "" {
				return addr, st, nil
			}
			err = fmt.Errorf("primary %s in epoch %d: %s", st.Primary, st.Epoch, why)
		}
		last = err
		select {
		case <-tick.C:
		case <-ctx.Done():
			return "", mirror.Status{}, fmt.Errorf("mirror %s after %v: %w: %w", m.mirror, timeout, ErrNotReady, last)
		}
	}
}

// holdInterval is how often hold checks the mirror; coarser than pollInterval to load the primary less while it is measured.
const holdInterval = 100 * time.Millisecond

// ErrNotHeld is returned when the mirror stopped being ready while hold watched it.
var ErrNotHeld = errors.New("mirror did not stay ready")

// hold checks for d that primary stays primary with every backup Active and every async caught up.
func (m *monitor) hold(ctx context.Context, primary string, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	start := time.Now()
	tick := time.NewTicker(holdInterval)
	defer tick.Stop()
	for time.Since(start) < d {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		_, st, err := m.primary(ctx)
		if err == nil {
			if st.Primary != primary {
				err = fmt.Errorf("%s is primary in epoch %d instead of %s", st.Primary, st.Epoch, primary)
			} else if why := notReady(st); why != "" {
				err = fmt.Errorf("primary %s in epoch %d: %s", st.Primary, st.Epoch, why)
			}
		}
		if err != nil {
			return fmt.Errorf("mirror %s after %v of %v: %w: %w", m.mirror, time.Since(start).Round(time.Millisecond), d, ErrNotHeld, err)
		}
	}
	return nil
}

// addrsPrimaryFirst lists the members with primary first, the order a mirror-aware client tries them in.
func addrsPrimaryFirst(members []string, primary string) []string {
	out := []string{primary}
	for _, a := range members {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
