// Command nagare-server runs Nagare's API server over its NSDB: by default an
// embedded single-node etcd in --data-dir; with --etcd-endpoints an external
// etcd cluster shared by every server replica and agent. It serves the
// native API (/api/v1), the Neutron API (/v2.0) and, with --auth password,
// a Keystone v3 subset (/identity/v3).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/server"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		os.Exit(tokenCommand(os.Args[2:]))
	}
	var cfg server.Config
	var endpoints, logLevel string
	flag.StringVar(&cfg.DataDir, "data-dir", "./nagare-data", "directory of the embedded etcd's data")
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:9696", "address of the REST API")
	flag.StringVar(&endpoints, "etcd-endpoints", "", "comma-separated client addresses (HOST:PORT or URLs) of an external etcd cluster; when set, no embedded etcd is started")
	flag.StringVar(&cfg.EtcdListen, "etcd-listen", "http://127.0.0.1:2379", "client address (HOST:PORT or URL) of the embedded etcd, where agents connect")
	flag.StringVar(&cfg.EtcdPeerURL, "etcd-peer-listen", "http://127.0.0.1:2380", "peer address (HOST:PORT or URL) of the embedded etcd")
	flag.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	flag.StringVar(&cfg.Auth, "auth", server.AuthPassword, "password (built-in identity service), keystone (validate tokens with --keystone-url) or noauth (everyone is admin: demos only)")
	flag.StringVar(&cfg.AdminPassword, "admin-password", "", "with --auth password: on first start, create user admin (project admin, role admin) with this password (env NAGARE_ADMIN_PASSWORD)")
	flag.StringVar(&cfg.KeystoneURL, "keystone-url", "", "with --auth keystone: URL of the Keystone that validates tokens")
	flag.StringVar(&cfg.PublicURL, "public-url", "", "this server's URL as clients reach it, for the identity catalog (default: the Host each request was sent to)")
	flag.BoolVar(&cfg.TLS, "tls", false, "serve HTTPS and etcd with client certificates and RBAC even on loopback (automatic on any other address)")
	flag.BoolVar(&cfg.InsecureHTTP, "insecure-http", false, "serve plain HTTP and an unauthenticated etcd even on non-loopback addresses (labs only: logs a warning)")
	flag.StringVar(&cfg.TLSCertFile, "tls-cert-file", "", "serving certificate of the API and etcd (default: issued by the CA in DATA-DIR/pki)")
	flag.StringVar(&cfg.TLSKeyFile, "tls-key-file", "", "key of --tls-cert-file")
	flag.StringVar(&cfg.ClientCAFile, "client-ca-file", "", "further CAs whose client certificates etcd and the API trust")
	flag.StringVar(&cfg.EtcdCAFile, "etcd-cafile", "", "with --etcd-endpoints: CA of the cluster's serving certificates (default: DATA-DIR/pki/ca.crt in secure mode)")
	flag.StringVar(&cfg.EtcdCertFile, "etcd-certfile", "", "with --etcd-endpoints: this server's client certificate (its CN gets etcd's root role; default: one DATA-DIR/pki's CA issues, CN root)")
	flag.StringVar(&cfg.EtcdKeyFile, "etcd-keyfile", "", "key of --etcd-certfile")
	flag.DurationVar(&cfg.TokenTTL, "token-ttl", time.Hour, "with --auth password: how long tokens live (Keystone's [token] expiration)")
	flag.IntVar(&cfg.LockoutFailureAttempts, "lockout-failure-attempts", identity.DefaultLockoutFailureAttempts,
		"with --auth password: failed logins of a user from one address that lock them out (Keystone's lockout_failure_attempts; 0: never)")
	flag.DurationVar(&cfg.LockoutDuration, "lockout-duration", identity.DefaultLockoutDuration, "how long a lockout lasts (Keystone's lockout_duration)")
	flag.DurationVar(&cfg.TokenKeyRotation, "token-key-rotation", 24*time.Hour,
		"rotate the token signing key when it is this old (0: only on POST /api/v1/token-signing-keys/rotate); tokens of the previous key stay valid until they expire")
	flag.Parse()
	if cfg.LockoutFailureAttempts == 0 {
		cfg.LockoutFailureAttempts = -1 // the flag's 0 is off; the Config's 0 is the default
	}
	if cfg.AdminPassword == "" {
		// Read here rather than as the flag's default, which --help prints.
		cfg.AdminPassword = os.Getenv("NAGARE_ADMIN_PASSWORD")
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "nagare-server: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	for _, e := range strings.Split(endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			cfg.EtcdEndpoints = append(cfg.EtcdEndpoints, e)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "nagare-server: --log-level: %v\n", err)
		os.Exit(2)
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := server.Start(ctx, cfg)
	if err != nil {
		cfg.Log.Error("cannot start", "err", err)
		os.Exit(1)
	}
	select {
	case <-ctx.Done():
		cfg.Log.Info("shutting down")
	case err := <-srv.EtcdErr():
		cfg.Log.Error("embedded etcd failed", "err", err)
		srv.Close()
		os.Exit(1)
	}
	srv.Close()
}
