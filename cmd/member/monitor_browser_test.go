package main_test

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
)

// browserTimeout bounds one headless Chromium run; the page itself gets 5 s of virtual time.
const browserTimeout = 30 * time.Second

// chromium finds Debian's headless-capable browser. Outside CI a missing browser skips the test; in CI it is a failure,
// since `make test` installs it.
func chromium(tb testing.TB) string {
	tb.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "" {
		tb.Skip("chromium not found: install Debian's chromium package (make test does) to run the Mirror Monitor browser test")
	}
	tb.Fatal("chromium not found in CI: make test installs Debian's chromium package")
	return ""
}

// artifactDir is where screenshots go: MIRRORKIT_ARTIFACTS when set, else a directory removed with the test.
func artifactDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("MIRRORKIT_ARTIFACTS")
	if dir == "" {
		return tb.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatalf("artifact directory %s: %v", dir, err)
	}
	return dir
}

// runChromium runs headless Chromium on url with a fresh profile plus extra flags and returns its standard output.
func runChromium(tb testing.TB, browser, url string, extra ...string) ([]byte, error) {
	tb.Helper()
	profile, err := os.MkdirTemp(tb.TempDir(), "profile")
	if err != nil {
		return nil, err
	}
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir=" + profile,
		"--virtual-time-budget=5000"}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, append(args, url)...)
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("chromium on %s: %w; stderr: %s", url, err, lastLines(stderr.String(), 10))
	}
	return stdout.Bytes(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// page is the DOM of the Mirror Monitor as Chromium rendered it.
type page string

// memberRow is one row of the members table as shown.
type memberRow struct{ Type, Status, Transfer, Dejournal string }

var (
	cellPattern   = regexp.MustCompile(`(?s)<td data-field="([a-z-]+)"(?: data-status="[^"]*")?>(.*?)</td>`)
	tagPattern    = regexp.MustCompile(`<[^>]*>`)
	bannerPattern = regexp.MustCompile(`(?s)<div id="banner"([^>]*)>(.*?)</div>`)
)

func text(s string) string {
	return strings.TrimSpace(html.UnescapeString(tagPattern.ReplaceAllString(s, " ")))
}

// cellText is a cell's main value: the text of its first element (the status badge) or, without one, all its text.
func cellText(cell string) string {
	if i := strings.Index(cell, "</span>"); strings.HasPrefix(cell, "<span") && i > 0 {
		return text(cell[:i])
	}
	return text(cell)
}

// member returns the row shown for name, or false when the page shows no such row.
func (p page) member(name string) (memberRow, bool) {
	re := regexp.MustCompile(`(?s)<tr data-member="` + regexp.QuoteMeta(name) + `"[^>]*>(.*?)</tr>`)
	m := re.FindStringSubmatch(string(p))
	if m == nil {
		return memberRow{}, false
	}
	var r memberRow
	for _, c := range cellPattern.FindAllStringSubmatch(m[1], -1) {
		v := cellText(c[2])
		switch c[1] {
		case "type":
			r.Type = v
		case "status":
			r.Status = v
		case "transfer":
			r.Transfer = v
		case "dejournal":
			r.Dejournal = v
		}
	}
	return r, true
}

// banner returns the banner's text, "" when it is hidden.
func (p page) banner() string {
	m := bannerPattern.FindStringSubmatch(string(p))
	if m == nil || strings.Contains(m[1], "hidden") {
		return ""
	}
	return text(m[2])
}

// database returns the status shown for a mirrored database of the member viewed.
func (p page) database(name string) string {
	re := regexp.MustCompile(`(?s)<tr data-database="` + regexp.QuoteMeta(name) + `"[^>]*>.*?<td data-field="status" data-status="([^"]*)"`)
	if m := re.FindStringSubmatch(string(p)); m != nil {
		return html.UnescapeString(m[1])
	}
	return ""
}

// waitPage dumps the DOM of n's Mirror Monitor until check accepts it, and returns that DOM.
func waitPage(tb testing.TB, c *testcluster.Cluster, browser string, n *testcluster.Node, desc string, check func(page) error) page {
	tb.Helper()
	var last page
	c.WaitFor(tb, desc, 40*time.Second, func() (bool, error) {
		out, err := runChromium(tb, browser, "http://"+n.AdminAddr+"/", "--dump-dom")
		if err != nil {
			return false, err
		}
		last = page(out)
		if !strings.Contains(string(last), "data-polls=") {
			return false, fmt.Errorf("the page on %s never rendered the API's data:\n%s", n.Name, lastLines(string(last), 20))
		}
		err = check(last)
		return err == nil, err
	})
	return last
}

// wantRows checks the member rows shown against want (empty fields are not checked).
func wantRows(p page, want map[string]memberRow) error {
	for name, w := range want {
		got, ok := p.member(name)
		if !ok {
			return fmt.Errorf("no row for member %s", name)
		}
		for _, f := range [][3]string{{"type", w.Type, got.Type}, {"status", w.Status, got.Status}, {"journal transfer", w.Transfer, got.Transfer}} {
			if f[1] != "" && f[1] != f[2] {
				return fmt.Errorf("member %s: %s %q, want %q", name, f[0], f[2], f[1])
			}
		}
	}
	return nil
}

func TestMirrorMonitorInBrowser(t *testing.T) {
	browser := chromium(t)
	c := testcluster.New(t)
	for _, n := range []string{"A", "B", "C"} {
		c.Add(n)
	}
	newMirror(t, c, []member{{"A", ""}, {"B", "failover"}, {"C", "dr"}})
	defer dumpLogs(t, c)
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	cl := c.Node("A").Client(t, 2)
	for i := range 100 {
		if err := cl.Set(context.Background(), "APP", fmt.Sprintf(`^Monitor(%d)`, i), []byte(strings.Repeat("journal ", 20))); err != nil {
			t.Fatal(err)
		}
	}
	waitTransfer(t, c, "A", "C", mirror.CaughtUp)

	a, b := c.Node("A"), c.Node("B")
	notPrimary := fmt.Sprintf("This member is not the primary of MIR; the primary is A (%s).", a.Addr)
	before := waitPage(t, c, browser, b, "B's monitor page showing A primary, B active backup, C connected", func(p page) error {
		if err := wantRows(p, map[string]memberRow{
			"A": {Type: "Failover", Status: mirror.StatusPrimary, Transfer: mirror.TransferNA},
			"B": {Type: "Failover", Status: mirror.StatusBackup, Transfer: mirror.TransferActive},
			"C": {Type: "Disaster Recovery", Status: mirror.StatusConnected},
		}); err != nil {
			return err
		}
		if got := p.banner(); got != notPrimary {
			return fmt.Errorf("banner %q, want %q", got, notPrimary)
		}
		return nil
	})
	if got := before.database("APP"); got != mirror.DBDejournaling && got != mirror.DBCatchupRun {
		t.Errorf("database APP on B shown as %q", got)
	}
	for _, s := range []string{`data-chart="journal"`, `data-chart="dejournal"`, "<polyline", "Arbiter: no arbiter", "Failover mode: Agent Controlled", `data-field="ratio"`} {
		if !strings.Contains(string(before), s) {
			t.Errorf("B's page lacks %s", s)
		}
	}

	mustNode(t, a, "mirror", "failover", "MIR")
	waitPage(t, c, browser, b, "B's monitor page following the failover to B", func(p page) error {
		if err := wantRows(p, map[string]memberRow{
			"A": {Status: mirror.StatusBackup},
			"B": {Status: mirror.StatusPrimary, Transfer: mirror.TransferNA},
		}); err != nil {
			return err
		}
		if got := p.banner(); got != "" {
			return fmt.Errorf("banner %q on the new primary", got)
		}
		return nil
	})
	onA := fmt.Sprintf("the primary is B (%s)", b.Addr)
	waitPage(t, c, browser, a, "A's monitor page naming B primary", func(p page) error {
		if got := p.banner(); !strings.Contains(got, onA) {
			return fmt.Errorf("banner %q, want it to say %q", got, onA)
		}
		return nil
	})

	// The new backup's page shows the most: the banner, the arrival rates and the latency charts.
	shot := filepath.Join(artifactDir(t), "mirror-monitor.png")
	if _, err := runChromium(t, browser, "http://"+a.AdminAddr+"/", "--screenshot="+shot, "--window-size=1280,900", "--hide-scrollbars"); err != nil {
		t.Fatal(err)
	}
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if len(png) < 1024 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot %s is not a PNG image (%d bytes)", shot, len(png))
	}
	t.Logf("Mirror Monitor screenshot: %s", shot)
}
