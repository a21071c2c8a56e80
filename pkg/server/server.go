// Package server runs nagare-server: the NSDB (an embedded single-node etcd
// by default, or an external cluster), the native REST API, the Neutron
// v2.0 API, the identity API, the dashboard (/ui/) and the health
// endpoint. It holds no state of its own: everything lives in the NSDB, so
// several servers can run against one etcd cluster.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	identityapi "github.com/nagare/nagare/pkg/api/identity"
	joinapi "github.com/nagare/nagare/pkg/api/join"
	"github.com/nagare/nagare/pkg/api/native"
	neutronapi "github.com/nagare/nagare/pkg/api/neutron"
	"github.com/nagare/nagare/pkg/hostclaim"
	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/join"
	"github.com/nagare/nagare/pkg/neutron"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/pki"
	"github.com/nagare/nagare/pkg/server/embedetcd"
	"github.com/nagare/nagare/pkg/ui"
)

// Config is nagare-server's configuration (its flags).
type Config struct {
	DataDir       string   // where the embedded etcd keeps its data
	Listen        string   // API address, host:port
	EtcdEndpoints []string // external etcd cluster; empty = embedded
	EtcdListen    string   // client URL of the embedded etcd (agents connect here)
	EtcdPeerURL   string   // peer URL of the embedded etcd
	Log           *slog.Logger

	// Auth is how API callers authenticate: AuthPassword (the built-in
	// identity service; nagare-server's default), AuthKeystone (tokens
	// validated by KeystoneURL) or AuthNoAuth (everyone is admin: demos
	// only). The zero value is AuthNoAuth, for in-process tests and
	// benchmarks; it logs the same warning.
	Auth          string
	AdminPassword string // AuthPassword: creates user admin on first start
	KeystoneURL   string // AuthKeystone: the Keystone that validates tokens
	// PublicURL is this server's URL as clients reach it, for the identity
	// catalog; by default each token request's Host.
	PublicURL string
	// BcryptCost lowers the password hashing cost (tests); 0 is Keystone's 12.
	BcryptCost int
	// TokenTTL is how long tokens live (0: an hour, Keystone's).
	TokenTTL time.Duration
	// LockoutFailureAttempts and LockoutDuration lock a user out from an
	// address after that many failed logins, for that long (identity's
	// Lockout; 0: its defaults, negative attempts: off).
	LockoutFailureAttempts int
	LockoutDuration        time.Duration
	// TokenKeyRotation rotates the token signing key when it is that old
	// (0: only when an administrator asks, POST
	// /api/v1/token-signing-keys/rotate). Tokens signed with the previous
	// key keep validating until they expire.
	TokenKeyRotation time.Duration

	// TLS serves the API over HTTPS and the embedded etcd with client
	// certificates and RBAC even on loopback (--tls). Without it the
	// server is secure on any non-loopback listener, and from then on
	// (its data directory holds a CA), unless InsecureHTTP.
	TLS bool
	// InsecureHTTP serves plain HTTP and an open etcd wherever they
	// listen (--insecure-http), with a warning.
	InsecureHTTP bool
	// TLSCertFile and TLSKeyFile are a serving certificate of the
	// operator's (default: one the data directory's CA issues).
	TLSCertFile, TLSKeyFile string
	// ClientCAFile adds CAs whose client certificates are trusted.
	ClientCAFile string
	// HostCertValidity is how long host certificates live (default
	// pki.HostValidity); tests shorten it.
	HostCertValidity time.Duration
	// EtcdCAFile, EtcdCertFile and EtcdKeyFile are the TLS of an
	// external cluster (etcd's own client flags --cacert, --cert, --key):
	// the CA of its serving certificates (default: the data directory's
	// CA) and this server's client certificate (default: the root
	// certificate the data directory's CA issues, for a cluster that
	// trusts it). In secure mode the certificate's CN becomes an etcd
	// user with the root role, and agents are told the CA.
	EtcdCAFile, EtcdCertFile, EtcdKeyFile string
}

