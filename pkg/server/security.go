package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nagare/nagare/pkg/pki"
)

// The server's TLS, as etcd's security guide and kubeadm set it up: a CA
// in the data directory (DataDir/pki), a serving certificate for the API
// and the embedded etcd, etcd with client-certificate authentication
// (--client-cert-auth, the CN is the etcd user) and a CRL, and the
// server's own client certificate as etcd's root user. An operator may
// bring the serving certificate (--tls-cert-file, --tls-key-file) and
// further client CAs (--client-ca-file); host certificates are signed by
// the data directory's CA either way.

// Files in DataDir/pki.
const (
	pkiDir         = "pki"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
	rootCertFile   = "root.crt" // the server's etcd client: user root
	rootKeyFile    = "root.key"
	clientCAFile   = "client-ca.crt" // bundle etcd trusts for client certificates
	crlFile        = "crl.pem"
	// EndpointsFile records the embedded etcd's client URLs for
	// `nagare-server token create`.
	EndpointsFile = "etcd-endpoints"
)

// security is the server's TLS material in secure mode.
type security struct {
	dir      string
	ca       *pki.CA
	pool     *x509.CertPool // CAs of client certificates (and of our serving certificate)
	serving  tls.Certificate
	certFile string // serving certificate and key as files (etcd reads files)
	keyFile  string
	caFile   string // client CA bundle
	crlFile  string
	root     tls.Certificate
}

// secureMode decides whether the server runs TLS: always with --tls or
// once its data directory holds a CA, on any listener that is not
// loopback, never with --insecure-http (which then warns).
func (c Config) secureMode() bool {
	if c.InsecureHTTP {
		return false
	}
	if c.TLS {
		return true
	}
	if _, err := os.Stat(filepath.Join(c.DataDir, pkiDir, pki.CACertFile)); err == nil {
		return true
	}
	if !loopbackHostPort(c.Listen) {
		return true
	}
	if len(c.EtcdEndpoints) == 0 {
		u, err := url.Parse(c.EtcdListen)
		if err != nil || u.Scheme == "https" || !loopbackHostPort(u.Host) {
			return true
		}
	}
	return false
}

// exposedInsecurely names a non-loopback listener plain HTTP would serve.
func (c Config) exposedInsecurely() string {
	if !loopbackHostPort(c.Listen) {
		return c.Listen
	}
	if u, err := url.Parse(c.EtcdListen); len(c.EtcdEndpoints) == 0 && (err != nil || !loopbackHostPort(u.Host)) {
		return c.EtcdListen
	}
	return ""
}

