// Package bench holds Nagare's benchmarks that need more than a Go
// benchmark can give: real servers, real namespaces, side-by-side kernel
// baselines. `nagare-bench` runs them and prints one table.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nagare/nagare/pkg/server"
)

// APIResult is one control-plane measurement.
type APIResult struct {
	Clients     int
	Creates     int
	PerSecond   float64
	P50, P99    time.Duration
	ListPorts   int
	ListLatency time.Duration
}

// APIConfig tunes the API benchmark.
type APIConfig struct {
	Clients    []int // concurrency levels, e.g. 1, 8, 64
	Creates    int   // port creates per level
	ListPorts  int   // ports present when timing a full list
	Repeats    int   // list timings to take the median of
	KeepServer bool
}

// RunAPI starts a real nagare-server (embedded etcd with fsync, in a temp
// dir) and measures port creation through HTTP at each concurrency level,
// then the time to list ListPorts ports.
func RunAPI(ctx context.Context, cfg APIConfig, logf func(string, ...any)) ([]APIResult, error) {
	dir, err := os.MkdirTemp("", "nagare-bench-api")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	srv, err := server.Start(ctx, server.Config{
		DataDir: dir, Listen: "127.0.0.1:0",
		EtcdListen: "http://127.0.0.1:0", EtcdPeerURL: "http://127.0.0.1:0",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	base := "http://" + srv.Addr() + "/api/v1"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

	var bridgeID string
	if err := post(client, base+"/bridges", `{"name":"bench"}`, &bridgeID); err != nil {
		return nil, err
	}
	var out []APIResult
	created := 0
	for _, n := range cfg.Clients {
		lat := make([]time.Duration, cfg.Creates)
		var next atomic.Int64
		var wg sync.WaitGroup
		errc := make(chan error, n)
		start := time.Now()
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= cfg.Creates {
						return
					}
					t0 := time.Now()
					if err := post(client, base+"/bridges/"+bridgeID+"/ports", `{}`, nil); err != nil {
						errc <- err
						return
					}
					lat[i] = time.Since(t0)
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		select {
		case err := <-errc:
			return nil, fmt.Errorf("%d clients: %w", n, err)
		default:
		}
		created += cfg.Creates
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		r := APIResult{Clients: n, Creates: cfg.Creates, PerSecond: float64(cfg.Creates) / elapsed.Seconds(),
			P50: lat[len(lat)/2], P99: lat[len(lat)*99/100]}
		logf("api create-port clients=%d: %.0f/s p50=%s p99=%s", n, r.PerSecond, r.P50, r.P99)
		out = append(out, r)
	}
	// Fill up to ListPorts with 64 clients, then time full lists.
	if missing := cfg.ListPorts - created; missing > 0 {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(missing) {
					_ = post(client, base+"/bridges/"+bridgeID+"/ports", `{}`, nil)
				}
			}()
		}
		wg.Wait()
	}
	var lists []time.Duration
	count := 0
	for range max(cfg.Repeats, 1) {
		t0 := time.Now()
		resp, err := client.Get(base + "/ports")
		if err != nil {
			return nil, err
		}
		var ports []json.RawMessage
		err = json.NewDecoder(resp.Body).Decode(&ports)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		lists = append(lists, time.Since(t0))
		count = len(ports)
	}
	sort.Slice(lists, func(i, j int) bool { return lists[i] < lists[j] })
	logf("api list ports: %d ports in %s (median of %d)", count, lists[len(lists)/2], len(lists))
	if len(out) > 0 {
		out[len(out)-1].ListPorts, out[len(out)-1].ListLatency = count, lists[len(lists)/2]
	}
	return out, nil
}

func post(c *http.Client, url, body string, id *string) error {
	resp, err := c.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, b)
	}
	if id != nil {
		var o struct{ ID string }
		if err := json.Unmarshal(b, &o); err != nil {
			return err
		}
		*id = o.ID
	}
	return nil
}
