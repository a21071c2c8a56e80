package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nagare/nagare/pkg/identity"
)

// Keystone validates tokens against an external Keystone (--auth keystone)
// as keystonemiddleware does: GET /v3/auth/tokens with the token as both
// X-Auth-Token and X-Subject-Token (a token may always validate itself),
// cached briefly so a request costs a round trip to Keystone only once per
// token per cache lifetime. It is an identity.Validator that speaks
// Keystone's HTTP API, so it lives here, beside this package's server of
// the same API, rather than in package identity.
type Keystone struct {
	url    string // ends in /v3
	client *http.Client
	cache  *identity.TokenCache
}

// NewKeystone returns a validator for the Keystone at url (its root, or
// its /v3 endpoint).
func NewKeystone(url string) *Keystone {
	url = strings.TrimRight(url, "/")
	if !strings.HasSuffix(url, "/v3") {
		url += "/v3"
	}
	return &Keystone{url: url, client: &http.Client{Timeout: 10 * time.Second}, cache: identity.NewTokenCache(60*time.Second, 100000)}
}

// URL is the Keystone v3 endpoint tokens are validated at.
func (k *Keystone) URL() string { return k.url }

// Validate implements identity.Validator.
func (k *Keystone) Validate(ctx context.Context, tok string) (*identity.Context, error) {
	now := time.Now()
	if c := k.cache.Get(tok, now); c != nil {
		return c, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url+"/auth/tokens?nocatalog", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Auth-Token", tok)
	req.Header.Set("X-Subject-Token", tok)
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("keystone at %s: %w", k.url, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden:
		return nil, identity.ErrInvalidToken
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("keystone at %s answered %s to a token validation", k.url, resp.Status)
	}
	var body struct {
		Token struct {
			ExpiresAt string `json:"expires_at"`
			User      struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"user"`
			Project *struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"project"`
			Roles []struct {
				Name string `json:"name"`
			} `json:"roles"`
		} `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("keystone at %s: unreadable token document: %w", k.url, err)
	}
	t := body.Token
	c := &identity.Context{UserID: t.User.ID, UserName: t.User.Name, Token: tok}
	if t.Project != nil {
		c.ProjectID, c.ProjectName = t.Project.ID, t.Project.Name
	}
	for _, r := range t.Roles {
		c.Roles = append(c.Roles, r.Name)
	}
	if e, err := time.Parse(time.RFC3339Nano, t.ExpiresAt); err == nil {
		c.ExpiresAt = e
		if !now.Before(e) {
			return nil, identity.ErrInvalidToken
		}
	}
	k.cache.Put(tok, c, now)
	return c, nil
}
