package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nagare/nagare/pkg/api/native"
	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Prefix is where the dashboard is mounted.
const Prefix = "/ui"

// Options configure the dashboard.
type Options struct {
	Store *nsdb.Store
	// Scope names what a project member may see; nil: members see
	// nothing of the topology.
	Scope Scoper
	// Auth is the server's authentication mode ("password", "keystone",
	// "noauth"): whether the login page asks for a password (checked by
	// the server's own /identity/v3), for a token (an external Keystone's,
	// which the page cannot reach), or for nothing.
	Auth string
	Log  *slog.Logger
}

// UI is the dashboard.
type UI struct {
	store *nsdb.Store
	auth  string
	log   *slog.Logger
	hub   *hub
	hist  *history
}

// New returns the dashboard; Run feeds it.
func New(o Options) *UI {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &UI{store: o.Store, auth: o.Auth, log: o.Log, hub: newHub(o.Scope, o.Log), hist: newHistory()}
}

// Run watches the NSDB for the dashboard until ctx ends; then every event
// stream ends too, so the HTTP server's shutdown does not wait for them.
func (u *UI) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { u.hub.run(ctx, u.store) })
	wg.Go(func() {
		if err := u.hist.run(ctx, u.store); err != nil && ctx.Err() == nil {
			u.log.Error("dashboard: datapath history watch ended", "err", err)
		}
	})
	wg.Wait()
}

// Register mounts the page (public: it holds no data) and the dashboard's
// endpoints (behind auth, the APIs' authentication) on mux.
func (u *UI) Register(mux *http.ServeMux, auth func(http.Handler) http.Handler) {
	mux.Handle(Prefix+"/", assets())
	mux.Handle("GET "+Prefix, http.RedirectHandler(Prefix+"/", http.StatusMovedPermanently))
	mux.HandleFunc("GET "+Prefix+"/api/config", u.config)
	api := http.NewServeMux()
	api.HandleFunc("GET "+Prefix+"/api/whoami", u.whoami)
	api.HandleFunc("GET "+Prefix+"/api/topology", u.topology)
	api.HandleFunc("GET "+Prefix+"/api/events", u.events)
	api.HandleFunc("GET "+Prefix+"/api/objects/{kind}/{id}", u.details)
	api.HandleFunc("GET "+Prefix+"/api/hosts/{id}/datapath", u.hostDatapath)
	api.HandleFunc(Prefix+"/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such dashboard endpoint: "+r.Method+" "+r.URL.Path)
	})
	mux.Handle(Prefix+"/api/", noStore(auth(api)))
}

// noStore keeps every answer out of caches: they are one caller's view.
func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// config tells the login page how to log in; it is public and says
// nothing but the mode.
func (u *UI) config(w http.ResponseWriter, r *http.Request) {
	c := struct {
		Auth        string `json:"auth"`
		IdentityURL string `json:"identity_url,omitempty"`
	}{Auth: u.auth}
	if u.auth == "password" {
		c.IdentityURL = "/identity/v3"
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, c)
}

func (u *UI) whoami(w http.ResponseWriter, r *http.Request) {
	c := identity.FromContext(r.Context())
	if c == nil {
		writeError(w, http.StatusUnauthorized, "not logged in")
		return
	}
	var exp string
	if !c.ExpiresAt.IsZero() {
		exp = c.ExpiresAt.UTC().Format(time.RFC3339)
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": c.UserName, "user_id": c.UserID, "project": c.ProjectName,
		"project_id": c.ProjectID, "roles": c.Roles, "admin": c.IsAdmin(), "noauth": c.NoAuth, "expires_at": exp})
}

// viewer is the caller's viewer, or an answer already written.
func (u *UI) viewer(w http.ResponseWriter, r *http.Request) (viewer, bool) {
	c := identity.FromContext(r.Context())
	if c == nil {
		writeError(w, http.StatusUnauthorized, "not logged in")
		return viewer{}, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	if err := u.hub.waitReady(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return viewer{}, false
	}
	v, err := u.hub.viewerOf(ctx, c)
	if err != nil {
		u.log.Error("dashboard: cannot scope a caller", "project", c.ProjectID, "err", err)
		writeError(w, http.StatusServiceUnavailable, "cannot work out what your project may see: "+err.Error())
		return viewer{}, false
	}
	return v, true
}

// topology answers the caller's view at once (what the event stream's
// first event holds), for scripts and tests.
func (u *UI) topology(w http.ResponseWriter, r *http.Request) {
	v, ok := u.viewer(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, u.hub.view(v))
}

// heartbeat keeps idle streams open through proxies and notices readers
// that went away.
const heartbeat = 15 * time.Second

// maxStream bounds a stream's life: the page reconnects, which validates
// its token again (a revoked token or a removed role takes effect) and
// starts from a fresh snapshot.
const maxStream = 10 * time.Minute

// events is the live view as Server-Sent Events: "snapshot" first, then
// "change" events (objects put or deleted, hosts' liveness), each filtered
// for the caller. The page reads it with fetch, not EventSource, because
// EventSource cannot send the X-Auth-Token header.
func (u *UI) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	v, ok := u.viewer(w, r)
	if !ok {
		return
	}
	s, err := u.hub.subscribe(v)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	defer u.hub.unsubscribe(s)
	life := maxStream
	if c := identity.FromContext(r.Context()); !c.ExpiresAt.IsZero() {
		life = min(life, time.Until(c.ExpiresAt))
	}
	end := time.NewTimer(life)
	defer end.Stop()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		u.log.Error("dashboard: this server cannot stream events", "err", err)
		return
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-end.C:
			return
		case <-tick.C:
			_, err = fmt.Fprint(w, ": keepalive\n\n")
		case e, open := <-s.out:
			if !open {
				return
			}
			err = writeEvent(w, e)
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return // the reader went away
		}
	}
}

// writeEvent frames one event. data is JSON, which holds no raw newline,
// so it is one data line and nothing in it can start another event.
func writeEvent(w http.ResponseWriter, e event) error {
	_, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.name, e.data)
	return err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in the native API's error shape.
func writeError(w http.ResponseWriter, status int, msg string) {
	var b native.ErrorBody
	b.Error.Code, b.Error.Type, b.Error.Message = status, strings.ReplaceAll(http.StatusText(status), " ", ""), msg
	writeJSON(w, status, b)
}

// requireAdmin answers 403 unless the caller is an administrator.
func requireAdmin(w http.ResponseWriter, r *http.Request, what string) bool {
	if c := identity.FromContext(r.Context()); c != nil && c.IsAdmin() {
		return true
	}
	writeError(w, http.StatusForbidden, what+" is for administrators: hosts and datapaths are infrastructure")
	return false
}