// Authentication modes.
const (
	AuthPassword = "password"
	AuthKeystone = "keystone"
	AuthNoAuth   = "noauth"
)

// Server is a running nagare-server.
type Server struct {
	cfg      Config
	etcd     *embedetcd.Etcd // nil with an external cluster
	cli      *clientv3.Client
	store    *nsdb.Store
	http     *http.Server
	listener net.Listener
	log      *slog.Logger
	identity *identity.Service // AuthPassword only
	sec      *security         // nil unless secure
	join     *join.Service     // secure mode only
	bg       context.Context   // the server's background work (ended by stop)
	stop     context.CancelFunc
	wg       sync.WaitGroup // background work that must end before the NSDB client closes
}

// Start brings up the NSDB and the API. The API listens when Start returns.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	// HOST:PORT is what etcdctl and most operators type; the decisions
	// below read URLs.
	cfg.EtcdListen, cfg.EtcdPeerURL = embedetcd.WithScheme(cfg.EtcdListen, "http"), embedetcd.WithScheme(cfg.EtcdPeerURL, "http")
	s := &Server{cfg: cfg, log: cfg.Log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	secure := cfg.secureMode()
	if secure {
		if s.sec, err = setupSecurity(cfg); err != nil {
			return nil, fmt.Errorf("set up TLS in %s: %w", filepath.Join(cfg.DataDir, pkiDir), err)
		}
		cfg.EtcdListen = httpsURL(cfg.EtcdListen)
		s.cfg.EtcdListen = cfg.EtcdListen
	} else if exposed := cfg.exposedInsecurely(); exposed != "" {
		s.log.Warn("!!! PLAIN HTTP on a non-loopback address (--insecure-http): passwords, tokens and the whole NSDB cross the network in clear and anyone who reaches etcd can rewrite every tenant's network. Never do this outside a lab.", "address", exposed)
	}
	endpoints := cfg.EtcdEndpoints
	if len(endpoints) == 0 {
		ec := embedetcd.Config{DataDir: cfg.DataDir, ClientURL: cfg.EtcdListen, PeerURL: cfg.EtcdPeerURL, Name: "nagare"}
		if s.sec != nil {
			ec.TLS = &embedetcd.TLSFiles{CertFile: s.sec.certFile, KeyFile: s.sec.keyFile, TrustedCAFile: s.sec.caFile, CRLFile: s.sec.crlFile}
			if err := s.sec.writeEmptyCRL(); err != nil {
				return nil, err
			}
		}
		s.etcd, err = embedetcd.Start(ctx, ec)
		if err != nil {
			return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.DataDir, err)
		}
		endpoints = s.etcd.Endpoints()
		s.log.Info("embedded etcd ready", "data_dir", cfg.DataDir, "endpoints", endpoints, "tls", s.sec != nil)
	}
	cc := clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	etcdUser := pki.RootCN
	if len(cfg.EtcdEndpoints) > 0 {
		if cc.TLS, etcdUser, err = s.externalTLS(); err != nil {
			return nil, err
		}
	} else if s.sec != nil {
		cc.TLS = s.sec.rootTLS()
	}
	s.cli, err = clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", endpoints, err)
	}
	nsdb.CacheDecoded(nsdb.DecodedCacheBytes)
	s.store = nsdb.New(s.cli)
	initCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := s.store.Init(initCtx); err != nil {
		return nil, fmt.Errorf("initialise the NSDB at %v: %w", endpoints, err)
	}
	if s.sec != nil {
		if err := s.store.EnableAccessControl(initCtx, etcdUser); err != nil {
			return nil, err
		}
		if err := s.sec.writeClientFile(endpoints, cfg); err != nil {
			return nil, err
		}
		agentsEtcd := endpoints // an external cluster's, as given
		if len(cfg.EtcdEndpoints) == 0 {
			agentsEtcd = []string{cfg.EtcdListenAdvertised(endpoints)}
		}
		s.join, err = join.New(initCtx, s.store, join.Options{CA: s.sec.ca, CRLFile: s.sec.crlFile, Validity: cfg.hostCertValidity(),
			Endpoints: agentsEtcd, EtcdCA: s.sec.etcdCA, Log: s.log})
		if err != nil {
			return nil, err
		}
	}

	s.bg, s.stop = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	auth, err := s.authentication(ctx, mux)
	if err != nil {
		return nil, err
	}
	nativeMux := http.NewServeMux()
	native.New(s.store, s.log).Register(nativeMux)
	mux.Handle(native.Prefix+"/", auth(requireAdmin(nativeMux)))
	nsvc := neutron.New(s.store, neutron.Options{Log: s.log})
	neutronapi.New(nsvc, s.log).Register(mux, auth)
	// Ports an older server translated keep working as they are; this
	// rewrites them in the background (neutron.MigratePortFilters).
	s.wg.Go(func() {
		n, err := nsvc.MigratePortFilters(s.bg)
		switch {
		case err != nil && s.bg.Err() == nil:
			s.log.Error("ports' filters not migrated to port security (they keep working; the next start tries again)", "err", err, "migrated", n)
		case n > 0:
			s.log.Info("migrated ports' filters to port security by reference", "ports", n)
		}
	})
	if s.join != nil {
		joinapi.New(s.join, hostclaim.New(s.store), s.sec.ca.CertPEM, s.log).Register(mux, func(h http.Handler) http.Handler { return auth(requireAdmin(h)) })
	}
	dash := ui.New(ui.Options{Store: s.store, Scope: nsvc.NativeScope, Auth: cmp.Or(cfg.Auth, AuthNoAuth), Log: s.log})
	dash.Register(mux, auth)
	s.wg.Go(func() { dash.Run(s.bg) })
	mux.HandleFunc("GET /healthz", s.healthz)
	s.listener, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	scheme := "http"
	if s.sec != nil {
		s.listener, scheme = tls.NewListener(s.listener, s.sec.apiTLS()), "https"
	}
	s.http = &http.Server{Handler: logRequests(s.log, nsdbDeadline(mux)), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)} // TLS handshake noise of scanners and wrong clients
	go func() {
		if err := s.http.Serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("API server stopped", "err", err)
		}
	}()
	s.log.Info("nagare-server listening", "api", scheme+"://"+s.listener.Addr().String())
	return s, nil
}

