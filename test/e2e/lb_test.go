//go:build linux

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nagare/nagare/test/e2e/harness"
)

// The L4 load balancer end to end: three backend VMs on three hypervisors
// run real HTTP (and UDP) servers answering their own name; a client VM on
// another subnet talks to VIPs on the router. Health monitoring is done by
// the agents (pkg/agent/lbhealth) through a health-check port of the router,
// so a backend's death is seen through the overlay, as a client would.
//
// The subtests share one environment and run in order; the failover of
// the checking agent comes last because it kills an agent.

const (
	lbVIP     = "10.0.100.10"
	lbHTTP    = lbVIP + ":80"
	lbSticky  = lbVIP + ":8080"
	lbUDP     = lbVIP + ":53"
	hmDelay   = time.Second
	lbClients = "10.0.2.0/24"
)

// backend is one HTTP server of a backend VM, stoppable and restartable.
type backend struct {
	name string
	vm   *harness.VM
	mu   sync.Mutex
	srv  *http.Server
}

func (b *backend) start(t *testing.T) {
	t.Helper()
	var l net.Listener
	err := b.vm.NS.Do(func() error {
		var err error
		l, err = net.Listen("tcp4", b.vm.Addr+":80")
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", b.name, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, b.name)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
}

// stop closes the listener and every connection: the backend is dead.
func (b *backend) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		_ = b.srv.Close()
		b.srv = nil
	}
}

// serveUDPName answers every datagram on addr inside ns with name.
func serveUDPName(t *testing.T, ns *harness.NS, addr, name string) {
	t.Helper()
	var pc net.PacketConn
	err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name), from)
		}
	}()
}

// lbClient makes HTTP requests from a VM, each on a new connection.
type lbClient struct {
	vm *harness.VM
}

