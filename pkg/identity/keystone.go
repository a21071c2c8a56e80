package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Keystone validates tokens against an external Keystone (--auth keystone),
// as keystonemiddleware does: GET /v3/auth/tokens with the token as both
// X-Auth-Token and X-Subject-Token (a token may always validate itself),
// cached briefly so a request costs a round trip to Keystone only once per
// token per cache lifetime.
type Keystone struct {
	url    string // ends in /v3
	client *http.Client
	cache  *cache
}

// NewKeystone returns a validator for the Keystone at url (its root, or
// its /v3 endpoint).
func NewKeystone(url string) *Keystone {
	url = strings.TrimRight(url, "/")
	if !strings.HasSuffix(url, "/v3") {
		url += "/v3"
	}
	return &Keystone{url: url, client: &http.Client{Timeout: 10 * time.Second}, cache: newCache(60*time.Second, 100000)}
}

// URL is the Keystone v3 endpoint tokens are validated at.
func (k *Keystone) URL() string { return k.url }

// Validate implements Validator.
func (k *Keystone) Validate(ctx context.Context, tok string) (*Context, error) {
	now := time.Now()
	if c := k.cache.get(tok, now); c != nil {
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
		return nil, ErrInvalidToken
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
	c := &Context{UserID: t.User.ID, UserName: t.User.Name, Token: tok}
	if t.Project != nil {
		c.ProjectID, c.ProjectName = t.Project.ID, t.Project.Name
	}
	for _, r := range t.Roles {
		c.Roles = append(c.Roles, r.Name)
	}
	if e, err := time.Parse(time.RFC3339Nano, t.ExpiresAt); err == nil {
		c.ExpiresAt = e
		if !now.Before(e) {
			return nil, ErrInvalidToken
		}
	}
	k.cache.put(tok, c, now)
	return c, nil
}
