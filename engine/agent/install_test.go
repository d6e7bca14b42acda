package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/backup/dirstage"
	"github.com/mirrorkit/mirrorkit/backup/s3stage"
	"github.com/mirrorkit/mirrorkit/internal/miniotest"
)

// memberScript is a stand-in member binary: a shell script that appends "VERSION PID" to the file given as its argument,
// then sleeps (as the same process) until a signal ends it.
func memberScript(version string) []byte {
	return []byte("#!/bin/sh\necho \"" + version + " $$\" >> \"$1\"\nexec sleep 3600\n")
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// installFixture is an agent supervising member A, configured with the script of version v1 and given the script of v2
// to install.
type installFixture struct {
	a        *Agent
	c        *Client
	srv      *httptest.Server
	cfg      Config
	layout   installLayout
	dir      string // where the scripts are
	identity string // where the member's runs write their version and pid
	v1, v2   string // the scripts' paths
}

func newInstallFixture(tb testing.TB) *installFixture {
	tb.Helper()
	f := &installFixture{dir: tb.TempDir()}
	f.identity = filepath.Join(f.dir, "identity")
	f.v1, f.v2 = f.script(tb, "v1"), f.script(tb, "v2")
	m := MemberConfig{Name: "A", Binary: f.v1, Args: []string{f.identity}, DataDir: tb.TempDir()}
	f.cfg = Config{Token: testToken, Members: []MemberConfig{m}}
	f.layout = layoutOf(m.DataDir)
	f.a = newTestAgent(tb, f.cfg)
	f.c, f.srv = serveTest(tb, f.a, testToken)
	return f
}

// script writes the member script of version to the fixture's directory and returns its path.
func (f *installFixture) script(tb testing.TB, version string) string {
	tb.Helper()
	path := filepath.Join(f.dir, "member-"+version)
	if err := os.WriteFile(path, memberScript(version), 0o755); err != nil {
		tb.Fatal(err)
	}
	return path
}

// runs waits until member A runs and its process has written version, and returns its pid.
func (f *installFixture) runs(tb testing.TB, version string) int {
	tb.Helper()
	var st MemberStatus
	waitFor(tb, "member A running "+version, func() (bool, error) {
		var err error
		if st, err = f.a.Member("A"); err != nil || !st.Running {
			return false, err
		}
		data, err := os.ReadFile(f.identity)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		return lines[len(lines)-1] == fmt.Sprintf("%s %d", version, st.PID), err
	})
	return st.PID
}

// wantFiles checks that the install directory holds exactly the files named, with the scripts of the versions given.
func (f *installFixture) wantFiles(tb testing.TB, current, previous string) {
	tb.Helper()
	for path, version := range map[string]string{f.layout.current: current, f.layout.previous: previous} {
		data, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(data, memberScript(version)) {
			tb.Fatalf("%s = %q, %v; want the script of %s", path, data, err, version)
		}
		if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o755 {
			tb.Fatalf("%s: %v, %v; want mode 0755", path, info.Mode(), err)
		}
	}
	for dir, want := range map[string][]string{f.layout.dir: {"bin", "installed.json"}, f.layout.bin: {"member", "member.previous"}} {
		if got := dirNames(tb, dir); !slices.Equal(got, want) {
			tb.Fatalf("%s holds %q, want %q", dir, got, want)
		}
	}
}

// wantRecord checks installed.json.
func (f *installFixture) wantRecord(tb testing.TB, sum, previousSum string) installRecord {
	tb.Helper()
	data, err := os.ReadFile(f.layout.record)
	if err != nil {
		tb.Fatal(err)
	}
	var rec installRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		tb.Fatalf("%s: %v", f.layout.record, err)
	}
	if rec.Version != 1 || rec.Binary != f.layout.current || rec.SHA256 != sum || rec.Previous != f.layout.previous ||
		rec.PreviousSHA256 != previousSum || time.Since(rec.InstalledAt) > time.Minute {
		tb.Fatalf("%s = %+v, want binary sha256 %s, previous %s", f.layout.record, rec, sum, previousSum)
	}
	return rec
}

