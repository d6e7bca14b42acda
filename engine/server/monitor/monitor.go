package monitor

import (
	"embed"
	"net/http"
)

// Path is where the admin server mounts Handler; the page's relative URLs to the API assume it sits one level below the root.
const Path = "/monitor/"

//go:embed index.html monitor.css monitor.js
var assets embed.FS

// Handler serves the Mirror Monitor's files under Path.
func Handler() http.Handler {
	files := http.StripPrefix(Path, http.FileServerFS(assets))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// The embedded files change with the binary; revalidating on each load shows the new page right after an upgrade.
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		// Everything the page needs comes from this member: refuse any other origin outright.
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		files.ServeHTTP(w, r)
	})
}
