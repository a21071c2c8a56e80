// Package server runs nagare-server: the NSDB (an embedded single-node etcd
// by default, or an external cluster), the native REST API and the health
// endpoint. It holds no state of its own: everything lives in the NSDB, so
// several servers can run against one etcd cluster.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/nagare/nagare/pkg/api/native"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/server/embedetcd"
)

// Config is nagare-server's configuration (its flags).
type Config struct {
	DataDir       string   // where the embedded etcd keeps its data
	Listen        string   // API address, host:port
	EtcdEndpoints []string // external etcd cluster; empty = embedded
	EtcdListen    string   // client URL of the embedded etcd (agents connect here)
	EtcdPeerURL   string   // peer URL of the embedded etcd
	Log           *slog.Logger
}

// Server is a running nagare-server.
type Server struct {
	cfg      Config
	etcd     *embedetcd.Etcd // nil with an external cluster
	cli      *clientv3.Client
	store    *nsdb.Store
	http     *http.Server
	listener net.Listener
	log      *slog.Logger
}

// Start brings up the NSDB and the API. The API listens when Start returns.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	endpoints := cfg.EtcdEndpoints
	if len(endpoints) == 0 {
		s.etcd, err = embedetcd.Start(ctx, embedetcd.Config{
			DataDir:   filepath.Join(cfg.DataDir),
			ClientURL: cfg.EtcdListen,
			PeerURL:   cfg.EtcdPeerURL,
			Name:      "nagare",
		})
		if err != nil {
			return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.DataDir, err)
		}
		endpoints = s.etcd.Endpoints()
		s.log.Info("embedded etcd ready", "data_dir", cfg.DataDir, "endpoints", endpoints)
	}
	s.cli, err = clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", endpoints, err)
	}
	s.store = nsdb.New(s.cli)
	initCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := s.store.Init(initCtx); err != nil {
		return nil, fmt.Errorf("initialise the NSDB at %v: %w", endpoints, err)
	}

	mux := http.NewServeMux()
	native.New(s.store, s.log).Register(mux)
	mux.HandleFunc("GET /healthz", s.healthz)
	s.listener, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	s.http = &http.Server{Handler: logRequests(s.log, mux), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.http.Serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("API server stopped", "err", err)
		}
	}()
	s.log.Info("nagare-server listening", "api", "http://"+s.listener.Addr().String())
	return s, nil
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

// Close stops the API (letting requests in flight finish), then the NSDB.
func (s *Server) Close() {
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
