package join

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nagare/nagare/pkg/pki"
)

// The agent's side: join once with a token, keep the certificate in the
// state directory (0600), use it for etcd, and renew it at two thirds of
// its life with the current certificate.

// Files of an identity in the agent's state directory.
const (
	IdentityCertFile = "host.crt"
	IdentityKeyFile  = "host.key"
	IdentityCAFile   = "ca.crt"
	identityInfoFile = "identity.json"
)

// Identity is an agent's certificate and what came with it.
type Identity struct {
	Dir       string   `json:"-"`
	Server    string   `json:"server"`
	Name      string   `json:"name"`
	HostID    string   `json:"host_id"`
	Endpoints []string `json:"etcd_endpoints"`
	// EtcdCA is an external cluster's CA (PEM) when the server's CA did
	// not issue etcd's certificate.
	EtcdCA string `json:"etcd_ca,omitempty"`

	pool   *x509.CertPool
	mu     sync.Mutex
	cert   tls.Certificate
	hcOnce sync.Once
	hc     *http.Client
}

// JoinOptions say how an agent joins.
type JoinOptions struct {
	Server           string // https://server:9696
	Token            string
	CAFile           string // optional when the token pins the CA
	Name             string
	Addresses        []netip.Addr
	PhysicalNetworks []string
	Dir              string // state directory
}

// Join fetches the server's CA (verified against the token's pin, or the
// CA file), sends a CSR for a new key with the token, and stores the
// certificate, key and CA in Dir.
func Join(ctx context.Context, o JoinOptions) (*Identity, error) {
	tok, err := pki.ParseJoinToken(o.Token)
	if err != nil {
		return nil, err
	}
	caPEM, err := discoverCA(ctx, o.Server, tok, o.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	csr, err := pki.NewHostCSR(key, o.Name)
	if err != nil {
		return nil, err
	}
	var out Certificate
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	if err := post(ctx, hc, strings.TrimSuffix(o.Server, "/")+"/api/v1/join",
		JoinRequest{Token: o.Token, CSR: string(csr), Addresses: o.Addresses, PhysicalNetworks: o.PhysicalNetworks}, &out); err != nil {
		return nil, fmt.Errorf("join %s: %w", o.Server, err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	id := &Identity{Dir: o.Dir, Server: o.Server, Name: o.Name, HostID: out.HostID, Endpoints: out.EtcdEndpoints, EtcdCA: out.EtcdCA, pool: pool}
	if err := id.store([]byte(out.Certificate), keyPEM, caPEM); err != nil {
		return nil, err
	}
	return id, nil
}

// discoverCA fetches GET /api/v1/join/ca without trusting the server yet,
// then trusts what it got only if it is the CA the token pins (or the CA
// file's, when one is given): kubeadm's token discovery, k3s' CA hash.
func discoverCA(ctx context.Context, server string, tok pki.JoinToken, caFile string) ([]byte, error) {
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		c, err := pki.ParseCert(b)
		if err != nil {
			return nil, fmt.Errorf("CA file %s: %w", caFile, err)
		}
		if err := tok.CheckCAHash(c); err != nil {
			return nil, err
		}
		return b, nil
	}
	if tok.CAHash == "" {
		return nil, errors.New("the join token pins no CA: give the server's CA file (--ca-file)")
	}
	// Not verified here on purpose: the hash check below is the trust.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}} //nolint:gosec
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(server, "/")+"/api/v1/join/ca", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the server's CA: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch the server's CA: %s %v", resp.Status, err)
	}
	c, err := pki.ParseCert(b)
	if err != nil {
		return nil, fmt.Errorf("the server's CA: %w", err)
	}
	if err := tok.CheckCAHash(c); err != nil {
		return nil, err
	}
	return b, nil
}

// LoadIdentity reads an identity stored by Join ("" and os.ErrNotExist
// when the directory holds none).
func LoadIdentity(dir string) (*Identity, error) {
	b, err := os.ReadFile(filepath.Join(dir, identityInfoFile))
	if err != nil {
		return nil, err
	}
	id := &Identity{Dir: dir}
	if err := json.Unmarshal(b, id); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, identityInfoFile), err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, IdentityCAFile))
	if err != nil {
		return nil, err
	}
	id.pool = x509.NewCertPool()
	if !id.pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: no certificate", filepath.Join(dir, IdentityCAFile))
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, IdentityCertFile), filepath.Join(dir, IdentityKeyFile))
	if err != nil {
		return nil, fmt.Errorf("host certificate in %s: %w", dir, err)
	}
	id.cert = cert
	return id, nil
}

