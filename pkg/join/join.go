// Package join is how a hypervisor's agent gets its identity: join tokens
// (kubeadm's bootstrap tokens: an id and a secret, stored hashed with an
// expiry and a bound on uses), the certificate the server signs for the
// agent's CSR when it presents one, renewal with the current certificate
// before it expires, and revocation of a host.
//
// A host's certificate names the host (CN "host:<name>", package pki);
// when it is issued the server creates the host's object (only the server
// writes the topology) and the host's etcd user and role (nsdb.GrantHost),
// which let it write its own runtime state and nothing else. Revoking a
// host deletes that user at once (etcd refuses its next request), ends
// its liveness lease (its state goes), adds its certificates to the CRL
// etcd checks on every new connection, and refuses its renewals and
// joins.
//
// Like packages neutron and identity this is the domain: typed requests,
// errors of a Class; package api/join is the HTTP side.
package join

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/pki"
)

// Token is a join token as stored: the secret only as its SHA-256.
type Token struct {
	model.Meta
	TokenID     string `json:"token_id" nagare:"required,unique"`
	SecretHash  string `json:"secret_hash"`
	ExpiresAt   int64  `json:"expires_at"` // unix seconds
	MaxUses     int    `json:"max_uses,omitempty"`
	Uses        int    `json:"uses"`
	Description string `json:"description,omitempty"`
}

// Credential is what the server knows of a host's certificates.
type Credential struct {
	model.Meta
	Name   string `json:"name" nagare:"required,unique"`
	HostID string `json:"host_id"`
	// Serials of the certificates issued to the host, hex, newest last;
	// the CRL lists them all once the host is revoked.
	Serials   []string `json:"serials"`
	Revoked   bool     `json:"revoked,omitempty"`
	RevokedAt int64    `json:"revoked_at,omitempty"`
}

// SignedKey records a public key the server has signed, so a CSR replayed
// (or a key reused) is refused: every join and renewal brings a new key.
type SignedKey struct {
	model.Meta
	Host string `json:"host"`
}

// The kinds live under svc/, which agents cannot read.
var (
	TokenKind      = model.RegisterInternal("join-token", "join-tokens", "A join token, hashed.", &Token{}, nil)
	CredentialKind = model.RegisterInternal("host-credential", "host-credentials", "A host's certificates.", &Credential{}, nil)
	SignedKeyKind  = model.RegisterInternal("signed-key", "signed-keys", "A public key signed for a host.", &SignedKey{}, nil)
)

var namespace = uuid.MustParse("0d7f1a52-9a53-4b8e-8a7c-5b2f3e1d9c41")

func derivedID(parts ...string) string {
	id := namespace
	for _, p := range parts {
		id = uuid.NewSHA1(id, []byte(p))
	}
	return id.String()
}

func tokenObjID(tokenID string) string { return derivedID("token", tokenID) }
func credentialID(name string) string  { return derivedID("credential", name) }

// Class is the kind of refusal; the API maps it to a status.
type Class int

// The classes.
const (
	Internal     Class = iota
	BadRequest         // malformed token, CSR or field
	Unauthorized       // unknown, wrong, expired or used-up token; no certificate
	Forbidden          // a revoked host
	Conflict           // a replayed CSR (a key already signed)
	NotFound           // no such host
	Unavailable        // this server cannot sign (no CA key)
)

// Error is a refusal.
type Error struct {
	Class   Class
	Message string
}

func (e *Error) Error() string { return e.Message }

func refuse(c Class, format string, args ...any) *Error {
	return &Error{Class: c, Message: fmt.Sprintf(format, args...)}
}

// ErrBadToken is the one answer to every token that does not admit: which
// part was wrong is not said.
var ErrBadToken = refuse(Unauthorized, "the join token is invalid, expired or used up")

// Options configure a Service.
type Options struct {
	// CA signs host certificates; nil makes Join and Renew Unavailable
	// (certificates are then issued outside Nagare).
	CA *pki.CA
	// CRLFile is rewritten with the revoked hosts' serials (etcd reads it
	// on every connection). Empty: none.
	CRLFile string
	// Validity of host certificates (default pki.HostValidity).
	Validity time.Duration
	// Endpoints are the etcd URLs a joined agent should use.
	Endpoints []string
	// EtcdCA is the CA (PEM) of an external cluster's serving
	// certificates, when CA did not issue them.
	EtcdCA []byte
	Log    *slog.Logger
}

// Service is the join domain of one server.
type Service struct {
	store *nsdb.Store
	opts  Options
	now   func() time.Time
	crlMu sync.Mutex
}

