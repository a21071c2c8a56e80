package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Client speaks Nagare's native REST API (/api/v1). It knows collections
// and JSON, nothing about object types: the table and the model schema
// decide what to ask for.
type Client struct {
	base  string // e.g. http://127.0.0.1:9696, no trailing slash
	http  *http.Client
	token string // sent as X-Auth-Token when set
}

// SetToken makes the client authenticate with a Keystone token.
func (c *Client) SetToken(token string) { c.token = token }

// Login authenticates with a password against the server's identity
// service (Keystone v3: POST /identity/v3/auth/tokens, scoped to a project
// of domain Default) and keeps the token for later requests. It returns
// when the token expires (zero if the server did not say).
func (c *Client) Login(ctx context.Context, user, password, project string) (time.Time, error) {
	body := map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{
			"user": map[string]any{"name": user, "password": password, "domain": map[string]string{"name": "Default"}}}},
		"scope": map[string]any{"project": map[string]any{"name": project, "domain": map[string]string{"name": "Default"}}},
	}}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/identity/v3/auth/tokens", bytes.NewReader(b))
	if err != nil {
		return time.Time{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return time.Time{}, &TransportError{Err: err}
	}
	defer resp.Body.Close()
	var tok struct {
		Token struct {
			ExpiresAt time.Time `json:"expires_at"`
		} `json:"token"`
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return time.Time{}, &TransportError{Err: err}
	}
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Subject-Token") == "" {
		return time.Time{}, fmt.Errorf("log in as %s (project %s): the identity service answered %d %s", user, project, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	c.token = resp.Header.Get("X-Subject-Token")
	if json.Unmarshal(answer, &tok) != nil {
		return time.Time{}, nil // a token without a readable expiry is used, not cached
	}
	return tok.Token.ExpiresAt, nil
}

// NewClient returns a client for the API at base.
func NewClient(base string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("API URL %q is not an http(s) URL like http://127.0.0.1:9696", base)
	}
	return &Client{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// SetCACert makes the client trust only the CA in file (PEM) for an
// https API: nagare-server's CA (DATA-DIR/pki/ca.crt), as openstack's
// --os-cacert.
func (c *Client) SetCACert(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return fmt.Errorf("CA certificate %s: no PEM certificate in it", file)
	}
	c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return nil
}

// APIError is an error answer from the server.
type APIError struct {
	Status  int
	Type    string
	Field   string
	Message string
}

func (e *APIError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return fmt.Sprintf("server answered %d %s", e.Status, http.StatusText(e.Status))
}

// raw is one API object's fields, undecoded: the model schema decodes each
// field when it is shown, and fields a newer server adds pass through.
type raw = map[string]json.RawMessage

// item is one API object: its fields and the bytes the server sent, which
// -o json prints unchanged.
type item struct {
	fields raw
	bytes  json.RawMessage
}

func decodeItem(b json.RawMessage) (item, error) {
	var f raw
	if err := json.Unmarshal(b, &f); err != nil {
		return item{}, err
	}
	if f == nil {
		return item{}, errors.New("null instead of an object")
	}
	return item{fields: f, bytes: b}, nil
}

// Ping checks that the server answers at all; run before the first command
// so a wrong URL is a startup error (exit 2) rather than a failed command.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodGet, "/hosts", nil)
	return err
}

// List gets a collection (path relative to /api/v1, e.g. "/bridges" or
// "/hosts/{id}/bindings").
func (c *Client) List(ctx context.Context, path string) ([]item, error) {
	b, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	var list []json.RawMessage
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("GET %s: answer is not a JSON array: %w", path, err)
	}
	out := make([]item, len(list))
	for i, b := range list {
		if out[i], err = decodeItem(b); err != nil {
			return nil, fmt.Errorf("GET %s: element %d is not a JSON object: %w", path, i, err)
		}
	}
	return out, nil
}

// Get fetches a document that is neither a collection nor an object of
// the model (a host's datapath status).
func (c *Client) Get(ctx context.Context, path string) ([]byte, error) {
	return c.do(ctx, http.MethodGet, path, nil)
}

// Post sends a request that stores nothing (a trace) and returns the answer.
func (c *Client) Post(ctx context.Context, path string, body any) ([]byte, error) {
	return c.do(ctx, http.MethodPost, path, body)
}

// Create posts an object and returns what the server stored.
func (c *Client) Create(ctx context.Context, path string, body any) (item, error) {
	return c.object(ctx, http.MethodPost, path, body)
}

// Update changes the fields present in body (PUT is a partial update).
func (c *Client) Update(ctx context.Context, path string, body any) (item, error) {
	return c.object(ctx, http.MethodPut, path, body)
}

// Delete removes an object.
func (c *Client) Delete(ctx context.Context, path string) error {
	_, err := c.do(ctx, http.MethodDelete, path, nil)
	return err
}

func (c *Client) object(ctx context.Context, method, path string, body any) (item, error) {
	b, err := c.do(ctx, method, path, body)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return item{}, err
	}
	it, err := decodeItem(b)
	if err != nil {
		return item{}, fmt.Errorf("%s %s: answer is not a JSON object: %w", method, path, err)
	}
	return it, nil
}

func (c *Client) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/api/v1"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("X-Auth-Token", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &TransportError{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, &TransportError{Err: err}
	}
	if resp.StatusCode/100 == 2 {
		return b, nil
	}
	var e struct {
		Error struct {
			Code    int    `json:"code"`
			Type    string `json:"type"`
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"error"`
	}
	ae := &APIError{Status: resp.StatusCode}
	if json.Unmarshal(b, &e) == nil {
		ae.Type, ae.Field, ae.Message = e.Error.Type, e.Error.Field, e.Error.Message
	}
	if ae.Message == "" {
		ae.Message = strings.TrimSpace(string(b))
		if ae.Message == "" || len(ae.Message) > 200 {
			ae.Message = fmt.Sprintf("%s %s: server answered %s", method, path, resp.Status)
		}
	}
	return nil, ae
}

// TransportError is a failure to talk to the server at all.
type TransportError struct{ Err error }

func (e *TransportError) Error() string { return e.Err.Error() }
func (e *TransportError) Unwrap() error { return e.Err }

// isNotFound reports a 404 answer.
func isNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}
