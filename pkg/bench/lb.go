package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The load balancer benchmark: HTTP requests per second, each on a new
// TCP connection (so every request is a new flow: a miss, a simulation,
// a DNAT binding), from one client VM to a VIP balanced over three backend
// VMs, beside the same client talking to one backend directly through the
// same router (the price of balancing), and the Linux kernel doing the
// same: IPVS (NAT mode) when the kernel has it, plain forwarding always.
//
// Servers and clients are Go sockets opened inside the VM namespaces by
// this process: the generator is the same on both sides.

// LBConfig configures RunLB.
type LBConfig struct {
	AgentBin string
	Dur      time.Duration // measurement window per case
	Clients  int           // concurrent client connections
	Reps     int
}

// LBResult is one case's requests per second (median of Reps windows).
type LBResult struct {
	Case    string
	Rate    float64 // requests/s, median
	Runs    []float64
	Errors  int64  // failed requests over all windows
	Skipped string // why the case did not run
}

const (
	lbVIP      = "10.14.100.10"
	lbBackends = 3
)

// RunLB runs the cases and returns one result per case.
func RunLB(ctx context.Context, cfg LBConfig, logf func(string, ...any)) ([]LBResult, error) {
	if cfg.Dur == 0 {
		cfg.Dur = 5 * time.Second
	}
	if cfg.Clients == 0 {
		cfg.Clients = 8
	}
	if cfg.Reps == 0 {
		cfg.Reps = 3
	}
	l, err := newLab(logf)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	defer closeLBServers()
	var out []LBResult
	measure := func(name, ns, addr string) {
		r := LBResult{Case: name}
		for i := 0; i < cfg.Reps && ctx.Err() == nil; i++ {
			rate, errs, first := httpRate(ctx, ns, addr, cfg.Clients, cfg.Dur)
			r.Runs = append(r.Runs, rate)
			r.Errors += errs
			logf("%s: %.0f requests/s (%d failed; first: %v)", name, rate, errs, first)
		}
		if len(r.Runs) > 0 {
			s := append([]float64(nil), r.Runs...)
			sort.Float64s(s)
			r.Rate = s[len(s)/2]
		}
		out = append(out, r)
	}

	// Nagare.
	c, err := startCluster(ctx, cfg.AgentBin)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	client, backends, err := c.nagareLB(ctx, l)
	if err != nil {
		return nil, err
	}
	// Direct first: after the VIP's windows, the DNAT bindings of closed
	// connections linger, and a direct connection that reuses a client
	// port matches one's reverse key (backend:80 → client:port): its
	// SYN-ACK comes back translated to the VIP and the connect times out.
	measure("nagare routed, no LB", client, backends[0]+":80")
	if err := waitHTTP(ctx, client, lbVIP+":80"); err != nil {
		out = append(out, LBResult{Case: "nagare VIP (3 backends)", Skipped: err.Error()})
	} else {
		measure("nagare VIP (3 backends)", client, lbVIP+":80")
	}

	// The kernel.
	kclient, kbackends, ipvs, err := kernelLB(l)
	if err != nil {
		return out, err
	}
	if ipvs != "" {
		out = append(out, LBResult{Case: "kernel IPVS NAT (3 backends)", Skipped: ipvs})
	} else {
		measure("kernel IPVS NAT (3 backends)", kclient, "10.15.100.10:80")
	}
	measure("kernel routed, no LB", kclient, kbackends[0]+":80")
	return out, nil
}

// lbServers are the backends' HTTP servers, closed when RunLB returns.
var lbServers struct {
	sync.Mutex
	list []*http.Server
}

func closeLBServers() {
	lbServers.Lock()
	defer lbServers.Unlock()
	for _, s := range lbServers.list {
		s.Close()
	}
	lbServers.list = nil
}

// serveName serves HTTP on addr inside ns, answering name.
func serveName(ns, addr, name string) error {
	var ln net.Listener
	err := inNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, name)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	lbServers.Lock()
	lbServers.list = append(lbServers.list, srv)
	lbServers.Unlock()
	return nil
}

func dialIn(ctx context.Context, ns, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp4", addr)
		return err
	})
	return c, err
}

