// Package bench holds Nagare's benchmarks that need more than a Go
// benchmark can give: real servers, real namespaces, side-by-side kernel
// baselines. `nagare-bench` runs them and prints one table.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// APIResult is one control-plane measurement.
type APIResult struct {
	Auth      bool
	Clients   int
	Creates   int
	PerSecond float64
	P50, P99  time.Duration
	// CPUPerCreate is the process's CPU time (client, server and etcd)
	// per create.
	CPUPerCreate time.Duration
	ListPorts    int
	ListLatency  time.Duration
}

// APIConfig tunes the API benchmark.
type APIConfig struct {
	Clients   []int // concurrency levels, e.g. 1, 8, 64
	Creates   int   // port creates per level
	ListPorts int   // ports present when timing a full list
	Repeats   int   // list timings to take the median of
	// Auth runs the server with password authentication (its default):
	// every request carries a token the server validates.
	Auth bool
	// CPUProfile, if set, is where the CPU profile of the whole process
	// (clients, server and etcd share it) during the last level goes.
	CPUProfile string
}

// RunAPI starts a real nagare-server (embedded etcd with fsync, in a temp
// dir) and measures port creation through HTTP at each concurrency level,
// then the time to list ListPorts ports.
func RunAPI(ctx context.Context, cfg APIConfig, logf func(string, ...any)) ([]APIResult, error) {
	srv, err := startAPIServer(ctx, cfg.Auth)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	// One login per client, untimed (a login is a bcrypt comparison by
	// design); without authentication tokens are empty.
	tokens := make([]string, slices.Max(append(cfg.Clients, 64)))
	for i := range tokens {
		if tokens[i], _, err = srv.login(ctx); err != nil {
			return nil, err
		}
	}
	var bridge struct{ ID string }
	if _, err := srv.call(ctx, tokens[0], "POST", "/api/v1/bridges", `{"name":"bench"}`, http.StatusCreated, &bridge); err != nil {
		return nil, err
	}
	portsPath := "/api/v1/bridges/" + bridge.ID + "/ports"
	createMany := func(clients, n int, lat []time.Duration) error {
		var next atomic.Int64
		var wg sync.WaitGroup
		errc := make(chan error, clients)
		for c := range clients {
			tok := tokens[c]
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					t0 := time.Now()
					if _, err := srv.call(ctx, tok, "POST", portsPath, `{}`, http.StatusCreated, nil); err != nil {
						errc <- err
						return
					}
					if lat != nil {
						lat[i] = time.Since(t0)
					}
				}
			})
		}
		wg.Wait()
		select {
		case err := <-errc:
			return err
		default:
			return nil
		}
	}
	// Warm up (first-use paths, connection pools, token caches), untimed.
	if err := createMany(slices.Max(cfg.Clients), 2*slices.Max(cfg.Clients), nil); err != nil {
		return nil, err
	}
	created := 2 * slices.Max(cfg.Clients)
	var out []APIResult
	for li, n := range cfg.Clients {
		stopProfile := func() {}
		if li == len(cfg.Clients)-1 && cfg.CPUProfile != "" {
			if stopProfile, err = startCPUProfile(cfg.CPUProfile); err != nil {
				return nil, err
			}
		}
		lat := make([]time.Duration, cfg.Creates)
		cpu0, start := processCPU(), time.Now()
		err := createMany(n, cfg.Creates, lat)
		elapsed, cpu := time.Since(start), processCPU()-cpu0
		stopProfile()
		if err != nil {
			return nil, fmt.Errorf("%d clients: %w", n, err)
		}
		created += cfg.Creates
		slices.Sort(lat)
		r := APIResult{Auth: cfg.Auth, Clients: n, Creates: cfg.Creates, PerSecond: float64(cfg.Creates) / elapsed.Seconds(),
			P50: lat[len(lat)/2], P99: lat[len(lat)*99/100], CPUPerCreate: cpu / time.Duration(cfg.Creates)}
		logf("api create-port auth=%v clients=%d: %.0f/s p50=%s p99=%s cpu/create=%s", cfg.Auth, n, r.PerSecond, r.P50, r.P99, r.CPUPerCreate)
		out = append(out, r)
	}
	// Fill up to ListPorts with 64 clients, then time full lists.
	if missing := cfg.ListPorts - created; missing > 0 {
		if err := createMany(64, missing, nil); err != nil {
			return nil, err
		}
	}
	var lists []time.Duration
	count := 0
	for range max(cfg.Repeats, 1) {
		var ports []json.RawMessage
		t0 := time.Now()
		if _, err := srv.call(ctx, tokens[0], "GET", "/api/v1/ports", "", http.StatusOK, &ports); err != nil {
			return nil, err
		}
		lists = append(lists, time.Since(t0))
		count = len(ports)
	}
	slices.Sort(lists)
	logf("api list ports auth=%v: %d ports in %s (median of %d)", cfg.Auth, count, lists[len(lists)/2], len(lists))
	if len(out) > 0 {
		out[len(out)-1].ListPorts, out[len(out)-1].ListLatency = count, lists[len(lists)/2]
	}
	return out, nil
}

// startCPUProfile profiles the whole process into file until stop.
func startCPUProfile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// writeHeapProfile writes the heap profile of the whole process to file.
func writeHeapProfile(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// processCPU is the CPU time (user and system) this process has used:
// the benchmarks' clients, server and etcd all run in it. On a shared,
// loaded machine it is steadier than wall-clock rates, which measure the
// machine's load as much as the code.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
