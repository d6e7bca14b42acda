package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/testpki"
)

func TestTokenAuthentication(t *testing.T) {
	a := newTestAgent(t, Config{Token: testToken, Members: []MemberConfig{helperMemberConfig(t, "A", false, "serve")}})
	_, srv := serveTest(t, a, "")
	paths := []struct{ method, path string }{
		{http.MethodGet, "/v1/members"},
		{http.MethodGet, "/v1/members/A"},
		{http.MethodPost, "/v1/members/A/start"},
		{http.MethodPost, "/v1/members/A/kill"},
		{http.MethodGet, "/v1/members/A/mirrors/MIR/journal"},
		{http.MethodGet, "/v1/nothing"},
	}
	headers := []struct{ name, authorization string }{
		{"no token", ""},
		{"bad token", "Bearer wrong"},
		{"token without scheme", testToken},
		{"token prefix", "Bearer " + testToken[:3]},
	}
	for _, h := range headers {
		for _, p := range paths {
			t.Run(h.name+" "+p.method+" "+p.path, func(t *testing.T) {
				req, err := http.NewRequestWithContext(testContext(t), p.method, srv.URL+p.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				if h.authorization != "" {
					req.Header.Set("Authorization", h.authorization)
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401", resp.StatusCode)
				}
			})
		}
	}
	// Refused callers did nothing: the start above was not done.
	if st, err := a.Member("A"); err != nil || st.Running {
		t.Fatalf("member after refused start: %+v, %v", st, err)
	}

	for _, token := range []string{"", "wrong"} {
		c := NewClient(srv.Listener.Addr().String(), nil, token)
		if _, err := c.Members(testContext(t)); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Members with token %q: %v, want ErrUnauthorized", token, err)
		}
	}
	c := NewClient(srv.Listener.Addr().String(), nil, testToken)
	sts, err := c.Members(testContext(t))
	if err != nil || len(sts) != 1 || sts[0].Name != "A" {
		t.Fatalf("Members with the token: %+v, %v", sts, err)
	}
}

// errAny stands for any error in test tables.
var errAny = errors.New("any error")

func TestMutualTLSAuthentication(t *testing.T) {
	pki := testpki.New(t)
	cfg := Config{TLS: pki.Issue(t, "agent"), Members: []MemberConfig{helperMemberConfig(t, "A", false, "serve")}}
	a := newTestAgent(t, cfg)
	addr := serveListener(t, a)

	other := testpki.Other(t).Issue(t, "intruder")
	intruder, err := tls.LoadX509KeyPair(other.Cert, other.Key)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		files wire.TLSFiles // none: no client certificate, or cert
		cert  *tls.Certificate
		plain bool  // plain HTTP with a token
		want  error // nil: accepted
	}{
		{name: "certificate of the CA", files: pki.Issue(t, "backup")},
		{name: "certificate of another CA", cert: &intruder, want: ErrUnavailable},
		{name: "no certificate", want: ErrUnavailable},
		{name: "plain http with a token", plain: true, want: errAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var conf *tls.Config
			switch {
			case tc.files.Enabled():
				var err error
				if conf, err = tc.files.ClientConfig(); err != nil {
					t.Fatal(err)
				}
			case !tc.plain:
				conf = &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
				if tc.cert != nil {
					conf.Certificates = []tls.Certificate{*tc.cert}
				}
			}
			sts, err := NewClient(addr, conf, testToken).Members(testContext(t))
			switch {
			case tc.want == nil && (err != nil || len(sts) != 1):
				t.Fatalf("Members: %+v, %v", sts, err)
			case tc.want == errAny && err == nil, tc.want != nil && tc.want != errAny && !errors.Is(err, tc.want):
				t.Fatalf("Members: %v, want %v", err, tc.want)
			}
		})
	}

	// Served without TLS by mistake, the handler still refuses callers without a verified certificate.
	c, _ := serveTest(t, a, "anything")
	if _, err := c.Members(testContext(t)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Members over plain HTTP of a TLS agent: %v, want ErrUnauthorized", err)
	}
}

