package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
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
	// ClientFile records how to reach etcd as the server does (endpoints,
	// CA, client certificate), for `nagare-server token create`.
	ClientFile = "etcd-client.json"
)

// EtcdClient is what ClientFile holds: absolute paths.
type EtcdClient struct {
	Endpoints []string `json:"endpoints"`
	CAFile    string   `json:"ca_file"`
	CertFile  string   `json:"cert_file"`
	KeyFile   string   `json:"key_file"`
}

// TLS reads the files into a client configuration.
func (e *EtcdClient) TLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(e.CertFile, e.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate: %w", err)
	}
	pool, _, err := readPool(e.CAFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// ReadClientFile reads DATA-DIR/pki/etcd-client.json.
func ReadClientFile(dataDir string) (*EtcdClient, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, pkiDir, ClientFile))
	if err != nil {
		return nil, fmt.Errorf("the server has not recorded how it reaches etcd (start it first, with TLS): %w", err)
	}
	var e EtcdClient
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%s: %w", ClientFile, err)
	}
	return &e, nil
}

func readPool(file string) (*x509.CertPool, []byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, nil, fmt.Errorf("%s: no PEM certificate found", file)
	}
	return pool, b, nil
}

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
	etcdCA   []byte // PEM of an external cluster's CA (--etcd-cafile): agents need it
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

// externalTLS is the client configuration of an external cluster and the
// etcd user it authenticates as (its certificate's CN); nil for a plain
// cluster of an insecure server without --etcd-* files.
func (s *Server) externalTLS() (*tls.Config, string, error) {
	c := s.cfg
	if s.sec == nil && c.EtcdCAFile == "" && c.EtcdCertFile == "" && c.EtcdKeyFile == "" {
		return nil, "", nil
	}
	if s.sec != nil {
		for _, e := range c.EtcdEndpoints {
			if !strings.HasPrefix(e, "https://") {
				return nil, "", fmt.Errorf("etcd endpoint %s: a secure server needs its etcd cluster over TLS (https:// endpoints, --etcd-cafile, and --etcd-certfile/--etcd-keyfile unless the cluster trusts %s), or --insecure-http",
					e, filepath.Join(s.sec.dir, pki.CACertFile))
			}
		}
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case c.EtcdCAFile != "":
		pool, pemBytes, err := readPool(c.EtcdCAFile)
		if err != nil {
			return nil, "", fmt.Errorf("--etcd-cafile: %w", err)
		}
		t.RootCAs = pool
		if s.sec != nil {
			s.sec.etcdCA = pemBytes
		}
	case s.sec != nil:
		t.RootCAs = s.sec.pool
	}
	user := ""
	switch {
	case c.EtcdCertFile != "" || c.EtcdKeyFile != "":
		if c.EtcdCertFile == "" || c.EtcdKeyFile == "" {
			return nil, "", errors.New("--etcd-certfile and --etcd-keyfile go together")
		}
		cert, err := tls.LoadX509KeyPair(c.EtcdCertFile, c.EtcdKeyFile)
		if err != nil {
			return nil, "", fmt.Errorf("--etcd-certfile: %w", err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, "", fmt.Errorf("--etcd-certfile: %w", err)
		}
		t.Certificates, user = []tls.Certificate{cert}, leaf.Subject.CommonName
		if user == "" {
			return nil, "", errors.New("--etcd-certfile: the certificate has no CN, which etcd would take as its user")
		}
	case s.sec != nil:
		t.Certificates, user = []tls.Certificate{s.sec.root}, pki.RootCN
	}
	return t, user, nil
}

// writeClientFile records how the server reaches etcd (ClientFile).
func (s *security) writeClientFile(endpoints []string, c Config) error {
	e := EtcdClient{Endpoints: endpoints, CAFile: filepath.Join(s.dir, pki.CACertFile),
		CertFile: filepath.Join(s.dir, rootCertFile), KeyFile: filepath.Join(s.dir, rootKeyFile)}
	if len(c.EtcdEndpoints) > 0 {
		if c.EtcdCAFile != "" {
			e.CAFile = c.EtcdCAFile
		}
		if c.EtcdCertFile != "" {
			e.CertFile, e.KeyFile = c.EtcdCertFile, c.EtcdKeyFile
		}
	}
	for _, f := range []*string{&e.CAFile, &e.CertFile, &e.KeyFile} {
		abs, err := filepath.Abs(*f)
		if err != nil {
			return err
		}
		*f = abs
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return pki.WriteFile(filepath.Join(s.dir, ClientFile), append(b, '\n'), 0o600)
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
