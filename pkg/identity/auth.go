package identity

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Context is who is calling: what validating the request's token yielded.
// Ids are in the form the identity service prints them (Keystone's 32 hex
// digits for this package's own service; whatever an external Keystone uses).
type Context struct {
	UserID, UserName       string
	ProjectID, ProjectName string
	Roles                  []string // role names
	Token                  string
	ExpiresAt              time.Time
	// NoAuth marks the context of a server running --auth noauth: every
	// caller is an administrator.
	NoAuth bool
}

// HasRole reports whether the caller holds the role (by name, as Keystone
// compares them: case-insensitively).
func (c *Context) HasRole(name string) bool {
	return slices.ContainsFunc(c.Roles, func(r string) bool { return strings.EqualFold(r, name) })
}

// IsAdmin reports whether the caller may see and change everything.
func (c *Context) IsAdmin() bool { return c.NoAuth || c.HasRole(RoleAdmin) }

// CanWrite reports whether the caller may change its project's resources:
// any role but a lone reader role (Keystone's reader is read-only by the
// OpenStack default policies; older deployments' custom roles are owners).
func (c *Context) CanWrite() bool {
	if c.IsAdmin() || c.HasRole(RoleMember) {
		return true
	}
	for _, r := range c.Roles {
		if !strings.EqualFold(r, RoleReader) {
			return true
		}
	}
	return false
}

type ctxKey struct{}

// WithContext returns ctx carrying the caller.
func WithContext(ctx context.Context, c *Context) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// FromContext returns the caller a middleware put on ctx, or nil.
func FromContext(ctx context.Context) *Context {
	c, _ := ctx.Value(ctxKey{}).(*Context)
	return c
}

// ErrInvalidToken is a token that is malformed, forged, expired, revoked or
// whose user or project is gone or disabled: 401 either way, so a caller
// learns nothing about which.
var ErrInvalidToken = errors.New("the token is not valid")

// Validator turns a token into the caller's context (ErrInvalidToken when
// it is not valid).
type Validator interface {
	Validate(ctx context.Context, token string) (*Context, error)
}

// Authenticate lets a request through to h only with a valid X-Auth-Token,
// putting the caller on its context; otherwise it answers 401 as
// keystonemiddleware does (clients key on the status and WWW-Authenticate).
func Authenticate(v Validator, authURL func(*http.Request) string, log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("X-Auth-Token")
		if tok == "" {
			Unauthorized(w, authURL(r))
			return
		}
		c, err := v.Validate(r.Context(), tok)
		if errors.Is(err, ErrInvalidToken) {
			Unauthorized(w, authURL(r))
			return
		}
		if err != nil {
			log.Error("token validation failed", "err", err)
			writeError(w, http.StatusServiceUnavailable, "Service Unavailable", "The identity service cannot validate tokens right now: "+err.Error())
			return
		}
		h.ServeHTTP(w, r.WithContext(WithContext(r.Context(), c)))
	})
}

// NoAuth lets every request through as an administrator (--auth noauth, for
// demos). The project is the X-Project-Id header's, else "admin".
func NoAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.Header.Get("X-Project-Id")
		if p == "" {
			p = "admin"
		}
		c := &Context{UserID: "noauth", UserName: "noauth", ProjectID: p, ProjectName: p, Roles: []string{RoleAdmin}, NoAuth: true}
		h.ServeHTTP(w, r.WithContext(WithContext(r.Context(), c)))
	})
}

// Unauthorized answers 401 the way Keystone and keystonemiddleware do.
func Unauthorized(w http.ResponseWriter, authURL string) {
	if authURL != "" {
		w.Header().Set("WWW-Authenticate", `Keystone uri="`+authURL+`"`)
	}
	writeError(w, http.StatusUnauthorized, "Unauthorized", "The request you have made requires authentication.")
}

// writeError writes Keystone's error document.
func writeError(w http.ResponseWriter, code int, title, msg string) {
	var b struct {
		Error struct {
			Code    int    `json:"code"`
			Title   string `json:"title"`
			Message string `json:"message"`
		} `json:"error"`
	}
	b.Error.Code, b.Error.Title, b.Error.Message = code, title, msg
	writeJSON(w, code, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// cache remembers validated tokens for a short while, as
// keystonemiddleware's token cache does: validation then costs nothing on
// the request path, and a revoked token, a deleted user or a removed role
// takes effect within the cache's lifetime on every server replica.
type cache struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	entries map[string]cached
}

type cached struct {
	c     *Context
	until time.Time
}

func newCache(ttl time.Duration, max int) *cache {
	return &cache{ttl: ttl, max: max, entries: map[string]cached{}}
}

func (k *cache) get(tok string, now time.Time) *Context {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.entries[tok]
	if !ok {
		return nil
	}
	if now.After(e.until) {
		delete(k.entries, tok)
		return nil
	}
	return e.c
}

func (k *cache) put(tok string, c *Context, now time.Time) {
	until := now.Add(k.ttl)
	if !c.ExpiresAt.IsZero() && c.ExpiresAt.Before(until) {
		until = c.ExpiresAt
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.entries) >= k.max {
		for t, e := range k.entries {
			if now.After(e.until) {
				delete(k.entries, t)
			}
		}
		if len(k.entries) >= k.max {
			clear(k.entries) // a flood of distinct tokens: start over rather than grow
		}
	}
	k.entries[tok] = cached{c, until}
}

func (k *cache) drop(tok string) {
	k.mu.Lock()
	delete(k.entries, tok)
	k.mu.Unlock()
}
