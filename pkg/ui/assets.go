package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// The page: plain files, embedded so that the binary serves them with no
// network and no build step.
//
//go:embed web
var web embed.FS

// contentSecurityPolicy lets the page load and connect to its own origin
// only: no CDN, no inline script, no eval, no framing by another site. A
// name that somehow became markup still could not run.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func assets() http.Handler {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic("ui: the embedded page is missing: " + err.Error())
	}
	files := http.StripPrefix(Prefix+"/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on the dashboard's files")
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		// Revalidate every time: after an upgrade the page and its
		// modules must come from the same release.
		h.Set("Cache-Control", "no-cache")
		if strings.HasSuffix(r.URL.Path, ".js") {
			h.Set("Content-Type", "text/javascript; charset=utf-8")
		}
		files.ServeHTTP(w, r)
	})
}