func loopbackHostPort(hp string) bool {
	host, _, err := net.SplitHostPort(hp)
	if err != nil {
		host = hp
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// setupSecurity loads or creates the CA and issues this start's serving
// and root certificates (a fresh serving certificate every start follows
// the listen addresses as they change; clients trust the CA).
func setupSecurity(c Config) (*security, error) {
	s := &security{dir: filepath.Join(c.DataDir, pkiDir)}
	ca, created, err := pki.LoadOrCreateCA(s.dir, "nagare CA")
	if err != nil {
		return nil, err
	}
	if created {
		c.Log.Info("created the cluster CA; agents verify the server with it and join with tokens", "ca", filepath.Join(s.dir, pki.CACertFile), "ca_hash", ca.Hash())
	}
	s.ca = ca
	bundle := append([]byte(nil), ca.CertPEM...)
	if c.ClientCAFile != "" {
		extra, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("--client-ca-file: %w", err)
		}
		bundle = append(bundle, extra...)
	}
	s.pool = x509.NewCertPool()
	if !s.pool.AppendCertsFromPEM(bundle) {
		return nil, errors.New("--client-ca-file: no PEM certificate found")
	}
	s.caFile, s.crlFile = filepath.Join(s.dir, clientCAFile), filepath.Join(s.dir, crlFile)
	if err := pki.WriteFile(s.caFile, bundle, 0o644); err != nil {
		return nil, err
	}
	if c.TLSCertFile != "" || c.TLSKeyFile != "" {
		if c.TLSCertFile == "" || c.TLSKeyFile == "" {
			return nil, errors.New("--tls-cert-file and --tls-key-file go together")
		}
		s.certFile, s.keyFile = c.TLSCertFile, c.TLSKeyFile
	} else {
		dns, ips := servingNames(c)
		certPEM, keyPEM, err := ca.ServerCert("nagare-server", dns, ips)
		if err != nil {
			return nil, err
		}
		s.certFile, s.keyFile = filepath.Join(s.dir, serverCertFile), filepath.Join(s.dir, serverKeyFile)
		if err := pki.WriteFile(s.keyFile, keyPEM, 0o600); err != nil {
			return nil, err
		}
		if err := pki.WriteFile(s.certFile, certPEM, 0o644); err != nil {
			return nil, err
		}
	}
	if s.serving, err = tls.LoadX509KeyPair(s.certFile, s.keyFile); err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	rootCert, rootKey, err := ca.ClientCert(pki.RootCN, pki.ServerValidity)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteFile(filepath.Join(s.dir, rootKeyFile), rootKey, 0o600); err != nil {
		return nil, err
	}
	if err := pki.WriteFile(filepath.Join(s.dir, rootCertFile), rootCert, 0o600); err != nil {
		return nil, err
	}
	if s.root, err = tls.X509KeyPair(rootCert, rootKey); err != nil {
		return nil, fmt.Errorf("root client certificate: %w", err)
	}
	return s, nil
}

// servingNames are the names and addresses the serving certificate is
// valid for: loopback, the machine's name, and the listen addresses (every
// interface address for a wildcard).
func servingNames(c Config) ([]string, []net.IP) {
	dns := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if h, err := os.Hostname(); err == nil && h != "" {
		dns = append(dns, h)
	}
	hosts := []string{c.Listen}
	if u, err := url.Parse(c.EtcdListen); err == nil {
		hosts = append(hosts, u.Host)
	}
	wildcard := false
	for _, hp := range hosts {
		host, _, err := net.SplitHostPort(hp)
		if err != nil {
			continue
		}
		switch ip := net.ParseIP(host); {
		case host == "" || ip != nil && ip.IsUnspecified():
			wildcard = true
		case ip != nil:
			ips = append(ips, ip)
		default:
			dns = append(dns, host)
		}
	}
	if wildcard {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					ips = append(ips, n.IP)
				}
			}
		}
	}
	return dns, ips
}

// apiTLS is the API listener's configuration: TLS 1.2 or newer, and a
// client certificate verified when one is offered (agents renew with
// theirs; people log in with tokens).
func (s *security) apiTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{s.serving},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    s.pool,
		MinVersion:   tls.VersionTLS12,
	}
}

// rootTLS is the server's etcd client configuration.
func (s *security) rootTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{s.root}, RootCAs: s.pool, MinVersion: tls.VersionTLS12}
}

// httpsURL turns an http:// etcd listen URL into https:// in secure mode.
func httpsURL(u string) string {
	if rest, ok := strings.CutPrefix(u, "http://"); ok {
		return "https://" + rest
	}
	return u
}

// hostCertValidity is Config.HostCertValidity or the default.
func (c Config) hostCertValidity() time.Duration {
	if c.HostCertValidity > 0 {
		return c.HostCertValidity
	}
	return pki.HostValidity
}

// writeEmptyCRL writes a CRL with no entries unless one exists, so that
// etcd, which reads it on every connection, has one before the join
// service rewrites it.
func (s *security) writeEmptyCRL() error {
	if _, err := os.Stat(s.crlFile); err == nil {
		return nil
	}
	b, err := s.ca.CRL(nil, 1)
	if err != nil {
		return err
	}
	return pki.WriteFile(s.crlFile, b, 0o644)
}