// URL is the API's base URL (https in secure mode).
func (s *Server) URL() string {
	if s.sec != nil {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// CAFile is the CA clients verify the server with ("" without TLS).
func (s *Server) CAFile() string {
	if s.sec == nil {
		return ""
	}
	return filepath.Join(s.sec.dir, pki.CACertFile)
}

// Join is the agent-identity service (nil without TLS).
func (s *Server) Join() *join.Service { return s.join }

// EtcdListenAdvertised is the etcd URL joined agents are told: the
// configured listen URL, with the bound port when it was 0.
func (c Config) EtcdListenAdvertised(bound []string) string {
	u, err := url.Parse(c.EtcdListen)
	if err != nil || len(bound) == 0 {
		return c.EtcdListen
	}
	if u.Port() == "0" {
		if b, err := url.Parse(bound[0]); err == nil {
			u.Host = net.JoinHostPort(u.Hostname(), b.Port())
		}
	}
	return u.String()
}

// Addr is the API's bound address.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// EtcdEndpoints are the client URLs agents should use.
func (s *Server) EtcdEndpoints() []string { return s.cli.Endpoints() }

// Store is the server's NSDB store.
func (s *Server) Store() *nsdb.Store { return s.store }

// EtcdErr reports fatal errors of the embedded etcd (nil channel when external).
func (s *Server) EtcdErr() <-chan error {
	if s.etcd == nil {
		return nil
	}
	return s.etcd.Err()
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	if err := s.store.Ping(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "unavailable", "nsdb": err.Error()})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "ok", "nsdb": "reachable"})
}

