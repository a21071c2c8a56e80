// Package pki is Nagare's small certificate authority: the CA that
// nagare-server creates in its data directory on first start, the serving
// certificates of its API and embedded etcd, and the client certificates
// that bind an agent to its host name (issued from the agent's CSR when it
// joins, renewed before they expire) and the server to etcd's root user.
//
// It is pure standard library (crypto/x509) and does no network I/O, so
// the agent links it too: the agent makes its key and CSR here and checks
// the server's CA against the hash in its join token.
//
// Names follow Kubernetes' node certificates: an agent's certificate has
// CN "host:<name>" and O "nagare:hosts"; etcd maps the CN to the etcd user
// of that host, whose role grants it its own keys only.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Subject names.
const (
	// HostCNPrefix starts the CN of an agent's certificate; the rest is the
	// host name.
	HostCNPrefix = "host:"
	// HostsOrganization is the O of every agent certificate.
	HostsOrganization = "nagare:hosts"
	// RootCN is the CN of the server's own etcd client certificate: etcd's
	// root user.
	RootCN = "root"
)

// Validities. Agent certificates are short-lived and renewed by the agent
// at two thirds of their life (kubelet's rotation does the same), so a
// stolen one is worth little and a revoked host's expires soon anyway.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 365 * 24 * time.Hour
	HostValidity   = 24 * time.Hour
	// clockSkew backdates NotBefore so a host whose clock is slightly
	// behind still accepts a fresh certificate.
	clockSkew = 5 * time.Minute
)

// CA is a certificate authority whose key is at hand.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer
	now     func() time.Time
}

// Files of a CA in a directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// LoadOrCreateCA opens the CA in dir (ca.crt, ca.key), creating both on
// first use (the key 0600, the directory 0700). created reports a new CA.
func LoadOrCreateCA(dir, commonName string) (ca *CA, created bool, err error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, errC := os.ReadFile(certPath)
	keyPEM, errK := os.ReadFile(keyPath)
	switch {
	case errC == nil && errK == nil:
		ca, err := ParseCA(certPEM, keyPEM)
		if err != nil {
			return nil, false, fmt.Errorf("CA in %s: %w", dir, err)
		}
		return ca, false, nil
	case errors.Is(errC, os.ErrNotExist) && errors.Is(errK, os.ErrNotExist):
	case errC != nil && !errors.Is(errC, os.ErrNotExist):
		return nil, false, fmt.Errorf("read %s: %w", certPath, errC)
	case errK != nil && !errors.Is(errK, os.ErrNotExist):
		return nil, false, fmt.Errorf("read %s: %w", keyPath, errK)
	default:
		return nil, false, fmt.Errorf("CA in %s: one of %s and %s is missing; restore it or remove both to create a new CA (every agent then joins again)", dir, CACertFile, CAKeyFile)
	}
	ca, err = NewCA(commonName)
	if err != nil {
		return nil, false, err
	}
	keyPEM, err = EncodeKey(ca.Key)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create %s: %w", dir, err)
	}
	if err := WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, false, err
	}
	if err := WriteFile(certPath, ca.CertPEM, 0o644); err != nil {
		return nil, false, err
	}
	return ca, true, nil
}

// NewCA makes a self-signed CA with a fresh P-256 key.
func NewCA(commonName string) (*CA, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	return &CA{Cert: cert, CertPEM: EncodeCert(der), Key: key, now: time.Now}, nil
}

// ParseCA reads a CA from PEM; the key must match the certificate.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errors.New("the certificate is not a CA")
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, errors.New("the key does not belong to the certificate")
	}
	return &CA{Cert: cert, CertPEM: certPEM, Key: key, now: time.Now}, nil
}

// SetClock replaces the CA's clock (tests of expiry).
func (ca *CA) SetClock(now func() time.Time) { ca.now = now }

// Pool is a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Hash is the CA's pin as join tokens carry it: "sha256:" and the hex
// SHA-256 of its DER certificate.
func (ca *CA) Hash() string { return CertHash(ca.Cert) }

// CertHash is "sha256:" and the hex SHA-256 of cert's DER encoding.
func CertHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// KeyHash is the hex SHA-256 of a public key's SubjectPublicKeyInfo: the
// server remembers it to refuse a CSR replayed with a key it has signed.
func KeyHash(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// ServerCert issues a serving certificate for the given names and
// addresses, with a fresh key, valid for both server and client auth (etcd
// uses the serving certificate as its own client when it dials itself).
func (ca *CA) ServerCert(commonName string, dnsNames []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
	return ca.newKeyAndCert(&x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		DNSNames:    dnsNames,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, ServerValidity)
}

// ClientCert issues a client certificate with a fresh key (the server's
// own identity towards etcd).
func (ca *CA) ClientCert(commonName string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	return ca.newKeyAndCert(clientTemplate(commonName, nil), validity)
}

func clientTemplate(cn string, org []string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: org},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

func (ca *CA) newKeyAndCert(tmpl *x509.Certificate, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	cert, err := ca.sign(tmpl, key.Public(), validity)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return EncodeCert(cert.Raw), keyPEM, nil
}

// SignHost issues the client certificate of host name for the key of csr,
// which the caller has checked with ParseHostCSR.
func (ca *CA) SignHost(csr *x509.CertificateRequest, name string, validity time.Duration) (*x509.Certificate, error) {
	return ca.sign(clientTemplate(HostCNPrefix+name, []string{HostsOrganization}), csr.PublicKey, validity)
}

func (ca *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration) (*x509.Certificate, error) {
	now := ca.now()
	tmpl.SerialNumber = randomSerial()
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new certificate: %w", err)
	}
	return cert, nil
}

// CRL is a revocation list of the given serials, signed by the CA, in
// DER: etcd reads it (--client-crl-file) on every new connection and
// parses DER only.
func (ca *CA) CRL(serials []*big.Int, number int64) ([]byte, error) {
	now := ca.now()
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: now, NextUpdate: now.Add(HostValidity)}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign the revocation list: %w", err)
	}
	return der, nil
}

// HostOf is the host name a certificate was issued to ("" and false when
// it is not a host certificate).
func HostOf(cert *x509.Certificate) (string, bool) {
	name, ok := strings.CutPrefix(cert.Subject.CommonName, HostCNPrefix)
	if !ok || ValidHostName(name) != nil || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != HostsOrganization {
		return "", false
	}
	return name, true
}

func randomSerial() *big.Int {
	// 128 random bits, positive: RFC 5280 allows up to 20 octets.
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b)
}

// NewKey makes a P-256 key: small, fast, and accepted by every client.
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// EncodeKey renders a private key as PKCS#8 PEM.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EncodeCert renders a DER certificate as PEM.
func EncodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// ParseCert reads the first certificate of a PEM file.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, err := onePEM(b, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return c, nil
}

// ParseKey reads a PKCS#8, EC or PKCS#1 private key from PEM.
func ParseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM private key found")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", k)
	}
	return s, nil
}

func onePEM(b []byte, typ string) (*pem.Block, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("no PEM %s found", strings.ToLower(typ))
	}
	if blk.Type != typ {
		return nil, fmt.Errorf("PEM block is %q, want %q", blk.Type, typ)
	}
	return blk, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// checkPublicKey admits the key types and sizes Nagare signs.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("ECDSA curve %s: want P-256 or P-384", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits: want at least 2048", k.N.BitLen())
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("key type %T is not accepted (ECDSA P-256/P-384, RSA >= 2048, Ed25519)", pub)
	}
	return nil
}

// WriteFile writes data to path atomically (a temporary file renamed over
// it) with mode perm, so a reader never sees half a key.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