func (c lbClient) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := c.vm.NS.Do(func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// get fetches http://addr/ on a fresh connection and returns the body.
func (c lbClient) get(addr string) (string, error) {
	tr := &http.Transport{DialContext: c.dial, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 3 * time.Second}
	resp, err := cl.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(b), nil
}

// counts makes n requests and counts the answers per backend and the
// failures.
func (c lbClient) counts(addr string, n int) (map[string]int, []error) {
	got := map[string]int{}
	var errs []error
	for range n {
		name, err := c.get(addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if f := strings.Fields(name); len(f) > 0 {
			name = f[0] // serveHTTP adds the client's address
		}
		got[name]++
	}
	return got, errs
}

// udp sends one datagram to addr and returns the answer.
func (c lbClient) udp(addr string) (string, error) {
	conn, err := c.dial(context.Background(), "udp4", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("who")); err != nil {
		return "", err
	}
	buf := make([]byte, 100)
	n, err := conn.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// keepAlive is one HTTP/1.1 connection used for several requests.
type keepAlive struct {
	conn net.Conn
	r    *bufio.Reader
}

func (k *keepAlive) get() (string, error) {
	_ = k.conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(k.conn, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.Close {
		return string(b), errors.New("the server closed the keep-alive connection")
	}
	return string(b), err
}

type lbEnv struct {
	env
	backends []*backend
	client   lbClient
	member   map[string]string // backend name → CLI path of its HTTP member
	weight   map[string]int
}

func newLBEnv(t *testing.T) *lbEnv {
	t.Helper()
	e := &lbEnv{env: env{harness.New(t, harness.Options{Hypervisors: 3}), t},
		member: map[string]string{}, weight: map[string]int{}}
	e.cli("create tunnel-zone name tz type vxlan")
	for _, h := range e.Hosts {
		e.cli("tunnel-zone tzone0 add member host %s address %s", h.Alias, h.TunnelIP)
	}
	e.cli("create router name r")
	back := e.cli("create bridge name back")
	front := e.cli("create bridge name front")
	e.link("router0", back, "10.0.1.1", "10.0.1.0/24")
	e.link("router0", front, "10.0.2.1", lbClients)
	for i, h := range e.Hosts {
		name := fmt.Sprintf("b%d", i+1)
		vm := e.vmOn(h, back, name, fmt.Sprintf("02:00:0a:00:01:%02x", 11+i), fmt.Sprintf("10.0.1.%d/24", 11+i), "10.0.1.1")
		b := &backend{name: name, vm: vm}
		b.start(t)
		t.Cleanup(b.stop)
		serveUDPName(t, vm.NS, vm.Addr+":5353", name)
		serveHTTP(t, vm.NS, vm.Addr+":8080", name)
		e.backends = append(e.backends, b)
	}
	e.client = lbClient{e.vmOn(e.Host("hv2"), front, "client", "02:00:0a:00:02:15", "10.0.2.21/24", "10.0.2.1")}
	for _, b := range e.backends {
		b.vm.WaitPing(t, "10.0.1.1", 15*time.Second)
	}
	e.client.vm.WaitPing(t, "10.0.1.11", 15*time.Second)

	hm := e.cli("create health-monitor name web type http delay %d timeout 1 max-retries 2 max-retries-down 1 url-path /health expected-codes 200-204", int(hmDelay/time.Second))
	lb := e.cli("create load-balancer name lb")
	e.cli("router router0 set load-balancer %s", lb)
	pool := e.cli("load-balancer %s add pool protocol tcp health-monitor %s", lb, hm)
	_, poolAlias, _ := strings.Cut(pool, ":")
	for i, b := range e.backends {
		w := i + 1 // weights 1, 2, 3
		m := e.cli("load-balancer %s pool %s add member address %s port 80 weight %d", lb, poolAlias, b.vm.Addr, w)
		_, mAlias, _ := strings.Cut(strings.TrimPrefix(m, pool), ":")
		e.member[b.name] = fmt.Sprintf("load-balancer %s pool %s member %s", lb, poolAlias, mAlias)
		e.weight[b.name] = w
	}
	e.cli("load-balancer %s add vip pool %s address %s port 80", lb, poolAlias, lbVIP)
	udp := e.cli("load-balancer %s add pool protocol udp", lb)
	_, udpAlias, _ := strings.Cut(udp, ":")
	for _, b := range e.backends {
		e.cli("load-balancer %s pool %s add member address %s port 5353", lb, udpAlias, b.vm.Addr)
	}
	e.cli("load-balancer %s add vip pool %s address %s port 53", lb, udpAlias, lbVIP)
	// The source-IP VIP balances over other backend ports than the plain
	// one: two VIPs over the same backend address:port give bindings the
	// same reply key when the client reuses a source port (see the report
	// of this test's branch), which is not what this test is about.
	sticky := e.cli("load-balancer %s add pool protocol tcp", lb)
	_, stickyAlias, _ := strings.Cut(sticky, ":")
	for _, b := range e.backends {
		e.cli("load-balancer %s pool %s add member address %s port 8080", lb, stickyAlias, b.vm.Addr)
	}
	e.cli("load-balancer %s add vip pool %s address %s port 8080 persistence source_ip", lb, stickyAlias, lbVIP)
	return e
}

func (e *lbEnv) status(name string) string {
	out, err := e.CLI(e.member[name] + " show status")
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(out)
}

// waitStatus waits until the CLI shows the backend's member with status
// and returns how long that took.
func (e *lbEnv) waitStatus(t *testing.T, name, status string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	err := harness.Eventually(timeout, func() error {
		if last = e.status(name); last != status {
			return fmt.Errorf("status %q", last)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("member of %s: status %q after %s, want %q", name, last, timeout, status)
	}
	return time.Since(start)
}

// healthChanges counts the member health changes to status that h's
// agent has applied to its topology (its mirror logs each: `pool member
// health changed members=map[<id>:<status>]`).
func healthChanges(h *harness.Hypervisor, status string) int {
	n := 0
	for _, line := range strings.Split(h.AgentLog(), "\n") {
		if strings.Contains(line, `msg="pool member health changed" members=map[`) && (strings.Contains(line, ":"+status+"]") || strings.Contains(line, ":"+status+" ")) {
			n++
		}
	}
	return n
}

// waitHealthChange waits until h's agent has applied a member health
// change to status beyond the seen it had applied before.
func waitHealthChange(t *testing.T, h *harness.Hypervisor, status string, seen int) {
	t.Helper()
	start := time.Now()
	err := harness.Eventually(20*time.Second, func() error {
		if n := healthChanges(h, status); n <= seen {
			return fmt.Errorf("%s's agent has applied %d member changes to %s, as before", h.Name, n, status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v:\n%s", err, lastLines(h.AgentLog(), 20))
	}
	t.Logf("%s's agent applied the change to %s %s after the API showed it", h.Name, status, time.Since(start).Round(time.Millisecond))
}

// checkWeights tells whether the counts of n requests follow the weights:
// each backend within 4.5 standard deviations of its binomial share.
func (e *lbEnv) checkWeights(t *testing.T, got map[string]int, n int, only ...string) {
	t.Helper()
	total := 0
	for _, b := range e.backends {
		if len(only) == 0 || contains(only, b.name) {
			total += e.weight[b.name]
		}
	}
	for _, b := range e.backends {
		w := 0
		if len(only) == 0 || contains(only, b.name) {
			w = e.weight[b.name]
		}
		p := float64(w) / float64(total)
		exp := p * float64(n)
		tol := 4.5*math.Sqrt(float64(n)*p*(1-p)) + 1
		if math.Abs(float64(got[b.name])-exp) > tol {
			t.Errorf("%s (weight %d of %d) answered %d of %d requests, want %.0f ± %.0f (all: %v)",
				b.name, w, total, got[b.name], n, exp, tol, got)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestLoadBalancer(t *testing.T) {
	t.Parallel()
	e := newLBEnv(t)

	// Health monitoring runs without flow state: it checks the members
	// directly through the router.
	t.Run("HealthUp", func(t *testing.T) {
		for _, b := range e.backends {
			e.waitStatus(t, b.name, "up", 30*time.Second)
		}
		out := e.cli("router router0 list port")
		if !strings.Contains(out, "169.254.255.1") {
			t.Errorf("no health-check port on the router:\n%s", out)
		}
		// The UDP pool has no monitor.
		for _, line := range strings.Split(e.cli("load-balancer lb0 pool pool1 list member"), "\n") {
			if !strings.Contains(line, "status no_monitor") {
				t.Errorf("member of the unmonitored pool: %q, want status no_monitor", line)
			}
		}
	})
	t.Run("HealthDownAndUp", func(t *testing.T) {
		b := e.backends[0]
		b.stop()
		d := e.waitStatus(t, b.name, "down", 20*time.Second)
		t.Logf("%s down %s after its server stopped (monitor delay %s, timeout 1s, max_retries_down 1)", b.name, d.Round(10*time.Millisecond), hmDelay)
		b.start(t)
		d = e.waitStatus(t, b.name, "up", 20*time.Second)
		t.Logf("%s up %s after its server restarted (max_retries 2)", b.name, d.Round(10*time.Millisecond))
		for _, other := range e.backends[1:] {
			if st := e.status(other.name); st != "up" {
				t.Errorf("%s is %q while only b1 was stopped", other.name, st)
			}
		}
		if n := checkerMetric(t, e, "nagare_agent_health_transitions_total"); n < 2 {
			t.Errorf("health transitions counted by the agents: %v, want at least 2", n)
		}
	})

	t.Run("Traffic", func(t *testing.T) {
		requireFlowState(t)
		testLBTraffic(t, e)
	})

	// Kill the agent that checks; another takes over.
	t.Run("CheckerFailover", func(t *testing.T) { testCheckerFailover(t, e) })

	// Without a load balancer the router's health-check port and the
	// checker's veth go.
	t.Run("RemovalCleansUp", func(t *testing.T) {
		e.cli("router router0 clear load-balancer")
		err := harness.Eventually(20*time.Second, func() error {
			var ports []struct {
				Address string `json:"address"`
			}
			if err := e.Call("GET", "/api/v1/ports", nil, &ports); err != nil {
				return err
			}
			for _, p := range ports {
				if p.Address == "169.254.255.1" {
					return errors.New("the health-check port is still there")
				}
			}
			for _, h := range e.Hosts {
				if out, _ := h.NS.Run("ip", "-o", "link", "show"); strings.Contains(out, "nhm") {
					return fmt.Errorf("a health-check veth is left in %s:\n%s", h.Name, out)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// checkerMetric sums a counter over every agent.
func checkerMetric(t *testing.T, e *lbEnv, name string) float64 {
	t.Helper()
	sum := 0.0
	for _, h := range e.Hosts {
		resp, err := http.Get("http://" + h.MetricsAddr + "/metrics")
		if err != nil {
			continue // a killed agent
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, name) {
				var v float64
				f := strings.Fields(line)
				if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
					sum += v
				}
			}
		}
	}
	return sum
}

func testLBTraffic(t *testing.T, e *lbEnv) {
	c := e.client
	// The first request may race the topology reaching every agent.
	if err := harness.Eventually(20*time.Second, func() error { _, err := c.get(lbHTTP); return err }); err != nil {
		t.Fatalf("no answer from the VIP %s: %v\n%s", lbHTTP, err, traceOf(e.env, "port bridge1:port1 src %s dst %s proto tcp src-port 40000 dst-port 80", c.vm.Addr, lbVIP))
	}

	t.Run("Weights", func(t *testing.T) {
		const n = 300
		got, errs := c.counts(lbHTTP, n)
		if len(errs) > 0 {
			t.Fatalf("%d of %d requests failed; first: %v", len(errs), n, errs[0])
		}
		t.Logf("%d requests through %s: %v (weights 1/2/3)", n, lbHTTP, got)
		e.checkWeights(t, got, n)
	})

	t.Run("UDP", func(t *testing.T) {
		var name string
		err := harness.Eventually(10*time.Second, func() error {
			var err error
			name, err = c.udp(lbUDP)
			return err
		})
		if err != nil || !strings.HasPrefix(name, "b") {
			t.Fatalf("UDP through %s: %q, %v", lbUDP, name, err)
		}
		t.Logf("UDP through %s answered by %s", lbUDP, name)
	})

	t.Run("SourceIPPersistence", func(t *testing.T) {
		got, errs := c.counts(lbSticky, 20)
		if len(errs) > 0 {
			t.Fatalf("%d of 20 requests failed; first: %v", len(errs), errs[0])
		}
		if len(got) != 1 {
			t.Fatalf("one client through the source_ip VIP reached several backends: %v", got)
		}
	})

	t.Run("FailedMemberLeavesAndReturns", func(t *testing.T) {
		// A keep-alive connection to one backend, opened before membership
		// changes; a different backend dies and comes back.
		var ka *keepAlive
		var kaName string
		for attempt := 0; attempt < 20 && (ka == nil || kaName == "b3"); attempt++ {
			if ka != nil {
				ka.conn.Close()
			}
			conn, err := c.dial(context.Background(), "tcp4", lbHTTP)
			if err != nil {
				t.Fatal(err)
			}
			ka = &keepAlive{conn: conn, r: bufio.NewReader(conn)}
			if kaName, err = ka.get(); err != nil {
				t.Fatalf("keep-alive connection: %v", err)
			}
		}
		defer ka.conn.Close()
		if kaName == "b3" {
			t.Fatal("20 connections all went to b3")
		}
		kaCheck := func(when string) {
			t.Helper()
			name, err := ka.get()
			if err != nil || name != kaName {
				t.Errorf("%s: keep-alive connection to %s answered %q, %v", when, kaName, name, err)
			}
		}

		dead := e.backends[2] // b3, weight 3: the largest share
		clientHost := c.vm.Host
		seen := healthChanges(clientHost, "down")
		dead.stop()
		d := e.waitStatus(t, dead.name, "down", 20*time.Second)
		t.Logf("b3 down %s after its server stopped", d.Round(10*time.Millisecond))
		kaCheck("b3 down")
		// The client's host simulates its connections: once its agent has
		// applied the status change (its flows through the pool are gone
		// with it), no request may fail. Not a fixed delay: on a loaded
		// machine the agent may take longer than one.
		waitHealthChange(t, clientHost, "down", seen)
		const n = 60
		counters := datapathCounters(t, clientHost)
		got, errs := c.counts(lbHTTP, n)
		if len(errs) > 0 {
			// A refusal may be the dead backend's kernel (a SYN sent to it)
			// or the balancer's own reset for "no usable member" (counted
			// as a simulation drop): the counters that moved tell which.
			t.Errorf("%d of %d requests failed with b3 down: %v\n%s's counters that moved:\n%s\nits log:\n%s",
				len(errs), n, errs, clientHost.Name, counters.diff(t, clientHost), lastLines(clientHost.AgentLog(), 30))
		}
		if got["b3"] > 0 {
			t.Errorf("b3 is down but answered %d requests: %v", got["b3"], got)
		}
		e.checkWeights(t, got, n-len(errs), "b1", "b2")
		kaCheck("after requests with b3 down")

		seen = healthChanges(clientHost, "up")
		dead.start(t)
		e.waitStatus(t, dead.name, "up", 20*time.Second)
		waitHealthChange(t, clientHost, "up", seen)
		got, errs = c.counts(lbHTTP, n)
		if len(errs) > 0 {
			t.Errorf("%d of %d requests failed after b3 came back; first: %v", len(errs), n, errs[0])
		}
		if got["b3"] == 0 {
			t.Errorf("b3 is up again but answered none of %d requests: %v", n, got)
		}
		kaCheck("b3 back")
	})
}

// testCheckerFailover kills the agent that owns the router's checks:
// its statuses vanish with its lease, another agent binds the
// health-check port to itself and checks again, and a member stopped
// meanwhile is seen down by the new checker.
func testCheckerFailover(t *testing.T, e *lbEnv) {
	owner := func() string {
		var ports []struct {
			Address string `json:"address"`
			HostID  string `json:"host_id"`
		}
		if err := e.Call("GET", "/api/v1/ports", nil, &ports); err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if p.Address == "169.254.255.1" {
				return p.HostID
			}
		}
		return ""
	}
	first := owner()
	var checker *harness.Hypervisor
	for _, h := range e.Hosts {
		if h.ID == first {
			checker = h
		}
	}
	if checker == nil {
		t.Fatalf("the health-check port is bound to %q, not to a hypervisor", first)
	}
	for _, b := range e.backends {
		e.waitStatus(t, b.name, "up", 20*time.Second)
	}
	checker.KillAgent()
	t.Cleanup(func() { checker.StartAgent(t) })
	// A backend that is not on the dead checker's host stops: only a new
	// checker can see it.
	var victim *backend
	for _, b := range e.backends {
		if b.vm.Host != checker {
			victim = b
			break
		}
	}
	victim.stop()
	defer victim.start(t)
	d := e.waitStatus(t, victim.name, "down", 30*time.Second)
	t.Logf("checker %s killed: %s seen down by another agent %s later", checker.Name, victim.name, d.Round(10*time.Millisecond))
	if next := owner(); next == first || next == "" {
		t.Errorf("health-check port still bound to %q after its agent died", next)
	}
}
