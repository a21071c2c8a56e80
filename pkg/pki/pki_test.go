package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadOrCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca, created, err := LoadOrCreateCA(dir, "test CA")
	if err != nil || !created {
		t.Fatalf("first LoadOrCreateCA: created=%v err=%v", created, err)
	}
	st, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v, want 0600", st.Mode().Perm())
	}
	again, created, err := LoadOrCreateCA(dir, "test CA")
	if err != nil || created {
		t.Fatalf("second LoadOrCreateCA: created=%v err=%v", created, err)
	}
	if again.Hash() != ca.Hash() {
		t.Errorf("reopened CA %s, want %s", again.Hash(), ca.Hash())
	}
	if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateCA(dir, "test CA"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("CA without its key: err %v, want one saying a file is missing", err)
	}
}

func TestParseCARefusesForeignKey(t *testing.T) {
	a, b := mustCA(t), mustCA(t)
	keyB, err := EncodeKey(b.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCA(a.CertPEM, keyB); err == nil {
		t.Fatal("ParseCA accepted another CA's key")
	}
}

func mustCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// A serving certificate works in a real TLS handshake against the CA pool
// for its names, and only for them.
func TestServerCertHandshake(t *testing.T) {
	ca := mustCA(t)
	certPEM, keyPEM, err := ca.ServerCert("nagare-server", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"localhost", true}, {"127.0.0.1", true}, {"other.example", false}} {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: tc.name})
		if (err == nil) != tc.ok {
			t.Errorf("dial as %s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err == nil {
			c.Close()
		}
	}
	other := mustCA(t)
	if c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: other.Pool(), ServerName: "localhost"}); err == nil {
		c.Close()
		t.Error("a client trusting another CA accepted the server")
	}
}

