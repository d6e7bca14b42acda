package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/internal/memberproc"
)

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	r := memberproc.CLI(t, args...)
	if r.ExitCode != 0 {
		t.Fatalf("member %s: exit %d: %s", strings.Join(args, " "), r.ExitCode, r.Stderr)
	}
	return r.Stdout
}

func TestCLI(t *testing.T) {
	m := memberproc.Start(t, memberproc.Config{Name: "cli"})
	mem := []string{"--member", m.Addr}
	kv := func(args ...string) []string {
		return append(append([]string{"kv"}, args...), append(mem, "--db", "app")...)
	}

	mustCLI(t, append([]string{"db", "create", "app"}, mem...)...)
	mustCLI(t, kv("set", `^Orders(42,"total")`, "19.99")...)
	mustCLI(t, kv("set", `^Orders(42,"customer")`, "Ada")...)
	mustCLI(t, kv("set", `^Orders(7)`, "seven")...)
	mustCLI(t, kv("set", `^Bin`, "00ff10", "--hex")...)

	if got := mustCLI(t, kv("get", `^Orders(42,"total")`)...); got != "19.99\n" {
		t.Fatalf("get = %q", got)
	}
	if got := mustCLI(t, kv("get", `^Bin`, "--hex")...); got != "00ff10\n" {
		t.Fatalf("get --hex = %q", got)
	}
	if got := mustCLI(t, kv("incr", `^N`, "2.5")...); got != "2.5\n" {
		t.Fatalf("incr = %q", got)
	}
	if got := mustCLI(t, kv("order", `^Orders("")`)...); got != "^Orders(7)\n" {
		t.Fatalf("order = %q", got)
	}
	if got := mustCLI(t, kv("order", `^Orders(7)`)...); got != "^Orders(42)\n" {
		t.Fatalf("order after 7 = %q", got)
	}
	want := "^Orders(7)=\"seven\"\n^Orders(42,\"customer\")=\"Ada\"\n^Orders(42,\"total\")=19.99\n"
	if got := mustCLI(t, kv("query", `^Orders`)...); got != want {
		t.Fatalf("query =\n%s\nwant\n%s", got, want)
	}
	if got := mustCLI(t, kv("query", `^Orders`, "--from", `^Orders(7)`, "--limit", "1")...); got != "^Orders(42,\"customer\")=\"Ada\"\n" {
		t.Fatalf("query --from --limit = %q", got)
	}
	var rows []map[string]string
	if err := json.Unmarshal([]byte(mustCLI(t, kv("query", `^Orders(42)`, "--json")...)), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("query --json: %v %v", rows, err)
	}
	mustCLI(t, kv("cas", `^Lock`, "", "me", "--absent")...)
	if r := memberproc.CLI(t, kv("cas", `^Lock`, "", "you", "--absent")...); r.ExitCode != 1 || !strings.Contains(r.Stderr, "not swapped") {
		t.Fatalf("second cas: exit %d %s", r.ExitCode, r.Stderr)
	}
	mustCLI(t, kv("kill", `^Orders(42)`)...)
	if r := memberproc.CLI(t, kv("get", `^Orders(42,"total")`)...); r.ExitCode != 1 || !strings.Contains(r.Stderr, "undefined") {
		t.Fatalf("get after kill: exit %d %q", r.ExitCode, r.Stderr)
	}
	var got struct {
		Exists bool `json:"exists"`
	}
	json.Unmarshal([]byte(mustCLI(t, kv("get", `^Orders(42,"total")`, "--json")...)), &got)
	if got.Exists {
		t.Fatal("get --json says a killed node exists")
	}

	// Errors and exit codes.
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{kv("get", `^Orders(`), 2, "invalid global reference"},
		{kv("set", `Orders(1)`, "x"), 2, ""},
		{append([]string{"kv", "get", `^X`, "--db", "nope"}, mem...), 1, "NOPE"},
		{kv("incr", `^Orders(7)`), 1, "not a number"},
		{append([]string{"db", "create", "9bad"}, mem...), 2, "9bad"},
		{append([]string{"db", "create", "APP"}, mem...), 1, "already exists"},
		{[]string{"kv", "get", `^X`, "--db", "a", "--member", "127.0.0.1:1"}, 1, "127.0.0.1:1"},
		{[]string{"frobnicate"}, 2, ""},
	} {
		r := memberproc.CLI(t, tc.args...)
		if r.ExitCode != tc.code || !strings.Contains(r.Stderr, tc.msg) {
			t.Errorf("member %s: exit %d (want %d), stderr %q (want it to mention %q)", strings.Join(tc.args, " "), r.ExitCode, tc.code, r.Stderr, tc.msg)
		}
	}

	// Databases: list, dismount, mount, delete.
	var infos []struct {
		Name    string `json:"name"`
		Mounted bool   `json:"mounted"`
	}
	json.Unmarshal([]byte(mustCLI(t, append([]string{"db", "list", "--json"}, mem...)...)), &infos)
	if len(infos) != 1 || infos[0].Name != "APP" || !infos[0].Mounted {
		t.Fatalf("db list: %+v", infos)
	}
	mustCLI(t, append([]string{"db", "dismount", "app"}, mem...)...)
	if r := memberproc.CLI(t, kv("get", `^N`)...); r.ExitCode != 1 || !strings.Contains(r.Stderr, "dismounted") {
		t.Fatalf("get on dismounted: %d %q", r.ExitCode, r.Stderr)
	}
	mustCLI(t, append([]string{"db", "mount", "app"}, mem...)...)
	if got := mustCLI(t, kv("get", `^N`)...); got != "2.5\n" {
		t.Fatalf("after remount: %q", got)
	}
	if out := mustCLI(t, append([]string{"status"}, mem...)...); !strings.Contains(out, "database APP: mounted") {
		t.Fatalf("status: %s", out)
	}
	mustCLI(t, append([]string{"db", "delete", "app"}, mem...)...)
	if out := mustCLI(t, append([]string{"db", "list"}, mem...)...); strings.Contains(out, "\nAPP ") {
		t.Fatalf("deleted database still listed: %s", out)
	}

	var v struct {
		Software      string `json:"software"`
		JournalFormat int    `json:"journal_format"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "version", "--json")), &v); err != nil || v.Software == "" || v.JournalFormat == 0 {
		t.Fatalf("version --json: %+v %v", v, err)
	}
}

func TestJournalCommandsOffline(t *testing.T) {
	dataDir := t.TempDir()
	m := memberproc.Start(t, memberproc.Config{Name: "jrn", DataDir: dataDir})
	mustCLI(t, "db", "create", "J", "--member", m.Addr)
	mustCLI(t, "kv", "set", `^A(1)`, "hello", "--db", "J", "--member", m.Addr)
	mustCLI(t, "kv", "set", `^A(1)`, "world", "--db", "J", "--member", m.Addr)
	if err := m.Terminate(); err != nil {
		t.Fatal(err)
	}
	if out := mustCLI(t, "journal", "check", dataDir); !strings.Contains(out, "ok") || !strings.Contains(out, "2 records") {
		t.Fatalf("journal check: %s", out)
	}
	out := mustCLI(t, "journal", "dump", dataDir, "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("dump: %d lines:\n%s", len(lines), out)
	}
	var rec struct {
		Pos    string `json:"pos"`
		Ref    string `json:"ref"`
		Value  string `json:"value"`
		Before string `json:"before"`
		DB     string `json:"db"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Ref != "^A(1)" || rec.Value != "world" || rec.Before != "hello" || rec.DB != "J" {
		t.Fatalf("second record: %+v", rec)
	}
	if out := mustCLI(t, "journal", "dump", dataDir, "--from", rec.Pos); strings.Count(out, "\n") != 1 {
		t.Fatalf("dump --from %s: %s", rec.Pos, out)
	}
	if r := memberproc.CLI(t, "journal", "dump", dataDir, "--from", "garbage"); r.ExitCode != 2 {
		t.Fatalf("bad --from: exit %d", r.ExitCode)
	}
	// Flip a byte inside the first record (a valid one follows it): check names the file and offset and fails.
	seg := filepath.Join(dataDir, "journal", "journal.000001")
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	var firstRec struct {
		Pos string `json:"pos"`
	}
	json.Unmarshal([]byte(lines[0]), &firstRec)
	first, err := journal.ParsePosition(firstRec.Pos)
	if err != nil {
		t.Fatal(err)
	}
	data[first.Offset+12] ^= 0xff
	os.WriteFile(seg, data, 0o644)
	r := memberproc.CLI(t, "journal", "check", dataDir)
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "journal.000001") || !strings.Contains(r.Stderr, fmt.Sprint(first.Offset)) {
		t.Fatalf("check of a corrupt journal: exit %d, %q", r.ExitCode, r.Stderr)
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	data, admin := memberproc.FreeAddr(t, "127.0.0.1"), memberproc.FreeAddr(t, "127.0.0.1")
	cfg := filepath.Join(dir, "member.toml")
	os.WriteFile(cfg, []byte(`name = "cfg"
data_dir = "`+filepath.Join(dir, "data")+`"
listen = "`+data+`"
admin_listen = "`+admin+`"
db_compression = "good"
[journal]
segment_size = 2097152
[log]
level = "debug"
`), 0o644)
	m := memberproc.Start(t, memberproc.Config{Name: "cfg", ConfigFile: cfg, Addr: data, AdminAddr: admin})
	var view struct {
		Member struct {
			Member    string `json:"member"`
			AdminAddr string `json:"admin_addr"`
		} `json:"member"`
	}
	err := json.Unmarshal([]byte(mustCLI(t, "status", "--json", "--member", data)), &view)
	if st := view.Member; err != nil || st.Member != "cfg" || st.AdminAddr != admin {
		t.Fatalf("status of a member started from a config file: %+v %v", view, err)
	}
	if err := m.Terminate(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.LogTail(100), `"level":"debug"`) {
		t.Fatal("log.level from the config file not applied")
	}
	if !strings.Contains(m.LogTail(100), `"db_compression":"good"`) {
		t.Fatal("db_compression from the config file not applied")
	}
	if r := memberproc.CLI(t, "run", "--config", filepath.Join(dir, "missing.toml")); r.ExitCode != 2 || !strings.Contains(r.Stderr, "missing.toml") {
		t.Fatalf("missing config: exit %d %q", r.ExitCode, r.Stderr)
	}
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("name = \"x\"\ndata_dir = \"/tmp/x\"\nbogus = 1\n"), 0o644)
	if r := memberproc.CLI(t, "run", "--config", bad); r.ExitCode != 2 || !strings.Contains(r.Stderr, "bogus") {
		t.Fatalf("unknown key: exit %d %q", r.ExitCode, r.Stderr)
	}
	if r := memberproc.CLI(t, "run", "--config", cfg, "--db-compression", "tiny"); r.ExitCode != 2 || !strings.Contains(r.Stderr, `db_compression: database compression "tiny"`) {
		t.Fatalf("bad --db-compression: exit %d %q", r.ExitCode, r.Stderr)
	}
	if r := memberproc.CLI(t, "run", "--config", cfg, "--name", "has space"); r.ExitCode != 2 || !strings.Contains(r.Stderr, "name") {
		t.Fatalf("bad name flag: exit %d %q", r.ExitCode, r.Stderr)
	}
}