func dirNames(tb testing.TB, dir string) []string {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// post sends a raw request with token and returns the status and the error body.
func post(tb testing.TB, srv *httptest.Server, path, body string) (int, errorBody) {
	tb.Helper()
	req, err := http.NewRequestWithContext(testContext(tb), http.MethodPost, srv.URL+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var e errorBody
	if resp.StatusCode != http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			tb.Fatalf("error body of %s: %v", path, err)
		}
	}
	return resp.StatusCode, e
}

func TestInstallRestartsMemberWithNewBinary(t *testing.T) {
	f := newInstallFixture(t)
	ctx := testContext(t)
	if err := f.c.Start(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	before := f.runs(t, "v1")

	v1Sum, v2Sum := sha256Hex(memberScript("v1")), sha256Hex(memberScript("v2"))
	res, err := f.c.Install(ctx, "A", f.v2, v2Sum, true)
	want := InstallResult{Member: "A", Binary: f.layout.current, SHA256: v2Sum, Previous: f.layout.previous, PreviousSHA256: v1Sum, Restarted: true}
	if err != nil || res != want {
		t.Fatalf("Install = %+v, %v; want %+v", res, err, want)
	}
	after := f.runs(t, "v2")
	if after == before || alive(before) {
		t.Fatalf("member pid %d before the install, %d after (old one alive: %v)", before, after, alive(before))
	}
	if st, err := f.a.Member("A"); err != nil || st.StoppedByAgent || st.ExitStatus != "signal: terminated" {
		t.Fatalf("status after the install: %+v, %v; want the old run ended by SIGTERM", st, err)
	}
	f.wantFiles(t, "v2", "v1")
	rec := f.wantRecord(t, v2Sum, v1Sum)

	info, err := f.c.Binary(ctx, "A")
	wantInfo := BinaryInfo{Binary: f.layout.current, SHA256: v2Sum, Previous: f.layout.previous, PreviousSHA256: v1Sum,
		InstalledAt: rec.InstalledAt, Configured: f.v1}
	if err != nil || !info.InstalledAt.Equal(wantInfo.InstalledAt) {
		t.Fatalf("Binary = %+v, %v; want %+v", info, err, wantInfo)
	}
	info.InstalledAt = wantInfo.InstalledAt
	if info.FreeBytes == 0 {
		t.Fatal("Binary reports no free space in the data directory")
	}
	info.FreeBytes = 0
	if info != wantInfo {
		t.Fatalf("Binary = %+v, want %+v", info, wantInfo)
	}
}

func TestInstallRefusals(t *testing.T) {
	f := newInstallFixture(t)
	ctx := testContext(t)
	if err := f.c.Start(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	pid := f.runs(t, "v1")
	v1Sum, v2Sum := sha256Hex(memberScript("v1")), sha256Hex(memberScript("v2"))
	missingDir := filepath.Join(f.dir, "no-such-dir")

	tests := []struct {
		name, member, source, sum string
		want                      error
		says                      []string // what the error must name
	}{
		{"wrong checksum", "A", f.v2, v1Sum, ErrChecksumMismatch, []string{v1Sum, v2Sum, f.v2}},
		{"no checksum", "A", f.v2, "", ErrBadRequest, []string{"sha256"}},
		{"short checksum", "A", f.v2, v2Sum[:63], ErrBadRequest, []string{v2Sum[:63]}},
		{"upper-case checksum", "A", f.v2, strings.ToUpper(v2Sum), ErrBadRequest, []string{"lower-case"}},
		{"no source", "A", "", v2Sum, ErrBadRequest, []string{"absolute path"}},
		{"relative path", "A", "member-v2", v2Sum, ErrBadRequest, []string{"member-v2", "absolute"}},
		{"missing file", "A", filepath.Join(f.dir, "none"), v2Sum, ErrNotFound, []string{filepath.Join(f.dir, "none")}},
		{"directory", "A", f.dir, v2Sum, ErrBadRequest, []string{"regular file"}},
		{"missing stage object", "A", "file://" + f.dir + "/none", v2Sum, ErrNotFound, []string{"none"}},
		{"missing stage directory", "A", "file://" + missingDir + "/member", v2Sum, ErrNotFound, []string{missingDir}},
		{"stage URL without object", "A", "s3://bucket", v2Sum, ErrBadRequest, []string{"no object"}},
		{"unknown scheme", "A", "ftp://host/member", v2Sum, ErrBadRequest, []string{"ftp"}},
		{"unknown member", "B", f.v2, v2Sum, ErrNotFound, []string{"member B"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.c.Install(ctx, tc.member, tc.source, tc.sum, true)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Install: %v, want %v", err, tc.want)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("Install: %v; want it to name %q", err, s)
				}
			}
		})
	}
	if _, err := f.c.RollbackBinary(ctx, "A"); !errors.Is(err, ErrNoPreviousBinary) || !strings.Contains(err.Error(), f.v1) {
		t.Fatalf("RollbackBinary with nothing installed: %v, want ErrNoPreviousBinary naming the configured binary", err)
	}

	raw := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"wrong checksum", "/v1/members/A/install", `{"source":"` + f.v2 + `","sha256":"` + v1Sum + `"}`, http.StatusBadRequest, codeChecksumMismatch},
		{"missing source", "/v1/members/A/install", `{"source":"` + f.dir + `/none","sha256":"` + v2Sum + `"}`, http.StatusNotFound, codeNotFound},
		{"no body", "/v1/members/A/install", ``, http.StatusBadRequest, codeBadRequest},
		{"unknown field", "/v1/members/A/install", `{"source":"` + f.v2 + `","sha256":"` + v2Sum + `","force":true}`, http.StatusBadRequest, codeBadRequest},
		{"not JSON", "/v1/members/A/install", `source=x`, http.StatusBadRequest, codeBadRequest},
		{"rollback with a source", "/v1/members/A/rollback-binary", `{"source":"` + f.v2 + `"}`, http.StatusBadRequest, codeBadRequest},
		{"rollback with nothing installed", "/v1/members/A/rollback-binary", ``, http.StatusConflict, codeNoPreviousBinary},
	}
	for _, tc := range raw {
		t.Run("http "+tc.name, func(t *testing.T) {
			if status, e := post(t, f.srv, tc.path, tc.body); status != tc.status || e.Code != tc.code || e.Error == "" {
				t.Fatalf("POST %s %s: %d %+v, want %d with code %s", tc.path, tc.body, status, e, tc.status, tc.code)
			}
		})
	}

	// Nothing changed: the member runs on, the data directory has no install directory, and no stage directory was made.
	if st, err := f.a.Member("A"); err != nil || !st.Running || st.PID != pid {
		t.Fatalf("member after the refusals: %+v, %v; want pid %d still running", st, err, pid)
	}
	for _, dir := range []string{f.layout.dir, missingDir} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s after the refusals: %v, want it not to exist", dir, err)
		}
	}
	info, err := f.c.Binary(ctx, "A")
	info.FreeBytes = 0
	if want := (BinaryInfo{Binary: f.v1, SHA256: v1Sum, Configured: f.v1}); err != nil || info != want {
		t.Fatalf("Binary = %+v, %v; want %+v", info, err, want)
	}
}