func TestSignHost(t *testing.T) {
	ca := mustCA(t)
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csrPEM, err := NewHostCSR(key, "hv1")
	if err != nil {
		t.Fatal(err)
	}
	csr, name, err := ParseHostCSR(csrPEM)
	if err != nil || name != "hv1" {
		t.Fatalf("ParseHostCSR: %q %v", name, err)
	}
	cert, err := ca.SignHost(csr, name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := HostOf(cert); !ok || got != "hv1" {
		t.Errorf("HostOf = %q %v, want hv1", got, ok)
	}
	if cert.Subject.CommonName != "host:hv1" {
		t.Errorf("CN %q", cert.Subject.CommonName)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify as client: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a host certificate verifies as a server certificate")
	}
	if d := cert.NotAfter.Sub(time.Now()); d > time.Hour || d < 50*time.Minute {
		t.Errorf("validity ends in %v, want about 1h", d)
	}
	// A certificate never outlives its CA.
	ca.SetClock(func() time.Time { return ca.Cert.NotAfter.Add(-time.Minute) })
	late, err := ca.SignHost(csr, name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if late.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("certificate ends %v after its CA %v", late.NotAfter, ca.Cert.NotAfter)
	}
}

func TestParseHostCSRRefuses(t *testing.T) {
	p256, _ := NewKey()
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	good, _ := NewHostCSR(p256, "hv1")
	csrWith := func(key any, subj pkix.Name) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subj}, key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	blk, _ := pem.Decode(good)
	tampered := append([]byte(nil), blk.Bytes...)
	tampered[len(tampered)-3] ^= 0xff // inside the signature
	for _, tc := range []struct {
		name, want string
		in         []byte
	}{
		{"empty", "no PEM", nil},
		{"a certificate", "no PEM", EncodeCert([]byte{1, 2, 3})},
		{"trailing data", "trailing", append(append([]byte(nil), good...), []byte("junk")...)},
		{"garbage DER", "parse", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 1, 2, 3}})},
		{"bad signature", "signature", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered})},
		{"root CN", "CN must be", csrWith(p256, pkix.Name{CommonName: "root"})},
		{"bad host name", "host name", csrWith(p256, pkix.Name{CommonName: "host:a/b"})},
		{"empty host name", "host name", csrWith(p256, pkix.Name{CommonName: "host:"})},
		{"other organization", "organization", csrWith(p256, pkix.Name{CommonName: "host:hv1", Organization: []string{"system:masters"}})},
		{"weak curve", "curve", csrWith(p224, pkix.Name{CommonName: "host:hv1"})},
		{"short RSA", "2048", csrWith(rsa1024, pkix.Name{CommonName: "host:hv1"})},
		{"too large", "at most", make([]byte, maxCSR+1)},
	} {
		_, _, err := ParseHostCSR(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestValidHostName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"hv1", true}, {"compute-01.example.org", true}, {"a_b", true}, {"9", true},
		{"", false}, {"-a", false}, {".a", false}, {"a/b", false}, {"a b", false}, {"a:b", false},
		{strings.Repeat("a", 253), true}, {strings.Repeat("a", 254), false}, {"hé", false},
	} {
		if err := ValidHostName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidHostName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestJoinToken(t *testing.T) {
	ca := mustCA(t)
	tok := NewJoinToken(ca.Hash())
	parsed, err := ParseJoinToken(tok.String())
	if err != nil {
		t.Fatal(err)
	}
	if parsed != tok {
		t.Errorf("round trip %+v, want %+v", parsed, tok)
	}
	if err := parsed.CheckCAHash(ca.Cert); err != nil {
		t.Errorf("CheckCAHash of its CA: %v", err)
	}
	if err := parsed.CheckCAHash(mustCA(t).Cert); err == nil {
		t.Error("CheckCAHash accepted another CA")
	}
	if !parsed.SecretMatches(tok.SecretHash()) {
		t.Error("secret does not match its own hash")
	}
	wrong := parsed
	wrong.Secret = strings.Repeat("a", tokenSecretLen)
	if wrong.SecretMatches(tok.SecretHash()) {
		t.Error("another secret matches")
	}
	bare, err := ParseJoinToken(tok.ID + "." + tok.Secret)
	if err != nil || bare.CAHash != "" || bare.ID != tok.ID {
		t.Errorf("bare token: %+v %v", bare, err)
	}
	if err := bare.CheckCAHash(mustCA(t).Cert); err != nil {
		t.Errorf("a token without a pin checks nothing, got %v", err)
	}
	for _, bad := range []string{"", "abc", "abcdef.0123456789abcde", "ABCDEF.0123456789abcdef", "abcdef-0123456789abcdef",
		"N10" + strings.Repeat("0", 63) + "::abcdef.0123456789abcdef", "N10" + strings.Repeat("g", 64) + "::abcdef.0123456789abcdef",
		"N10" + strings.Repeat("0", 64) + ":abcdef.0123456789abcdef"} {
		if _, err := ParseJoinToken(bad); err == nil {
			t.Errorf("ParseJoinToken(%q) accepted", bad)
		}
	}
}

func TestCRL(t *testing.T) {
	ca := mustCA(t)
	s := big.NewInt(12345)
	b, err := ca.CRL([]*big.Int{s}, 7)
	if err != nil {
		t.Fatal(err)
	}
	l, err := x509.ParseRevocationList(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("CRL signature: %v", err)
	}
	if len(l.RevokedCertificateEntries) != 1 || l.RevokedCertificateEntries[0].SerialNumber.Cmp(s) != 0 || l.Number.Int64() != 7 {
		t.Errorf("CRL entries %+v number %v", l.RevokedCertificateEntries, l.Number)
	}
}

// FuzzParseHostCSR: whatever arrives at the join endpoint, the parser
// answers with a request or an error, and an accepted request always
// names a valid host.
func FuzzParseHostCSR(f *testing.F) {
	key, _ := NewKey()
	good, _ := NewHostCSR(key, "hv1")
	f.Add(good)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, name, err := ParseHostCSR(b)
		if err != nil {
			return
		}
		if ValidHostName(name) != nil || csr.CheckSignature() != nil {
			t.Fatalf("accepted %q with an invalid name or signature", name)
		}
	})
}

func FuzzParseJoinToken(f *testing.F) {
	f.Add(NewJoinToken("sha256:" + strings.Repeat("ab", 32)).String())
	f.Add("abcdef.0123456789abcdef")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseJoinToken(s)
		if err != nil {
			return
		}
		if again, err := ParseJoinToken(tok.String()); err != nil || again != tok {
			t.Fatalf("%q parsed to %+v, which does not round-trip: %+v %v", s, tok, again, err)
		}
	})
}