// authentication sets up the configured authentication: the identity API
// and its validator, an external Keystone's validator, or none. It returns
// the middleware that guards the Neutron and native APIs.
func (s *Server) authentication(ctx context.Context, mux *http.ServeMux) (func(http.Handler) http.Handler, error) {
	switch s.cfg.Auth {
	case AuthPassword:
		svc, err := identity.New(ctx, s.store, identity.Options{AdminPassword: s.cfg.AdminPassword, BcryptCost: s.cfg.BcryptCost,
			TokenTTL: s.cfg.TokenTTL, LockoutFailureAttempts: s.cfg.LockoutFailureAttempts, LockoutDuration: s.cfg.LockoutDuration, Log: s.log})
		if err != nil {
			return nil, err
		}
		s.identity = svc
		api := identityapi.NewAPI(svc, s.cfg.PublicURL)
		api.Register(mux)
		auth := func(h http.Handler) http.Handler { return identityapi.Authenticate(svc, api.AuthURL, s.log, h) }
		api.RegisterKeys(mux, func(h http.Handler) http.Handler { return auth(requireAdmin(h)) })
		s.wg.Go(func() { svc.Run(s.bg, s.cfg.TokenKeyRotation) })
		return auth, nil
	case AuthKeystone:
		if s.cfg.KeystoneURL == "" {
			return nil, errors.New("--auth keystone needs --keystone-url")
		}
		k := identityapi.NewKeystone(s.cfg.KeystoneURL)
		authURL := func(*http.Request) string { return strings.TrimSuffix(k.URL(), "/v3") }
		s.log.Info("validating tokens against an external Keystone", "url", k.URL())
		return func(h http.Handler) http.Handler { return identityapi.Authenticate(k, authURL, s.log, h) }, nil
	case AuthNoAuth, "":
		s.log.Warn("!!! AUTHENTICATION IS OFF (--auth noauth): every request to the Neutron and native APIs acts as an administrator of every project. For demos only; never expose this server.")
		return identityapi.NoAuth, nil
	}
	return nil, fmt.Errorf("--auth %q: want password, keystone or noauth", s.cfg.Auth)
}

// requireAdmin admits only administrators to the native API: it changes
// the whole topology, under every project.
func requireAdmin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := identity.FromContext(r.Context()); c == nil || !c.IsAdmin() {
			var b native.ErrorBody
			b.Error.Code, b.Error.Type = http.StatusForbidden, "Forbidden"
			b.Error.Message = "the native API needs the admin role"
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_ = json.NewEncoder(w).Encode(b)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Identity is the built-in identity service (nil unless Auth is password).
func (s *Server) Identity() *identity.Service { return s.identity }

// Close stops the API (letting requests in flight finish), then the NSDB.
func (s *Server) Close() {
	if s.stop != nil {
		s.stop() // also ends the dashboard's event streams, which Shutdown would wait for
	}
	s.wg.Wait()
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
	}
	if s.cli != nil {
		_ = s.cli.Close()
	}
	if s.etcd != nil {
		s.etcd.Close()
	}
}

// requestTimeout bounds an API request's work: with the NSDB unreachable,
// etcd's client waits for it to come back, and the caller would wait with
// it. Past the deadline the APIs answer 503 (the NSDB did not answer in
// time), as /healthz does.
const requestTimeout = 10 * time.Second

// nsdbDeadline puts requestTimeout on the APIs' requests; the dashboard's
// event stream and pages are left alone.
func nsdbDeadline(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, native.Prefix+"/") || strings.HasPrefix(p, "/v2.0/") || strings.HasPrefix(p, "/identity/") {
			ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
			defer cancel()
			r = r.WithContext(ctx)
		}
		h.ServeHTTP(w, r)
	})
}

func logRequests(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := &statusWriter{ResponseWriter: w, status: 200}
		h.ServeHTTP(rw, r)
		log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rw.status, "duration", time.Since(start))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

// Unwrap lets http.ResponseController reach the connection (the
// dashboard's event stream flushes each event).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