func (id *Identity) store(certPEM, keyPEM, caPEM []byte) error {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("the issued certificate: %w", err)
	}
	info, err := json.Marshal(id)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(id.Dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{IdentityKeyFile, keyPEM}, {IdentityCertFile, certPEM}, {IdentityCAFile, caPEM}, {identityInfoFile, info}} {
		if err := pki.WriteFile(filepath.Join(id.Dir, f.name), f.data, 0o600); err != nil {
			return err
		}
	}
	id.mu.Lock()
	id.cert = cert
	id.mu.Unlock()
	return nil
}

// Certificate is the current certificate (its Leaf parsed).
func (id *Identity) Certificate() tls.Certificate {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.cert
}

// TLSConfig is the client configuration for etcd and the server: the
// current certificate on every new connection, so a renewed one is used
// as soon as a connection is made.
func (id *Identity) TLSConfig() *tls.Config {
	return &tls.Config{
		RootCAs:    id.pool,
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c := id.Certificate()
			return &c, nil
		},
	}
}

// EtcdTLSConfig is TLSConfig for etcd: it also trusts an external
// cluster's own CA.
func (id *Identity) EtcdTLSConfig() *tls.Config {
	t := id.TLSConfig()
	if id.EtcdCA != "" {
		t.RootCAs = id.pool.Clone()
		t.RootCAs.AppendCertsFromPEM([]byte(id.EtcdCA))
	}
	return t
}

// Renew sends a CSR for a new key, authenticated by the current
// certificate, and stores the answer.
func (id *Identity) Renew(ctx context.Context) error {
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	csr, err := pki.NewHostCSR(key, id.Name)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: id.TLSConfig()}}
	var out Certificate
	if err := post(ctx, hc, strings.TrimSuffix(id.Server, "/")+"/api/v1/join/renew", RenewRequest{CSR: string(csr)}, &out); err != nil {
		return fmt.Errorf("renew the host certificate at %s: %w", id.Server, err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	id.EtcdCA = out.EtcdCA
	caPEM, err := os.ReadFile(filepath.Join(id.Dir, IdentityCAFile))
	if err != nil {
		return err
	}
	return id.store([]byte(out.Certificate), keyPEM, caPEM)
}

// client is an HTTP client of the server authenticated by the current
// certificate; one per identity, so its connections are reused.
func (id *Identity) client() *http.Client {
	id.hcOnce.Do(func() {
		id.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: id.TLSConfig()}}
	})
	return id.hc
}

func (id *Identity) url(path string) string { return strings.TrimSuffix(id.Server, "/") + path }

// RenewDue is when the certificate should be renewed: at two thirds of
// its life.
func (id *Identity) RenewDue() time.Time {
	c := id.Certificate()
	leaf := c.Leaf
	if leaf == nil {
		return time.Now()
	}
	return leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
}

// KeepRenewed renews the certificate when due until ctx is done, retrying
// failures every retry (a revoked host keeps failing, and its certificate
// then expires).
func (id *Identity) KeepRenewed(ctx context.Context, retry time.Duration, log *slog.Logger) error {
	for {
		wait := time.Until(id.RenewDue())
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if err := id.Renew(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Warn("host certificate renewal failed; retrying", "err", err, "retry_in", retry)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(retry):
			}
			continue
		}
		log.Info("host certificate renewed", "not_after", id.Certificate().Leaf.NotAfter)
	}
}

func post(ctx context.Context, hc *http.Client, url string, in, out any) error {
	return send(ctx, hc, http.MethodPost, url, in, out)
}

// send sends in (nil: no body) and decodes the answer into out (nil: none
// expected); a non-2xx answer is a *StatusError.
func send(ctx context.Context, hc *http.Client, method, url string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e errorBody
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return &StatusError{Status: resp.StatusCode, Message: e.Error.Message}
		}
		return &StatusError{Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// StatusError is a refusal of the server.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}
