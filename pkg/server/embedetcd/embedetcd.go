// Package embedetcd runs the single-node etcd that nagare-server embeds in its
// data directory when no external cluster is given, so that a first install
// needs no set-up at all.
//
// It is the only package that imports etcd's server side (go.etcd.io/etcd/
// server/v3/embed, about 550 packages and 17 MB of binary): only
// nagare-server and tests import it. Everything else talks to etcd through
// the client, exactly as it would to an external cluster.
package embedetcd

import (
	"strings"

	"context"
	"errors"
	"fmt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"net"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Defaults for Config.
const (
	DefaultClientURL = "http://127.0.0.1:2379"
	DefaultPeerURL   = "http://127.0.0.1:2380"
	DefaultName      = "nagare"
)

// Production limits. They are not configurable on purpose: the store's
// transactions are sized against them.
const (
	// Cascading deletes and Neutron translations write many keys (object,
	// reverse references, unique keys) in one transaction; etcd's default of
	// 128 operations would refuse deleting a chain of 40 rules.
	maxTxnOps = 2048
	// Topology is small per object but large in count; 8 GiB is etcd's
	// documented recommended maximum and far above any realistic topology.
	quotaBackendBytes = 8 << 30
	// History older than an hour is compacted: watchers that fall further
	// behind relist, which the store's watch does by itself.
	compactionRetention = "1h"
	readyTimeout        = time.Minute
)

// Config says where the embedded etcd keeps its data and listens.
type Config struct {
	// DataDir is nagare-server's data directory; etcd's files live in
	// DataDir/etcd so the server can keep other files beside them.
	DataDir string
	// ClientURL is where clients (this server, agents, etcdctl) connect.
	// Default DefaultClientURL. Port 0 picks a free port (tests); the bound
	// address is reported by Endpoints.
	ClientURL string
	// PeerURL is the raft peer address. A single node has no peers, but etcd
	// records the URL in its membership, which matters if the node is ever
	// grown into a cluster. Default DefaultPeerURL, or port 0 when ClientURL
	// uses port 0 (so parallel tests never collide).
	PeerURL string
	// Name is the member name. Default DefaultName.
	Name string
	// UnsafeNoFsync trades durability for speed. Tests only.
	UnsafeNoFsync bool
	// TLS, when set, serves clients (and peers, on an https peer URL) over
	// TLS and admits only clients with a certificate of the trusted CA
	// (etcd's --client-cert-auth): with authentication on, the
	// certificate's CN is the etcd user. ClientURL must then be https.
	TLS *TLSFiles
	// LogLevel of etcd's own zap logger: debug, info, warn, error, panic or
	// fatal. Default "error": etcd is chatty at info and the server logs
	// what matters itself. Tests use "fatal".
	LogLevel string
}

// TLSFiles are the PEM files of etcd's TLS.
type TLSFiles struct {
	CertFile, KeyFile string // serving certificate and key
	TrustedCAFile     string // CA of client certificates
	// CRLFile, when set, is a revocation list etcd reads on every new
	// connection (--client-crl-file): a revoked certificate cannot
	// connect even while its CN still names a user.
	CRLFile string
}

// Etcd is a running embedded etcd.
type Etcd struct {
	srv       *embed.Etcd
	endpoints []string
	closeOnce sync.Once
}

// Start starts etcd and waits until it serves clients. A data directory that
// already holds etcd data is reopened with its data.
func Start(ctx context.Context, c Config) (*Etcd, error) {
	cfg, err := c.embedConfig()
	if err != nil {
		return nil, err
	}
	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd in %s: %w", cfg.Dir, err)
	}
	e := &Etcd{srv: srv}
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-srv.Server.ReadyNotify():
	case err := <-srv.Err():
		e.Close()
		return nil, fmt.Errorf("etcd in %s failed while starting: %w", cfg.Dir, err)
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("etcd in %s did not become ready within %s (is the data directory from another cluster?)", cfg.Dir, readyTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("start etcd in %s: %w", cfg.Dir, ctx.Err())
	}
	scheme := cfg.ListenClientUrls[0].Scheme
	for _, l := range srv.Clients {
		e.endpoints = append(e.endpoints, scheme+"://"+dialable(l.Addr()))
	}
	return e, nil
}