func TestInstallFromFileStage(t *testing.T) {
	f := newInstallFixture(t)
	ctx := testContext(t)
	stageDir := t.TempDir()
	target, err := dirstage.New(stageDir)
	if err != nil {
		t.Fatal(err)
	}
	v2 := memberScript("v2")
	if err := target.Put(ctx, "releases/2.0/member", bytes.NewReader(v2), int64(len(v2))); err != nil {
		t.Fatal(err)
	}
	// The member is not running: the install leaves it so, and its next start runs the new binary.
	res, err := f.c.Install(ctx, "A", "file://"+stageDir+"/releases/2.0/member", sha256Hex(v2), true)
	if err != nil || res.Restarted || res.SHA256 != sha256Hex(v2) {
		t.Fatalf("Install = %+v, %v; want installed, not restarted", res, err)
	}
	if st, err := f.a.Member("A"); err != nil || st.Running {
		t.Fatalf("member after installing while stopped: %+v, %v", st, err)
	}
	if err := f.c.Start(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	f.runs(t, "v2")
	f.wantFiles(t, "v2", "v1")
}

func TestInstallFromS3(t *testing.T) {
	if testing.Short() {
		t.Skip("runs MinIO")
	}
	s3 := miniotest.Start(t)
	s3.Bucket(t, "releases")
	t.Setenv("AWS_ENDPOINT_URL", "http://"+s3.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	t.Setenv("AWS_REGION", "us-east-1")
	ctx := testContext(t)
	target, err := s3stage.New(ctx, "releases", "mirrorkit/2.0", s3stage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v2 := memberScript("v2")
	if err := target.Put(ctx, "member", bytes.NewReader(v2), int64(len(v2))); err != nil {
		t.Fatal(err)
	}

	f := newInstallFixture(t)
	if err := f.c.Start(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	f.runs(t, "v1")
	if _, err := f.c.Install(ctx, "A", "s3://releases/mirrorkit/2.0/none", sha256Hex(v2), true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Install of a missing object: %v, want ErrNotFound", err)
	}
	if _, err := f.c.Install(ctx, "A", "s3://releases/mirrorkit/2.0/member", sha256Hex(v2), true); err != nil {
		t.Fatal(err)
	}
	f.runs(t, "v2")
	f.wantFiles(t, "v2", "v1")
}

func TestRollbackBinary(t *testing.T) {
	f := newInstallFixture(t)
	ctx := testContext(t)
	if err := f.c.Start(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	f.runs(t, "v1")
	sums := map[string]string{}
	for _, v := range []string{"v1", "v2", "v3"} {
		sums[v] = sha256Hex(memberScript(v))
	}
	if _, err := f.c.Install(ctx, "A", f.v2, sums["v2"], true); err != nil {
		t.Fatal(err)
	}
	f.runs(t, "v2")

	// Back to the configured binary, forward to the installed one, back again.
	for _, step := range []struct{ current, previous string }{{"v1", "v2"}, {"v2", "v1"}, {"v1", "v2"}} {
		res, err := f.c.RollbackBinary(ctx, "A")
		want := InstallResult{Member: "A", Binary: f.layout.current, SHA256: sums[step.current], Previous: f.layout.previous,
			PreviousSHA256: sums[step.previous], Restarted: true}
		if err != nil || res != want {
			t.Fatalf("RollbackBinary to %s = %+v, %v; want %+v", step.current, res, err, want)
		}
		f.runs(t, step.current)
		f.wantFiles(t, step.current, step.previous)
		f.wantRecord(t, sums[step.current], sums[step.previous])
	}

	// An install keeps the binary in use, whichever it is, as the previous one.
	if _, err := f.c.Install(ctx, "A", f.script(t, "v3"), sums["v3"], true); err != nil {
		t.Fatal(err)
	}
	f.runs(t, "v3")
	f.wantFiles(t, "v3", "v1")
	f.wantRecord(t, sums["v3"], sums["v1"])
}

func TestInstalledBinarySurvivesAgentRestart(t *testing.T) {
	f := newInstallFixture(t)
	ctx := testContext(t)
	v2Sum := sha256Hex(memberScript("v2"))
	if _, err := f.c.Install(ctx, "A", f.v2, v2Sum, false); err != nil {
		t.Fatal(err)
	}
	if err := f.a.Close(); err != nil {
		t.Fatal(err)
	}

	// A new agent on the same configuration runs the installed binary, not the configured one.
	f.a = newTestAgent(t, f.cfg)
	f.c, _ = serveTest(t, f.a, testToken)
	info, err := f.c.Binary(ctx, "A")
	if err != nil || info.Binary != f.layout.current || info.SHA256 != v2Sum || info.Configured != f.v1 {
		t.Fatalf("Binary after the agent's restart = %+v, %v", info, err)
	}
	if err := f.c.Start(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	f.runs(t, "v2")
}

func TestInstallRecordRefusedAtStart(t *testing.T) {
	v1, v2 := memberScript("v1"), memberScript("v2")
	record := func(l installLayout, version int, binary, sum string) string {
		return fmt.Sprintf(`{"version":%d,"binary":%q,"sha256":%q,"previous":%q,"previous_sha256":%q,"installed_at":"2026-01-02T03:04:05Z"}`,
			version, binary, sum, l.previous, sha256Hex(v1))
	}
	tests := []struct {
		name   string
		record func(l installLayout) string
		says   string
	}{
		{"not JSON", func(installLayout) string { return "{" }, "corrupt"},
		{"unknown field", func(installLayout) string { return `{"version":1,"bianry":"x"}` }, "bianry"},
		{"newer version", func(l installLayout) string { return record(l, 2, l.current, sha256Hex(v2)) }, "format version 2"},
		{"other binary", func(l installLayout) string { return record(l, 1, "/usr/bin/member", sha256Hex(v2)) }, "/usr/bin/member"},
		{"bad checksum", func(l installLayout) string { return record(l, 1, l.current, "x") }, `"x"`},
		{"binary not the recorded one", func(l installLayout) string { return record(l, 1, l.current, sha256Hex(v1)) }, sha256Hex(v2)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := helperMemberConfig(t, "A", false, "serve")
			l := layoutOf(m.DataDir)
			writeFile(t, l.bin, "member", v2)
			writeFile(t, l.bin, "member.previous", v1)
			writeFile(t, l.dir, "installed.json", []byte(tc.record(l)))
			_, err := New(Config{Token: testToken, Members: []MemberConfig{m}}, Options{Logger: zerolog.New(zerolog.NewTestWriter(t))})
			if err == nil || !strings.Contains(err.Error(), "member A") || !strings.Contains(err.Error(), tc.says) ||
				(!strings.Contains(err.Error(), l.record) && !strings.Contains(err.Error(), l.current)) {
				t.Fatalf("New: %v; want an error naming member A, the file and %q", err, tc.says)
			}
		})
	}
}

// TestInstallInterruptedIsFinishedAtStart lays out the files as a crash at each step of an install or rollback leaves
// them, and checks that the agent's start finishes or undoes the step.
func TestInstallInterruptedIsFinishedAtStart(t *testing.T) {
	v := func(version string) []byte { return memberScript(version) }
	tests := []struct {
		name              string
		files             map[string][]byte // in bin
		current, previous string            // the record
		want              map[string]string // bin after the start: file → version
	}{
		{"install not committed", map[string][]byte{"member": v("v1"), "member.previous": v("v0"), "member.next": v("v2"), ".member.tmp-1": v("v2")},
			"v1", "v0", map[string]string{"member": "v1", "member.previous": "v0"}},
		{"install committed", map[string][]byte{"member": v("v1"), "member.previous": v("v0"), "member.next": v("v2")},
			"v2", "v1", map[string]string{"member": "v2", "member.previous": "v1"}},
		{"current linked to previous", map[string][]byte{"member": v("v1"), "member.previous": v("v1"), "member.next": v("v2"), ".member.previous.tmp-link": v("v1")},
			"v2", "v1", map[string]string{"member": "v2", "member.previous": "v1"}},
		{"first install committed", map[string][]byte{"member.previous": v("v1"), "member.next": v("v2")},
			"v2", "v1", map[string]string{"member": "v2", "member.previous": "v1"}},
		{"rollback committed", map[string][]byte{"member": v("v2"), "member.previous": v("v1"), "member.next": v("v1")},
			"v1", "v2", map[string]string{"member": "v1", "member.previous": "v2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := helperMemberConfig(t, "A", false, "serve")
			l := layoutOf(m.DataDir)
			for name, data := range tc.files {
				writeFile(t, l.bin, name, data)
			}
			writeFile(t, l.dir, ".installed.json.tmp-1", []byte("{"))
			rec := installRecord{Version: 1, Binary: l.current, SHA256: sha256Hex(v(tc.current)), Previous: l.previous,
				PreviousSHA256: sha256Hex(v(tc.previous)), InstalledAt: time.Now().UTC()}
			data, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, l.dir, "installed.json", data)

			a := newTestAgent(t, Config{Token: testToken, Members: []MemberConfig{m}})
			var names []string
			for name, version := range tc.want {
				names = append(names, name)
				if got, err := os.ReadFile(filepath.Join(l.bin, name)); err != nil || !bytes.Equal(got, v(version)) {
					t.Fatalf("%s after the start = %q, %v; want the script of %s", name, got, err, version)
				}
			}
			slices.Sort(names)
			if got := dirNames(t, l.bin); !slices.Equal(got, names) {
				t.Fatalf("%s holds %q, want %q", l.bin, got, names)
			}
			if got := dirNames(t, l.dir); !slices.Equal(got, []string{"bin", "installed.json"}) {
				t.Fatalf("%s holds %q", l.dir, got)
			}
			if info, err := a.Binary("A"); err != nil || info.SHA256 != rec.SHA256 || info.PreviousSHA256 != rec.PreviousSHA256 {
				t.Fatalf("Binary = %+v, %v; want the record %+v", info, err, rec)
			}
		})
	}
}
