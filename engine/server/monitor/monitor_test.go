package monitor_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/mirrorkit/mirrorkit/engine/server/monitor"
)

func get(tb testing.TB, h http.Handler, path string) (*http.Response, string) {
	tb.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	resp := rec.Result()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	return resp, string(body)
}

func TestHandlerServesEmbeddedFiles(t *testing.T) {
	h := monitor.Handler()
	for _, tc := range []struct {
		path, contentType, contains string
	}{
		{monitor.Path, "text/html", `id="banner"`},
		{monitor.Path + "monitor.css", "text/css", ".banner"},
		{monitor.Path + "monitor.js", "text/javascript", "../api/v1/mirror/status"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := get(t, h, tc.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: status %d", tc.path, resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
				t.Errorf("GET %s: Content-Type %q, want %s", tc.path, ct, tc.contentType)
			}
			if !strings.Contains(body, tc.contains) {
				t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
			}
			for header, want := range map[string]string{
				"Cache-Control":           "no-cache",
				"X-Content-Type-Options":  "nosniff",
				"Content-Security-Policy": "default-src 'self'",
			} {
				if got := resp.Header.Get(header); !strings.Contains(got, want) {
					t.Errorf("GET %s: %s %q, want %q", tc.path, header, got, want)
				}
			}
		})
	}
}

func TestHandlerRefusesUnknownFiles(t *testing.T) {
	for _, path := range []string{monitor.Path + "missing.js", monitor.Path + "../monitor.go", monitor.Path + "monitor_test.go"} {
		if resp, _ := get(t, monitor.Handler(), path); resp.StatusCode == http.StatusOK {
			t.Errorf("GET %s: status %d, want an error", path, resp.StatusCode)
		}
	}
}

// TestPageNeedsNoOtherOrigin keeps the page working with no internet: every URL it names is relative to the member.
func TestPageNeedsNoOtherOrigin(t *testing.T) {
	h := monitor.Handler()
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"|getJSON\("([^"]*)"\)`)
	for _, file := range []string{"", "monitor.js", "monitor.css"} {
		_, body := get(t, h, monitor.Path+file)
		for _, m := range refs.FindAllStringSubmatch(body, -1) {
			for _, url := range m[1:] {
				if strings.Contains(url, "//") {
					t.Errorf("%s refers to another origin: %s", monitor.Path+file, url)
				}
			}
		}
		if strings.Contains(body, "@import") || strings.Contains(body, "url(") {
			t.Errorf("%s loads further resources", monitor.Path+file)
		}
	}
}