func (c Config) embedConfig() (*embed.Config, error) {
	if c.DataDir == "" {
		return nil, errors.New("embedded etcd: no data directory given")
	}
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(c.DataDir, "etcd")
	cfg.Name = orDefault(c.Name, DefaultName)
	cfg.LogLevel = orDefault(c.LogLevel, "error")
	cfg.UnsafeNoFsync = c.UnsafeNoFsync
	if err := quietShutdown(cfg); err != nil {
		return nil, err
	}

	client, err := parseURL("client", orDefault(c.ClientURL, DefaultClientURL), c.TLS != nil)
	if err != nil {
		return nil, err
	}
	peerDefault := DefaultPeerURL
	if client.Port() == "0" {
		peerDefault = "http://127.0.0.1:0"
	}
	peer, err := parseURL("peer", orDefault(c.PeerURL, peerDefault), false)
	if err != nil {
		return nil, err
	}
	if t := c.TLS; t != nil {
		cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile = t.CertFile, t.KeyFile
		cfg.ClientTLSInfo.TrustedCAFile, cfg.ClientTLSInfo.CRLFile = t.TrustedCAFile, t.CRLFile
		cfg.ClientTLSInfo.ClientCertAuth = true
		if peer.Scheme == "https" {
			cfg.PeerTLSInfo = cfg.ClientTLSInfo
		}
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)

	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = compactionRetention
	cfg.QuotaBackendBytes = quotaBackendBytes
	cfg.MaxTxnOps = maxTxnOps
	return cfg, nil
}

// parseURL checks a listen URL, SCHEME://HOST:PORT or just HOST:PORT
// (what etcdctl and most operators type): https exactly when tls (a peer
// URL may be either: https only with TLS).
func parseURL(what, s string, tls bool) (*url.URL, error) {
	want := "http"
	if tls {
		want = "https"
	}
	u, err := url.Parse(WithScheme(s, want))
	if err != nil {
		return nil, fmt.Errorf("embedded etcd %s URL %q: %w", what, s, err)
	}
	if u.Port() == "" || u.Scheme != want && (what == "client" || u.Scheme != "https") {
		return nil, fmt.Errorf("embedded etcd %s URL %q: want HOST:PORT or %s://HOST:PORT", what, s, want)
	}
	return u, nil
}

// dialable turns a bound address into one a local client can dial: a
// wildcard listener (0.0.0.0, ::) is reached through loopback.
func dialable(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	ip := net.IPv4(127, 0, 0, 1)
	if tcp.IP.To4() == nil {
		ip = net.IPv6loopback
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(tcp.Port))
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Endpoints are the client URLs etcd actually listens on (with the real
// port when the configured one was 0).
func (e *Etcd) Endpoints() []string { return append([]string(nil), e.endpoints...) }

// Err reports errors of the running server; it is closed after Close.
// nagare-server treats a value as fatal.
func (e *Etcd) Err() <-chan error { return e.srv.Err() }

// Close stops etcd, letting requests in flight finish (etcd waits up to its
// request timeout). It is safe to call more than once.
func (e *Etcd) Close() { e.closeOnce.Do(e.srv.Close) }

// quietShutdown gives etcd a logger that drops the error-level lines etcd
// itself writes when it is closed ("setting up serving … failed: … closed"):
// they are the normal end of its listeners, and an operator reading them
// after every clean SIGTERM would learn to ignore real errors.
func quietShutdown(cfg *embed.Config) error {
	var level zapcore.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("embedded etcd log level %q: %w", cfg.LogLevel, err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(level)
	base, err := zc.Build()
	if err != nil {
		return fmt.Errorf("embedded etcd logger: %w", err)
	}
	logger := zap.New(&shutdownFilter{base.Core()})
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logger)
	return nil
}

type shutdownFilter struct{ zapcore.Core }

func (f *shutdownFilter) With(fields []zapcore.Field) zapcore.Core {
	return &shutdownFilter{f.Core.With(fields)}
}

func (f *shutdownFilter) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if strings.HasPrefix(e.Message, "setting up serving from embedded etcd failed") {
		return ce
	}
	return f.Core.Check(e, ce)
}

// WithScheme puts scheme:// before an address written without one
// ("127.0.0.1:2379", "[::1]:2379", "etcd1:2379"); "" stays "".
func WithScheme(s, scheme string) string {
	if s == "" || strings.Contains(s, "://") {
		return s
	}
	return scheme + "://" + s
}
