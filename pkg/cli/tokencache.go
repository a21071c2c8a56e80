package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// TokenCache keeps the tokens the CLI logged in for across invocations, so
// that a script of a hundred `nagare -e` lines logs in once rather than a
// hundred times (a password login costs a bcrypt hash on the server). One
// file per API URL, user and project, readable by its owner only (0600 in
// a 0700 directory), as openstack's client caches tokens.
//
// A cached token is used while it has a minute left; one the server
// refuses (revoked, or the server's keys changed) is forgotten and the
// password is used again.
type TokenCache struct {
	Dir string // "" disables the cache
}

// DefaultTokenCache is the user's cache directory's nagare/tokens
// ($XDG_CACHE_HOME or ~/.cache); disabled when there is none.
func DefaultTokenCache() TokenCache {
	d, err := os.UserCacheDir()
	if err != nil {
		return TokenCache{}
	}
	return TokenCache{Dir: filepath.Join(d, "nagare", "tokens")}
}

// tokenMargin: a token expiring sooner than this is not reused (a long
// script would see it expire midway).
const tokenMargin = time.Minute

type cachedToken struct {
	API       string    `json:"api"`
	User      string    `json:"user"`
	Project   string    `json:"project"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// path is the file of one (API, user, project): a hash, so that names
// with slashes or odd characters need no escaping.
func (c TokenCache) path(api, user, project string) string {
	h := sha256.Sum256([]byte(api + "\x00" + user + "\x00" + project))
	return filepath.Join(c.Dir, hex.EncodeToString(h[:12])+".json")
}

// Load returns the cached token of user in project at api, if there is one
// with time left. A cache file others can read is ignored.
func (c TokenCache) Load(api, user, project string, now time.Time) (string, bool) {
	if c.Dir == "" {
		return "", false
	}
	p := c.path(api, user, project)
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm()&0o077 != 0 {
		return "", false
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", false
	}
	var t cachedToken
	if json.Unmarshal(b, &t) != nil || t.Token == "" || t.API != api || t.User != user || t.Project != project ||
		t.ExpiresAt.Before(now.Add(tokenMargin)) {
		return "", false
	}
	return t.Token, true
}

// Store caches a token until it expires.
func (c TokenCache) Store(api, user, project, token string, expires time.Time) error {
	if c.Dir == "" {
		return nil
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	b, err := json.Marshal(cachedToken{API: api, User: user, Project: project, Token: token, ExpiresAt: expires})
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(c.Dir, ".token-*")
	if err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("token cache: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("token cache: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	if err := os.Rename(f.Name(), c.path(api, user, project)); err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	return nil
}

// Forget removes a cached token.
func (c TokenCache) Forget(api, user, project string) error {
	if c.Dir == "" {
		return nil
	}
	if err := os.Remove(c.path(api, user, project)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("token cache: %w", err)
	}
	return nil
}

// Credentials are how the CLI authenticates: a token, or a user's
// password scoped to a project.
type Credentials struct {
	Token                   string
	User, Password, Project string
}

// Connect authenticates the client and checks that the API answers: with
// the token given, else with a cached one, else by logging in with the
// password (and caching the token). A cached token the server refuses is
// forgotten and the password used.
func (c *Client) Connect(ctx context.Context, cr Credentials, cache TokenCache) error {
	switch {
	case cr.Token != "":
		c.SetToken(cr.Token)
	case cr.User != "":
		if tok, ok := cache.Load(c.base, cr.User, cr.Project, time.Now()); ok {
			c.SetToken(tok)
			err := c.Ping(ctx)
			if !isUnauthorized(err) {
				return err
			}
			if err := cache.Forget(c.base, cr.User, cr.Project); err != nil {
				return err
			}
		}
		expires, err := c.Login(ctx, cr.User, cr.Password, cr.Project)
		if err != nil {
			return err
		}
		if err := cache.Store(c.base, cr.User, cr.Project, c.token, expires); err != nil {
			return err
		}
	}
	return c.Ping(ctx)
}

func isUnauthorized(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusUnauthorized
}
