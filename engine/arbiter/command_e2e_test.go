package arbiter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mirrorkit/mirrorkit/internal/memberproc"
)

func TestMain(m *testing.M) {
	code := m.Run()
	memberproc.RemoveBuilds()
	os.Exit(code)
}

func TestMemberArbiterCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "arbiter")
	addr := memberproc.FreeAddr(t, "127.0.0.1")
	p := memberproc.StartProcess(t, "arbiter serving", "arbiter", "--log-format", "json", "--listen", addr, "--data-dir", dir, "--token", "s3cret")

	c := dial(t, addr, nil, "s3cret")
	v, err := c.Report(timeout(t), primaryReport("a", 4))
	if err != nil {
		t.Fatalf("report to member arbiter: %v\n%s", err, p.Log())
	}
	if v.Epoch != 4 || v.Primary != "a" {
		t.Fatalf("view = %+v, want epoch 4 primary a", v)
	}
	if err := p.Terminate(t); err != nil {
		t.Fatalf("member arbiter after SIGTERM: %v, want exit 0\n%s", err, p.Log())
	}

	// The recorded epoch outlives the process.
	s := newServer(t, dir, newClock(), nil)
	if st := s.State()["APP"]; st.Epoch != 4 || st.Primary != "a" {
		t.Fatalf("state left by member arbiter = %+v, want epoch 4 primary a", st)
	}
}

func TestMemberArbiterUsage(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		message string
	}{
		{"no data dir", []string{"arbiter"}, "--data-dir"},
		{"partial tls", []string{"arbiter", "--data-dir", t.TempDir(), "--tls-cert", "a.crt"}, "go together"},
		{"bad log level", []string{"arbiter", "--data-dir", t.TempDir(), "--log-level", "loud"}, "log-level"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := memberproc.CLI(t, tc.args...)
			if r.ExitCode != 2 || !strings.Contains(r.Stderr, tc.message) {
				t.Fatalf("member %s: exit %d, stderr %q; want exit 2 mentioning %q", strings.Join(tc.args, " "), r.ExitCode, r.Stderr, tc.message)
			}
		})
	}
}