// get makes one HTTP/1.0 request on a new connection.
func get(ctx context.Context, ns, addr string) error {
	c, err := dialIn(ctx, ns, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(b), "HTTP/1.0 200") {
		return fmt.Errorf("bad answer %.40q", b)
	}
	return nil
}

func waitHTTP(ctx context.Context, ns, addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := get(ctx, ns, addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no HTTP answer from %s within 20 s: %w", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// httpRate runs clients loops of requests for dur and returns requests/s.
func httpRate(ctx context.Context, ns, addr string, clients int, dur time.Duration) (float64, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var ok, failed atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := get(ctx, ns, addr); err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
						first.CompareAndSwap(nil, err)
					}
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	err, _ := first.Load().(error)
	return float64(ok.Load()) / time.Since(start).Seconds(), failed.Load(), err
}

// nagareLB: one hypervisor; a client VM on 10.14.1.0/24, three backend VMs
// on 10.14.2.0/24, a router between, and a load balancer on the router
// with VIP 10.14.100.10:80 over the backends (weights 1).
func (c *cluster) nagareLB(ctx context.Context, l *lab) (string, []string, error) {
	hv, err := l.netns("nlb-hv")
	if err != nil {
		return "", nil, err
	}
	a, err := c.startAgent(ctx, l, "bench-lb-hv", hv, "192.168.253.2")
	if err != nil {
		return "", nil, err
	}
	rt, err := c.create("/routers", map[string]string{"name": "bench-lb"})
	if err != nil {
		return "", nil, err
	}
	type vmSpec struct{ name, tap, cidr, gw string }
	nets := []struct {
		net, gw string
		vms     []vmSpec
	}{
		{"10.14.1.0/24", "10.14.1.254", []vmSpec{{"nlb-c", "tapc", "10.14.1.1/24", "10.14.1.254"}}},
		{"10.14.2.0/24", "10.14.2.254", nil},
	}
	var backends []string
	for i := range lbBackends {
		nets[1].vms = append(nets[1].vms, vmSpec{fmt.Sprintf("nlb-b%d", i+1), fmt.Sprintf("tapb%d", i+1), fmt.Sprintf("10.14.2.%d/24", i+1), "10.14.2.254"})
		backends = append(backends, fmt.Sprintf("10.14.2.%d", i+1))
	}
	var client string
	var eps []endpoint
	for i, n := range nets {
		br, err := c.create("/bridges", map[string]string{"name": fmt.Sprintf("bench-lb-net%d", i+1)})
		if err != nil {
			return "", nil, err
		}
		uplink, err := c.create("/ports", map[string]string{"bridge_id": br.ID})
		if err != nil {
			return "", nil, err
		}
		rp, err := c.create("/ports", map[string]string{"router_id": rt.ID, "address": n.gw, "network": n.net})
		if err != nil {
			return "", nil, err
		}
		if err := c.call("PUT", "/ports/"+uplink.ID+"/link", map[string]string{"peer_id": rp.ID}, nil); err != nil {
			return "", nil, err
		}
		if _, err := c.create("/routes", map[string]string{"router_id": rt.ID, "dst": n.net, "port_id": rp.ID}); err != nil {
			return "", nil, err
		}
		for _, v := range n.vms {
			ep, err := vm(l, v.name, hv, v.tap, v.cidr, v.gw, 0)
			if err != nil {
				return "", nil, err
			}
			p, err := c.create("/ports", map[string]string{"bridge_id": br.ID})
			if err != nil {
				return "", nil, err
			}
			if err := c.bind(a, v.tap, p.ID); err != nil {
				return "", nil, err
			}
			if i == 0 {
				client = ep.NS
			} else {
				eps = append(eps, ep)
				if err := serveName(ep.NS, ep.IP+":80", v.name); err != nil {
					return "", nil, err
				}
			}
		}
	}
	lb, err := c.create("/load-balancers", map[string]string{"name": "bench-lb"})
	if err != nil {
		return "", nil, err
	}
	if err := c.call("PATCH", "/routers/"+rt.ID, map[string]string{"load_balancer_id": lb.ID}, nil); err != nil {
		return "", nil, err
	}
	pool, err := c.create("/pools", map[string]string{"load_balancer_id": lb.ID, "protocol": "tcp"})
	if err != nil {
		return "", nil, err
	}
	for _, b := range backends {
		if _, err := c.create("/pool-members", map[string]any{"pool_id": pool.ID, "address": b, "protocol_port": 80}); err != nil {
			return "", nil, err
		}
	}
	if _, err := c.create("/vips", map[string]any{"load_balancer_id": lb.ID, "pool_id": pool.ID, "address": lbVIP, "protocol_port": 80}); err != nil {
		return "", nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for !a.attached() {
		if time.Now().After(deadline) {
			return "", nil, fmt.Errorf("agent did not attach %v within 30 s:\n%s", a.ifaces, a.proc.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, b := range backends {
		if err := waitHTTP(ctx, client, b+":80"); err != nil {
			return "", nil, fmt.Errorf("nagare LB testbed: %w\n%s", err, a.proc.out.String())
		}
	}
	return client, backends, nil
}

// kernelLB: the same shape with a router namespace doing IPv4 forwarding
// (backends on a Linux bridge in it) and, when the kernel has IPVS, a NAT
// virtual service 10.15.100.10:80 over the backends. ipvs says why IPVS is
// not there ("" when it is).
func kernelLB(l *lab) (client string, backends []string, ipvs string, err error) {
	rt, err := l.netns("klb-rt")
	if err != nil {
		return "", nil, "", err
	}
	if err := l.sysctl(rt, "net.ipv4.ip_forward", "1"); err != nil {
		return "", nil, "", err
	}
	c, err := vm(l, "klb-c", rt, "tapc", "10.15.1.1/24", "10.15.1.254", 0)
	if err != nil {
		return "", nil, "", err
	}
	if err := l.ip(rt, "addr", "add", "10.15.1.254/24", "dev", "tapc"); err != nil {
		return "", nil, "", err
	}
	for _, s := range [][]string{{"link", "add", "br0", "type", "bridge"}, {"addr", "add", "10.15.2.254/24", "dev", "br0"}, {"link", "set", "br0", "up"}} {
		if err := l.ip(rt, s...); err != nil {
			return "", nil, "", err
		}
	}
	for i := range lbBackends {
		ip := fmt.Sprintf("10.15.2.%d", i+1)
		ep, err := vm(l, fmt.Sprintf("klb-b%d", i+1), rt, fmt.Sprintf("tapb%d", i+1), ip+"/24", "10.15.2.254", 0)
		if err != nil {
			return "", nil, "", err
		}
		if err := l.ip(rt, "link", "set", fmt.Sprintf("tapb%d", i+1), "master", "br0"); err != nil {
			return "", nil, "", err
		}
		if err := serveName(ep.NS, ip+":80", ep.NS); err != nil {
			return "", nil, "", err
		}
		backends = append(backends, ip)
	}
	ipvs = kernelIPVS(l, rt, backends)
	for _, b := range backends {
		if err := waitHTTP(context.Background(), c.NS, b+":80"); err != nil {
			return "", nil, "", fmt.Errorf("kernel LB testbed: %w", err)
		}
	}
	return c.NS, backends, ipvs, nil
}

// kernelIPVS sets up the IPVS virtual service, or says why it cannot.
func kernelIPVS(l *lab, rt string, backends []string) string {
	if _, err := os.Stat("/proc/net/ip_vs"); errors.Is(err, os.ErrNotExist) {
		if mp, err := exec.LookPath("modprobe"); err == nil {
			_ = exec.Command(mp, "ip_vs").Run()
		}
		if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
			return "the kernel has no IPVS (no /proc/net/ip_vs, ip_vs neither built in nor loadable)"
		}
	}
	if _, err := exec.LookPath("ipvsadm"); err != nil {
		return "ipvsadm is not installed (apt-get install ipvsadm)"
	}
	const vip = "10.15.100.10"
	steps := [][]string{{"ip", "addr", "add", vip + "/32", "dev", "lo"}, {"ipvsadm", "-A", "-t", vip + ":80", "-s", "rr"}}
	for _, b := range backends {
		steps = append(steps, []string{"ipvsadm", "-a", "-t", vip + ":80", "-r", b + ":80", "-m"})
	}
	for _, s := range steps {
		if _, err := l.exec(rt, s...); err != nil {
			return fmt.Sprintf("IPVS setup failed: %v", err)
		}
	}
	return ""
}