func TestStartStopKill(t *testing.T) {
	a := newTestAgent(t, Config{Token: testToken, Members: []MemberConfig{helperMemberConfig(t, "A", false, "serve")}})
	c, _ := serveTest(t, a, testToken)
	ctx := testContext(t)

	status := func(t *testing.T) MemberStatus {
		t.Helper()
		st, err := c.Member(ctx, "A")
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := status(t); st.Running || st.PID != 0 || st.ExitStatus != "" || st.StoppedByAgent {
		t.Fatalf("status before start: %+v", st)
	}
	steps := []struct {
		name           string
		do             func(ctx context.Context, name string) error
		running        bool
		exitStatus     string
		stoppedByAgent bool
	}{
		{"start", c.Start, true, "", false},
		{"start again", c.Start, true, "", false},
		{"stop", c.Stop, false, "signal: terminated", true},
		{"stop again", c.Stop, false, "signal: terminated", true},
		{"start after stop", c.Start, true, "signal: terminated", false},
		{"kill", c.Kill, false, "signal: killed", true},
		{"kill again", c.Kill, false, "signal: killed", true},
	}
	var pid int
	for _, step := range steps {
		if err := step.do(ctx, "A"); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		st := status(t)
		if st.Running != step.running || st.ExitStatus != step.exitStatus || st.StoppedByAgent != step.stoppedByAgent ||
			(st.PID != 0) != step.running || st.Started.IsZero() {
			t.Fatalf("status after %s: %+v", step.name, st)
		}
		if st.Running {
			pid = st.PID
			if !alive(pid) {
				t.Fatalf("after %s: pid %d is not a process", step.name, pid)
			}
		} else if alive(pid) {
			t.Fatalf("after %s: pid %d still exists", step.name, pid)
		}
	}

	for _, call := range []func(ctx context.Context, name string) error{c.Start, c.Stop, c.Kill} {
		if err := call(ctx, "B"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "member B") {
			t.Fatalf("action on an unknown member: %v, want ErrNotFound naming it", err)
		}
	}
	if _, err := c.Member(ctx, "B"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status of an unknown member: %v, want ErrNotFound", err)
	}
}

func TestAutostartRestartsUntilStoppedByAgent(t *testing.T) {
	m := helperMemberConfig(t, "A", true, "once", "")
	m.Args[2] = filepath.Join(m.DataDir, "ran-once")
	m.Log = filepath.Join(m.DataDir, "member.log")
	a := newTestAgent(t, Config{Token: testToken, Members: []MemberConfig{m}})
	serveListener(t, a)

	// The first run exits 3; the agent starts it again, and the second run stays up.
	var st MemberStatus
	waitFor(t, "member A restarted after its exit", func() (bool, error) {
		var err error
		st, err = a.Member("A")
		return st.Running && st.ExitStatus == "exit status 3", err
	})
	if err := a.Kill(testContext(t), "A"); err != nil {
		t.Fatal(err)
	}
	a.sup.mu.Lock()
	pending := a.sup.members["A"].restart != nil
	a.sup.mu.Unlock()
	if st, err := a.Member("A"); err != nil || st.Running || !st.StoppedByAgent || pending {
		t.Fatalf("after kill: %+v, %v, restart pending %v", st, err, pending)
	}
}

func TestCloseLeavesMembersRunning(t *testing.T) {
	a := newTestAgent(t, Config{Token: testToken, Members: []MemberConfig{helperMemberConfig(t, "A", true, "serve")}})
	serveListener(t, a)
	var st MemberStatus
	waitFor(t, "member A autostarted", func() (bool, error) {
		var err error
		st, err = a.Member("A")
		return st.Running, err
	})
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if !alive(st.PID) {
		t.Fatalf("member pid %d gone after the agent closed", st.PID)
	}
	if err := a.Start("A"); !errors.Is(err, ErrClosed) {
		t.Fatalf("start after close: %v, want ErrClosed", err)
	}
}

func TestServeFailsWhenAutostartFails(t *testing.T) {
	m := helperMemberConfig(t, "A", true, "serve")
	m.Binary = filepath.Join(t.TempDir(), "no-such-member")
	a := newTestAgent(t, Config{Token: testToken, Members: []MemberConfig{m}})
	ln := serveListenerRaw(t)
	if err := a.Serve(ln); err == nil || !strings.Contains(err.Error(), "member A") || !strings.Contains(err.Error(), "no-such-member") {
		t.Fatalf("Serve with a missing member binary: %v", err)
	}
}

func TestMirrorRoles(t *testing.T) {
	m := helperMemberConfig(t, "A", false, "serve")
	state := func(epoch, primary string, members ...string) []byte {
		var list []string
		for _, mt := range members {
			name, typ, _ := strings.Cut(mt, ":")
			list = append(list, `{"name":"`+name+`","type":"`+typ+`","addr":"x"}`)
		}
		return []byte(`{"config":{"name":"X","epoch":` + epoch + `,"primary":"` + primary + `","members":[` + strings.Join(list, ",") +
			`]},"no_failover":false}`)
	}
	writeFile(t, m.DataDir, "mirrors/PRI/state.json", state("3", "A", "A:failover", "B:failover"))
	writeFile(t, m.DataDir, "mirrors/BAK/state.json", state("7", "B", "A:failover", "B:failover"))
	writeFile(t, m.DataDir, "mirrors/DR/state.json", state("1", "B", "B:failover", "A:dr"))
	writeFile(t, m.DataDir, "mirrors/GONE/state.json", state("2", "B", "B:failover"))
	writeFile(t, m.DataDir, "mirrors/BAD/state.json", []byte("{"))
	writeFile(t, m.DataDir, "mirrors/NEW/journal/journal.000001", nil)
	a := newTestAgent(t, Config{Token: testToken, Members: []MemberConfig{m}})
	c, _ := serveTest(t, a, testToken)
	sts, err := c.Members(testContext(t))
	if err != nil || len(sts) != 1 {
		t.Fatalf("Members: %+v, %v", sts, err)
	}
	got := sts[0].Mirrors
	if len(got) != 5 || !strings.Contains(got[0].Error, filepath.Join("BAD", "state.json")) {
		t.Fatalf("mirrors = %+v, want 5 with BAD reporting its file", got)
	}
	got[0].Error = ""
	want := []MirrorRole{
		{Mirror: "BAD"},
		{Mirror: "BAK", Epoch: 7, Primary: "B", Role: "backup"},
		{Mirror: "DR", Epoch: 1, Primary: "B", Role: "async"},
		{Mirror: "GONE", Epoch: 2, Primary: "B", Role: "none"},
		{Mirror: "PRI", Epoch: 3, Primary: "A", Role: "primary"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("mirrors = %+v, want %+v", got, want)
	}
}
