package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ValidHostName checks a host name as certificates and etcd users carry
// it: 1 to 253 letters, digits, '.', '-' or '_', starting with a letter or
// digit (a DNS name, with '_' for the odd inventory name).
func ValidHostName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("host name %q: want 1 to 253 characters", name)
	}
	for i, r := range name {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || r != '.' && r != '-' && r != '_') {
			return fmt.Errorf("host name %q: character %q at %d (want letters, digits, '.', '-', '_', starting with a letter or digit)", name, r, i)
		}
	}
	return nil
}

// NewHostCSR makes the certificate request an agent sends when it joins
// or renews: CN "host:<name>", signed with key (proof that the agent
// holds it).
func NewHostCSR(key crypto.Signer, name string) ([]byte, error) {
	if err := ValidHostName(name); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: HostCNPrefix + name, Organization: []string{HostsOrganization}},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// maxCSR bounds what ParseHostCSR reads: a P-256 CSR is ~500 bytes of
// PEM, an RSA-4096 one under 2 KiB.
const maxCSR = 16 << 10

// ParseHostCSR reads and checks an agent's certificate request: one PEM
// block, a valid self-signature, a key type Nagare accepts, and a subject
// of exactly CN "host:<name>" (O "nagare:hosts" or none). It returns the
// request and the host name. Nothing else of the request (SANs,
// extensions) is copied into the certificate: SignHost builds it.
func ParseHostCSR(b []byte) (*x509.CertificateRequest, string, error) {
	if len(b) > maxCSR {
		return nil, "", fmt.Errorf("certificate request of %d bytes: at most %d", len(b), maxCSR)
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, "", errors.New("no PEM certificate request found")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, "", errors.New("trailing data after the certificate request")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, "", fmt.Errorf("parse certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, "", fmt.Errorf("certificate request signature: %w", err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, "", err
	}
	name, ok := strings.CutPrefix(csr.Subject.CommonName, HostCNPrefix)
	if !ok {
		return nil, "", fmt.Errorf("certificate request for %q: the CN must be %q followed by the host name", csr.Subject.CommonName, HostCNPrefix)
	}
	if err := ValidHostName(name); err != nil {
		return nil, "", err
	}
	if org := csr.Subject.Organization; len(org) > 1 || len(org) == 1 && org[0] != HostsOrganization {
		return nil, "", fmt.Errorf("certificate request organization %q: want %q", org, HostsOrganization)
	}
	return csr, name, nil
}
