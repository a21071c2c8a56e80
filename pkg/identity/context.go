package identity

import (
	"context"
	"errors"
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
	// What the token says of itself (this package's tokens only): how
	// it was obtained, when, and the audit id that revokes it.
	Methods  []string
	IssuedAt time.Time
	AuditID  string
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

// TokenCache remembers validated tokens for a short while, as
// keystonemiddleware's token cache does: validation then costs nothing on
// the request path, and a revoked token, a deleted user or a removed role
// takes effect within the cache's lifetime on every server replica. Both
// this package's service and a validator of an external Keystone use one.
type TokenCache struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	entries map[string]cached
}

type cached struct {
	c     *Context
	until time.Time
}

// NewTokenCache returns a cache keeping each token at most ttl (and never
// past its expiry), holding at most max tokens.
func NewTokenCache(ttl time.Duration, max int) *TokenCache {
	return &TokenCache{ttl: ttl, max: max, entries: map[string]cached{}}
}

// Get is the context a token validated to, nil when unknown or stale.
func (k *TokenCache) Get(tok string, now time.Time) *Context {
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

// Put remembers what a token validated to.
func (k *TokenCache) Put(tok string, c *Context, now time.Time) {
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

// Drop forgets a token (revoked).
func (k *TokenCache) Drop(tok string) {
	k.mu.Lock()
	delete(k.entries, tok)
	k.mu.Unlock()
}