// New opens the service and writes the current CRL.
func New(ctx context.Context, store *nsdb.Store, opts Options) (*Service, error) {
	if opts.Validity == 0 {
		opts.Validity = pki.HostValidity
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	s := &Service{store: store, opts: opts, now: time.Now}
	if err := s.writeCRL(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// SetClock replaces the clock (tests of expiry).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// CreateToken makes a token valid for ttl and at most uses joins (0: any
// number until it expires, as kubeadm's), pinned to the CA.
func (s *Service) CreateToken(ctx context.Context, ttl time.Duration, uses int, description string) (pki.JoinToken, error) {
	if ttl <= 0 || uses < 0 {
		return pki.JoinToken{}, refuse(BadRequest, "a token needs a positive TTL and a non-negative number of uses")
	}
	caHash := ""
	if s.opts.CA != nil {
		caHash = s.opts.CA.Hash()
	}
	t := pki.NewJoinToken(caHash)
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		_, err := tx.Create(&Token{Meta: model.Meta{ID: tokenObjID(t.ID)}, TokenID: t.ID, SecretHash: t.SecretHash(),
			ExpiresAt: s.now().Add(ttl).Unix(), MaxUses: uses, Description: description})
		return err
	})
	if err != nil {
		return pki.JoinToken{}, fmt.Errorf("store the join token: %w", err)
	}
	return t, nil
}

// Request is a join: the token, the CSR, and what the host reports of
// itself (written into its host object by the server).
type Request struct {
	Token            string
	CSR              []byte
	Addresses        []netip.Addr
	PhysicalNetworks []string
}

// Issued is a signed certificate and what the agent needs with it.
type Issued struct {
	Certificate []byte // PEM
	CA          []byte // PEM
	EtcdCA      []byte // PEM; nil when CA issued etcd's certificate
	HostID      string
	Endpoints   []string
	NotAfter    time.Time
}

// Join admits a host: the token must be known, unexpired and not used
// up; the CSR valid, for a host that was not revoked, with a key never
// signed before. Then, in one NSDB transaction, the token's use is
// counted, the key recorded, the host object created (or its addresses
// updated) and the certificate's serial recorded; the host's etcd user is
// granted after. A refused join writes nothing.
func (s *Service) Join(ctx context.Context, r Request) (*Issued, error) {
	if s.opts.CA == nil {
		return nil, refuse(Unavailable, "this server has no CA key: issue host certificates yourself")
	}
	tok, err := pki.ParseJoinToken(r.Token)
	if err != nil {
		return nil, ErrBadToken
	}
	csr, name, err := pki.ParseHostCSR(r.CSR)
	if err != nil {
		return nil, refuse(BadRequest, "csr: %v", err)
	}
	keyHash, err := pki.KeyHash(csr.PublicKey)
	if err != nil {
		return nil, refuse(BadRequest, "csr: %v", err)
	}
	var cert *x509.Certificate
	var hostID string
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		o, err := tx.Get(TokenKind, tokenObjID(tok.ID))
		if errors.Is(err, model.ErrNotFound) {
			return ErrBadToken
		} else if err != nil {
			return err
		}
		t := o.(*Token)
		if !tok.SecretMatches(t.SecretHash) || s.now().Unix() >= t.ExpiresAt || t.MaxUses > 0 && t.Uses >= t.MaxUses {
			return ErrBadToken
		}
		if err := s.refuseRevokedOrReplayed(tx, name, keyHash); err != nil {
			return err
		}
		t.Uses++
		if err := tx.Put(t); err != nil {
			return err
		}
		if hostID, err = ensureHost(tx, name, r.Addresses, r.PhysicalNetworks); err != nil {
			return err
		}
		cert, err = s.record(tx, csr, name, hostID, keyHash)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.grant(ctx, cert, name, hostID)
}

// Renew signs a new key for the host whose current certificate (verified
// by TLS against the CA) is peer: the CSR must name the same host, the
// host must not be revoked, the certificate must be one the server issued
// and the key new.
func (s *Service) Renew(ctx context.Context, peer *x509.Certificate, csrPEM []byte) (*Issued, error) {
	if s.opts.CA == nil {
		return nil, refuse(Unavailable, "this server has no CA key: issue host certificates yourself")
	}
	peerName, err := peerHost(peer)
	if err != nil {
		return nil, err
	}
	csr, name, err := pki.ParseHostCSR(csrPEM)
	if err != nil {
		return nil, refuse(BadRequest, "csr: %v", err)
	}
	if name != peerName {
		return nil, refuse(BadRequest, "csr: for host %q, but the certificate is host %q's", name, peerName)
	}
	keyHash, err := pki.KeyHash(csr.PublicKey)
	if err != nil {
		return nil, refuse(BadRequest, "csr: %v", err)
	}
	var cert *x509.Certificate
	var hostID string
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		o, err := tx.Get(CredentialKind, credentialID(name))
		c, err := issuedTo(o, err, name, peer)
		if err != nil {
			return err
		}
		if err := s.refuseRevokedOrReplayed(tx, name, keyHash); err != nil {
			return err
		}
		hostID = c.HostID
		cert, err = s.record(tx, csr, name, hostID, keyHash)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.grant(ctx, cert, name, hostID)
}

// Authenticate names the host whose client certificate (verified by TLS
// against the CA) is peer: a host certificate this server issued, of a
// host not revoked. The host-claim API acts for the host it returns.
func (s *Service) Authenticate(ctx context.Context, peer *x509.Certificate) (name, hostID string, err error) {
	if name, err = peerHost(peer); err != nil {
		return "", "", err
	}
	o, err := s.store.Get(ctx, CredentialKind, credentialID(name))
	c, err := issuedTo(o, err, name, peer)
	if err != nil {
		return "", "", err
	}
	return name, c.HostID, nil
}

// peerHost is the host a client certificate names.
func peerHost(peer *x509.Certificate) (string, error) {
	if peer == nil {
		return "", refuse(Unauthorized, "this needs the host's client certificate")
	}
	name, ok := pki.HostOf(peer)
	if !ok {
		return "", refuse(Unauthorized, "the client certificate is not a host's")
	}
	return name, nil
}

// issuedTo checks that peer is a certificate this server issued to host
// name, which is not revoked, given the host's credential as read (o,
// err).
func issuedTo(o model.Object, err error, name string, peer *x509.Certificate) (*Credential, error) {
	if errors.Is(err, model.ErrNotFound) {
		return nil, refuse(Unauthorized, "host %q has no certificate from this server", name)
	} else if err != nil {
		return nil, err
	}
	c := o.(*Credential)
	if c.Revoked {
		return nil, refuse(Forbidden, "host %q is revoked", name)
	}
	if !slices.Contains(c.Serials, peer.SerialNumber.Text(16)) {
		return nil, refuse(Unauthorized, "the client certificate was not issued by this server")
	}
	return c, nil
}

func (s *Service) refuseRevokedOrReplayed(tx *nsdb.Tx, name, keyHash string) error {
	if o, err := tx.Get(CredentialKind, credentialID(name)); err == nil && o.(*Credential).Revoked {
		return refuse(Forbidden, "host %q is revoked", name)
	} else if err != nil && !errors.Is(err, model.ErrNotFound) {
		return err
	}
	if _, err := tx.Get(SignedKeyKind, derivedID("key", keyHash)); err == nil {
		return refuse(Conflict, "csr: this key was signed before (a replayed request?): make a new key")
	} else if !errors.Is(err, model.ErrNotFound) {
		return err
	}
	return nil
}

// maxSerials bounds the serials kept per host: a host renews about every
// two thirds of a validity, so 64 cover weeks of certificates, all long
// expired but the last.
const maxSerials = 64

// record signs the certificate and records its key and serial in tx.
func (s *Service) record(tx *nsdb.Tx, csr *x509.CertificateRequest, name, hostID, keyHash string) (*x509.Certificate, error) {
	cert, err := s.opts.CA.SignHost(csr, name, s.opts.Validity)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Create(&SignedKey{Meta: model.Meta{ID: derivedID("key", keyHash)}, Host: name}); err != nil {
		return nil, err
	}
	c := &Credential{Meta: model.Meta{ID: credentialID(name)}, Name: name}
	if o, err := tx.Get(CredentialKind, c.ID); err == nil {
		c = o.(*Credential)
	} else if !errors.Is(err, model.ErrNotFound) {
		return nil, err
	}
	c.HostID = hostID
	c.Serials = append(c.Serials, cert.SerialNumber.Text(16))
	if len(c.Serials) > maxSerials {
		c.Serials = c.Serials[len(c.Serials)-maxSerials:]
	}
	return cert, tx.Put(c)
}

func (s *Service) grant(ctx context.Context, cert *x509.Certificate, name, hostID string) (*Issued, error) {
	if err := s.store.GrantHost(ctx, name, hostID); err != nil {
		return nil, err
	}
	s.opts.Log.Info("host certificate issued", "host", name, "host_id", hostID, "serial", cert.SerialNumber.Text(16), "not_after", cert.NotAfter)
	return &Issued{Certificate: pki.EncodeCert(cert.Raw), CA: s.opts.CA.CertPEM, EtcdCA: s.opts.EtcdCA, HostID: hostID,
		Endpoints: s.opts.Endpoints, NotAfter: cert.NotAfter}, nil
}

// ensureHost finds or creates the host object of name and sets what the
// agent reported.
func ensureHost(tx *nsdb.Tx, name string, addrs []netip.Addr, physnets []string) (string, error) {
	hs, err := tx.List(model.HostKind, "name", name)
	if err != nil {
		return "", err
	}
	if len(hs) == 0 {
		o, err := tx.Create(&model.Host{Name: name, Addresses: addrs, PhysicalNetworks: physnets})
		if err != nil {
			return "", err
		}
		return o.GetMeta().ID, nil
	}
	h := hs[0].(*model.Host)
	if len(addrs) > 0 && !slices.Equal(h.Addresses, addrs) || len(physnets) > 0 && !slices.Equal(h.PhysicalNetworks, physnets) {
		if len(addrs) > 0 {
			h.Addresses = addrs
		}
		if len(physnets) > 0 {
			h.PhysicalNetworks = physnets
		}
		if err := tx.Put(h); err != nil {
			return "", err
		}
	}
	return h.ID, nil
}

// Revoke refuses host (a name or a host id) from now on: its etcd user
// goes (its next request is refused), its liveness lease ends (its state
// goes, other hosts see it dead), its certificates enter the CRL, and it
// can neither renew nor join again.
func (s *Service) Revoke(ctx context.Context, host string) error {
	name, hostID, err := s.resolveHost(ctx, host)
	if err != nil {
		return err
	}
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		c := &Credential{Meta: model.Meta{ID: credentialID(name)}, Name: name, HostID: hostID}
		if o, err := tx.Get(CredentialKind, c.ID); err == nil {
			c = o.(*Credential)
		} else if !errors.Is(err, model.ErrNotFound) {
			return err
		}
		c.Revoked, c.RevokedAt = true, s.now().Unix()
		return tx.Put(c)
	})
	if err != nil {
		return fmt.Errorf("revoke host %s: %w", name, err)
	}
	if err := s.store.RevokeHost(ctx, name); err != nil {
		return err
	}
	if hostID != "" {
		// Marked before its lease ends: its peers, which would keep a
		// host whose lease ended while its datapath answers, see why.
		if err := s.store.MarkHostRevoked(ctx, hostID); err != nil {
			return err
		}
		if err := s.store.EndHostLease(ctx, hostID); err != nil {
			return err
		}
	}
	if err := s.writeCRL(ctx); err != nil {
		return err
	}
	s.opts.Log.Warn("host revoked", "host", name, "host_id", hostID)
	return nil
}

