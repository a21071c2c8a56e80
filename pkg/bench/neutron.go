package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nagare/nagare/pkg/nsdb"
)

// NeutronConfig tunes the Neutron API benchmark.
type NeutronConfig struct {
	Clients   int // concurrent clients creating ports (each logs in on its own)
	Creates   int // port creates timed
	ListPorts int // ports present when timing the list
	Repeats   int // list timings to take the median of
	// CPUProfile, if set, is where the CPU profile of the whole process
	// (clients, server and etcd) during the timed creates goes; the one
	// of the timed lists goes to CPUProfile+".list".
	CPUProfile string
}

// NeutronResult is what the Neutron benchmark measured.
type NeutronResult struct {
	Clients   int
	Creates   int
	PerSecond float64
	P50, P99  time.Duration
	Retries   int64 // transactions rerun after losing to a concurrent writer
	// CPUPerCreate and ListCPU are the process's CPU time (clients,
	// server, etcd) per create and per list.
	CPUPerCreate, ListCPU time.Duration
	ListPorts             int
	// ListHTTP is GET /v2.0/ports (every port, as openstack port list asks
	// for them); ListCLI is the whole `openstack port list` command,
	// Python start-up and login included (0 when the CLI is missing).
	ListHTTP, ListCLI time.Duration
}

// RunNeutron starts a real nagare-server (embedded etcd with fsync,
// password authentication) and measures Neutron port creation through the
// full stack — token validation, Neutron validation, IP and MAC
// allocation, the default security group, and the native translation
// (bridge port, three chains of rules, DHCP host, address group entry),
// all in one etcd transaction — with concurrent clients, then the time to
// list ListPorts ports.
func RunNeutron(ctx context.Context, cfg NeutronConfig, logf func(string, ...any)) (*NeutronResult, error) {
	srv, err := startAPIServer(ctx, true)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	base, password := srv.base, srv.password
	token, project, err := srv.login(ctx)
	if err != nil {
		return nil, err
	}
	call := func(tok, method, path, body string, want int, out any) error {
		_, err := srv.call(ctx, tok, method, path, body, want, out)
		return err
	}
	login := func() (string, string, error) { return srv.login(ctx) }
	if err := call(token, "PUT", "/v2.0/quotas/"+project, `{"quota": {"port": -1}}`, 200, nil); err != nil {
		return nil, err
	}
	var net struct{ Network struct{ ID string } }
	if err := call(token, "POST", "/v2.0/networks", `{"network": {"name": "bench"}}`, 201, &net); err != nil {
		return nil, err
	}
	if err := call(token, "POST", "/v2.0/subnets", `{"subnet": {"network_id": "`+net.Network.ID+`", "ip_version": 4, "cidr": "10.0.0.0/16"}}`, 201, nil); err != nil {
		return nil, err
	}
	portBody := `{"port": {"network_id": "` + net.Network.ID + `"}}`
	// Each client logs in once, before anything is timed: a login is a
	// bcrypt comparison (~0.25 s of CPU by design), not part of a create.
	tokens := make([]string, max(cfg.Clients, 16))
	for i := range tokens {
		if tokens[i], _, err = login(); err != nil {
			return nil, err
		}
	}
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
					if err := call(tok, "POST", "/v2.0/ports", portBody, 201, nil); err != nil {
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
	// Warm up (first-use paths, connection pools), untimed.
	if err := createMany(cfg.Clients, 2*cfg.Clients, nil); err != nil {
		return nil, err
	}
	stopProfile := func() {}
	if cfg.CPUProfile != "" {
		if stopProfile, err = startCPUProfile(cfg.CPUProfile); err != nil {
			return nil, err
		}
	}
	lat := make([]time.Duration, cfg.Creates)
	retried := nsdb.Retries()
	cpu0, start := processCPU(), time.Now()
	err = createMany(cfg.Clients, cfg.Creates, lat)
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	stopProfile()
	if err != nil {
		return nil, err
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res := &NeutronResult{Clients: cfg.Clients, Creates: cfg.Creates, PerSecond: float64(cfg.Creates) / elapsed.Seconds(),
		P50: lat[len(lat)/2], P99: lat[len(lat)*99/100]}
	res.Retries, res.CPUPerCreate = nsdb.Retries()-retried, cpu/time.Duration(cfg.Creates)
	logf("neutron port create clients=%d: %.0f/s p50=%s p99=%s cpu/create=%s, %d transactions rerun", cfg.Clients, res.PerSecond, res.P50, res.P99,
		res.CPUPerCreate, res.Retries)

	if missing := cfg.ListPorts - cfg.Creates - 2*cfg.Clients; missing > 0 {
		logf("creating %d more ports for the list", missing)
		if err := createMany(16, missing, nil); err != nil {
			return nil, err
		}
	}
	if cfg.CPUProfile != "" {
		if stopProfile, err = startCPUProfile(cfg.CPUProfile + ".list"); err != nil {
			return nil, err
		}
	}
	// A list is timed (wall and CPU) from the request to the last byte of
	// the answer; the client's decoding of it, which cost as much CPU as
	// the server's encoding, is not part of the server's time.
	var lists []time.Duration
	var listCPU time.Duration
	for range max(cfg.Repeats, 1) {
		var body json.RawMessage
		c0, t0 := processCPU(), time.Now()
		if err := call(token, "GET", "/v2.0/ports", "", 200, (*rawBody)(&body)); err != nil {
			return nil, err
		}
		lists = append(lists, time.Since(t0))
		listCPU += processCPU() - c0
		var doc struct {
			Ports []json.RawMessage `json:"ports"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			return nil, fmt.Errorf("GET /v2.0/ports: %w", err)
		}
		res.ListPorts = len(doc.Ports)
	}
	res.ListCPU = listCPU / time.Duration(len(lists))
	stopProfile()
	sort.Slice(lists, func(i, j int) bool { return lists[i] < lists[j] })
	res.ListHTTP = lists[len(lists)/2]
	logf("neutron GET /v2.0/ports: %d ports in %s (median of %d), cpu/list=%s", res.ListPorts, res.ListHTTP, len(lists), res.ListCPU)
	if _, err := exec.LookPath("openstack"); err == nil {
		cmd := exec.CommandContext(ctx, "openstack", "port", "list", "-f", "value", "-c", "ID")
		cmd.Env = append(os.Environ(), "OS_AUTH_URL="+base+"/identity/v3", "OS_IDENTITY_API_VERSION=3", "OS_USERNAME=admin",
			"OS_PASSWORD="+password, "OS_PROJECT_NAME=admin", "OS_USER_DOMAIN_NAME=Default", "OS_PROJECT_DOMAIN_NAME=Default")
		t0 := time.Now()
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("openstack port list: %w", err)
		}
		res.ListCLI = time.Since(t0)
		logf("openstack port list: %d lines in %s", bytes.Count(out, []byte("\n")), res.ListCLI)
	}
	return res, nil
}