func (s *Service) resolveHost(ctx context.Context, host string) (name, hostID string, err error) {
	if model.IsUUID(host) {
		o, err := s.store.Get(ctx, model.HostKind, host)
		if err != nil {
			return "", "", err
		}
		return o.(*model.Host).Name, host, nil
	}
	if err := pki.ValidHostName(host); err != nil {
		return "", "", refuse(BadRequest, "%v", err)
	}
	hs, _, err := s.store.List(ctx, model.HostKind, "name", host)
	if err != nil {
		return "", "", err
	}
	if len(hs) == 1 {
		return host, hs[0].GetMeta().ID, nil
	}
	return host, "", nil
}

// Revoked reports whether host name is revoked.
func (s *Service) Revoked(ctx context.Context, name string) (bool, error) {
	o, err := s.store.Get(ctx, CredentialKind, credentialID(name))
	if errors.Is(err, model.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return o.(*Credential).Revoked, nil
}

// writeCRL rewrites the CRL file with every revoked host's serials.
func (s *Service) writeCRL(ctx context.Context) error {
	if s.opts.CRLFile == "" || s.opts.CA == nil {
		return nil
	}
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	cs, _, err := s.store.List(ctx, CredentialKind, "", "")
	if err != nil {
		return fmt.Errorf("list host credentials: %w", err)
	}
	var serials []*big.Int
	for _, o := range cs {
		c := o.(*Credential)
		if !c.Revoked {
			continue
		}
		for _, h := range c.Serials {
			if n, ok := new(big.Int).SetString(h, 16); ok {
				serials = append(serials, n)
			}
		}
	}
	b, err := s.opts.CA.CRL(serials, s.now().UnixNano())
	if err != nil {
		return err
	}
	return pki.WriteFile(s.opts.CRLFile, b, 0o644)
}
