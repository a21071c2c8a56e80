package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nagare/nagare/pkg/server"
)

// The Nagare side of each case: a nagare-server (in this process, embedded
// etcd) holds the topology; every "hypervisor" is a network namespace with
// a real nagare-agent process beside it (in the root namespace, to reach
// etcd on loopback, with --netns pointing its datapath at the hypervisor).
// The topology is made through the native API, as an operator would.

// cluster is the nagare-server and the agents' binary.
type cluster struct {
	srv      *server.Server
	dir      string
	api      string
	agentBin string
	http     *http.Client
}

func startCluster(ctx context.Context, agentBin string) (*cluster, error) {
	if _, err := os.Stat(agentBin); err != nil {
		return nil, fmt.Errorf("nagare-agent binary: %w (run `make build`, or pass --agent)", err)
	}
	dir, err := os.MkdirTemp("", "nagare-bench-dp")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	srv, err := server.Start(ctx, server.Config{
		DataDir: dir, Listen: "127.0.0.1:0",
		EtcdListen:  fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		EtcdPeerURL: fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start nagare-server: %w", err)
	}
	return &cluster{srv: srv, dir: dir, api: "http://" + srv.Addr() + "/api/v1", agentBin: agentBin,
		http: &http.Client{Timeout: 30 * time.Second}}, nil
}

func (c *cluster) Close() {
	c.srv.Close()
	os.RemoveAll(c.dir)
}

// call sends a JSON request to the native API and decodes the answer into
// out (if not nil).
func (c *cluster) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.api+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// object is the part of an API object the benchmark reads.
type object struct {
	ID    string `json:"id"`
	MAC   string `json:"mac"`
	Alive bool   `json:"alive"`
}

func (c *cluster) create(path string, body any) (object, error) {
	var o object
	err := c.call("POST", path, body, &o)
	return o, err
}

// agentProc is one nagare-agent process serving one hypervisor namespace.
type agentProc struct {
	name    string
	hostID  string
	proc    *proc
	metrics string   // http://127.0.0.1:port/metrics
	ifaces  []string // interfaces bound to its host
}

// startAgent runs nagare-agent for the hypervisor namespace ns and waits
// until it has registered its host.
func (c *cluster) startAgent(ctx context.Context, l *lab, name, ns, tunnelIP string, extra ...string) (*agentProc, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	a := &agentProc{name: name, metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[0])}
	args := append([]string{"--host-name", name, "--etcd-endpoints", strings.Join(c.srv.EtcdEndpoints(), ","),
		"--tunnel-ip", tunnelIP, "--netns", "/run/netns/" + ns,
		"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--pprof", "--log-level", agentLogLevel()}, extra...)
	a.proc, err = l.start("nagare-agent "+name, "", "", nil, append([]string{c.agentBin}, args...)...)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var hosts []object
		if err := c.call("GET", "/hosts?name="+name, nil, &hosts); err == nil && len(hosts) == 1 && hosts[0].Alive {
			a.hostID = hosts[0].ID
			return a, nil
		}
		if a.proc.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("agent %s did not register within 30 s:\n%s", name, a.proc.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *cluster) bind(a *agentProc, iface, portID string) error {
	a.ifaces = append(a.ifaces, iface)
	return c.call("POST", "/hosts/"+a.hostID+"/bindings", map[string]string{"interface_name": iface, "port_id": portID}, nil)
}

// attached reports whether the agent's datapath has attached every
// interface bound to its host (they appear in its per-port metrics).
func (a *agentProc) attached() bool {
	resp, err := http.Get(a.metrics)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return false
	}
	for _, i := range a.ifaces {
		if !bytes.Contains(b, []byte(`nagare_datapath_port_rx_packets_total{interface="`+i+`"`)) {
			return false
		}
	}
	return true
}

// counters scrapes the agent's Prometheus endpoint and returns the
// unlabelled samples by name.
func (a *agentProc) counters() (map[string]float64, error) {
	resp, err := http.Get(a.metrics)
	if err != nil {
		return nil, fmt.Errorf("scrape agent %s: %w", a.name, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// vm makes a VM namespace whose eth0 is the peer of hvDev in hv.
func vm(l *lab, name, hv, hvDev, cidr, gw string, mtu int) (endpoint, error) {
	ns, err := l.netns(name)
	if err != nil {
		return endpoint{}, err
	}
	if err := l.veth(ns, "eth0", hv, hvDev, mtu); err != nil {
		return endpoint{}, err
	}
	if err := l.ip(ns, "addr", "add", cidr, "dev", "eth0"); err != nil {
		return endpoint{}, err
	}
	if gw != "" {
		if err := l.ip(ns, "route", "add", "default", "via", gw); err != nil {
			return endpoint{}, err
		}
	}
	mac, err := l.mac(ns, "eth0")
	ip, _, _ := strings.Cut(cidr, "/")
	return endpoint{NS: ns, Dev: "eth0", IP: ip, MAC: mac}, err
}

// variant is one of Nagare's datapaths as a side of the benchmark. Both
// can be built at once: their namespaces, hosts and objects carry the
// variant's suffix.
type variant struct {
	side string
	sfx  string   // appended to namespace, host and object names
	args []string // nagare-agent flags
}

var (
	userspaceVariant = variant{side: SideNagare, args: []string{"--datapath", "userspace"}}
	ebpfVariant      = variant{side: SideEBPF, sfx: "e", args: []string{"--datapath", "ebpf"}}
)

// nagareBridge: VM1 and VM2 on one virtual bridge, both ports bound on one
// host (baseline case B's job).
func (c *cluster) nagareBridge(ctx context.Context, l *lab, v variant) (*testbed, error) {
	tb := &testbed{side: v.side, kase: CaseBridge}
	hv, err := l.netns("nbr" + v.sfx + "-hv")
	if err != nil {
		return tb, err
	}
	tb.nss = append(tb.nss, hv)
	if tb.src, err = vm(l, "nbr"+v.sfx+"-vm1", hv, "tap1", "10.12.0.1/24", "", 0); err != nil {
		return tb, err
	}
	if tb.dst, err = vm(l, "nbr"+v.sfx+"-vm2", hv, "tap2", "10.12.0.2/24", "", 0); err != nil {
		return tb, err
	}
	tb.nss = append(tb.nss, tb.src.NS, tb.dst.NS)
	a, err := c.startAgent(ctx, l, "bench-bridge-hv"+v.sfx, hv, "192.168.252.1", v.args...)
	if err != nil {
		return tb, err
	}
	tb.agents = append(tb.agents, a)
	br, err := c.create("/bridges", map[string]string{"name": "bench-bridge" + v.sfx})
	if err != nil {
		return tb, err
	}
	for i, vmIf := range []string{"tap1", "tap2"} {
		p, err := c.create("/ports", map[string]string{"bridge_id": br.ID})
		if err != nil {
			return tb, err
		}
		if err := c.bind(a, vmIf, p.ID); err != nil {
			return tb, fmt.Errorf("bind port %d: %w", i, err)
		}
	}
	tb.nextHop = tb.dst.MAC
	tb.rps = []nsDev{{hv, "tap1"}}
	return tb, tb.finish(l)
}

// nagareRouter: VM1 on bridge A, VM2 on bridge B, a router between them,
// everything on one host (baseline case C's job, with the bridges a tenant
// network has; the router is a hop of the simulation, not of the packets).
// With nat, the router masquerades VM1's network behind its address on
// VM2's side (baseline case D's job): an snat rule in its post-routing
// chain and rev_snat in pre-routing, midonet-cli's way.
func (c *cluster) nagareRouter(ctx context.Context, l *lab, nat bool, v variant) (*testbed, error) {
	tb := &testbed{side: v.side, kase: CaseRouter}
	pre, name, tunnelIP := "nrt"+v.sfx+"-", "bench-router"+v.sfx, "192.168.252.2"
	if nat {
		tb.kase, pre, name, tunnelIP = CaseSNAT, "nsn"+v.sfx+"-", "bench-snat"+v.sfx, "192.168.252.4"
	}
	hv, err := l.netns(pre + "hv")
	if err != nil {
		return tb, err
	}
	tb.nss = append(tb.nss, hv)
	if tb.src, err = vm(l, pre+"vm1", hv, "tap1", "10.13.1.1/24", "10.13.1.254", 0); err != nil {
		return tb, err
	}
	if tb.dst, err = vm(l, pre+"vm2", hv, "tap2", "10.13.2.1/24", "10.13.2.254", 0); err != nil {
		return tb, err
	}
	tb.nss = append(tb.nss, tb.src.NS, tb.dst.NS)
	extra := v.args
	if nat {
		extra = append(append([]string(nil), extra...), snatAgentFlags...)
	}
	a, err := c.startAgent(ctx, l, name+"-hv", hv, tunnelIP, extra...)
	if err != nil {
		return tb, err
	}
	tb.agents = append(tb.agents, a)
	rt, err := c.create("/routers", map[string]string{"name": name})
	if err != nil {
		return tb, err
	}
	var routerPorts []string
	for i, n := range []struct{ tap, net, gw string }{{"tap1", "10.13.1.0/24", "10.13.1.254"}, {"tap2", "10.13.2.0/24", "10.13.2.254"}} {
		br, err := c.create("/bridges", map[string]string{"name": fmt.Sprintf("%s-net%d", name, i+1)})
		if err != nil {
			return tb, err
		}
		vmPort, err := c.create("/ports", map[string]string{"bridge_id": br.ID})
		if err != nil {
			return tb, err
		}
		uplink, err := c.create("/ports", map[string]string{"bridge_id": br.ID})
		if err != nil {
			return tb, err
		}
		rp, err := c.create("/ports", map[string]string{"router_id": rt.ID, "address": n.gw, "network": n.net})
		if err != nil {
			return tb, err
		}
		routerPorts = append(routerPorts, rp.ID)
		if err := c.call("PUT", "/ports/"+uplink.ID+"/link", map[string]string{"peer_id": rp.ID}, nil); err != nil {
			return tb, err
		}
		if _, err := c.create("/routes", map[string]string{"router_id": rt.ID, "dst": n.net, "port_id": rp.ID}); err != nil {
			return tb, err
		}
		if err := c.bind(a, n.tap, vmPort.ID); err != nil {
			return tb, err
		}
		if i == 0 {
			tb.nextHop = rp.MAC
		}
	}
	if nat {
		if err := c.masquerade(rt.ID, "10.13.1.0/24", routerPorts[1], v.sfx); err != nil {
			return tb, err
		}
	}
	tb.rps = []nsDev{{hv, "tap1"}}
	return tb, tb.finish(l)
}

// masquerade makes router rt translate the sources of inside leaving by
// port out to snatPool (PAT over ports 1024-65535), and translate replies
// back.
func (c *cluster) masquerade(rt, inside, out, sfx string) error {
	in, err := c.create("/chains", map[string]string{"name": "bench-nat-in" + sfx})
	if err != nil {
		return err
	}
	post, err := c.create("/chains", map[string]string{"name": "bench-nat-out" + sfx})
	if err != nil {
		return err
	}
	if _, err := c.create("/rules", map[string]any{"chain_id": post.ID, "type": "snat", "src": inside,
		"out_port_ids": []string{out}, "targets": []string{snatPool + ":1024-65535"}}); err != nil {
		return err
	}
	if _, err := c.create("/rules", map[string]any{"chain_id": in.ID, "type": "rev_snat", "dst": "10.13.9.0/24"}); err != nil {
		return err
	}
	return c.call("PATCH", "/routers/"+rt, map[string]string{"inbound_filter_id": in.ID, "outbound_filter_id": post.ID}, nil)
}

// nagareVXLAN: VM1 on host 1, VM2 on host 2, one bridge, VXLAN over a veth
// underlay between the hosts (baseline case E's job). VM MTU 1450 as there.
func (c *cluster) nagareVXLAN(ctx context.Context, l *lab, v variant) (*testbed, error) {
	tb := &testbed{side: v.side, kase: CaseVXLAN}
	var hvs [2]string
	for i := range hvs {
		ns, err := l.netns(fmt.Sprintf("nvx%s-hv%d", v.sfx, i+1))
		if err != nil {
			return tb, err
		}
		hvs[i] = ns
		tb.nss = append(tb.nss, ns)
	}
	if err := underlay(l, hvs[0], hvs[1], "192.168.251"); err != nil {
		return tb, err
	}
	var err error
	if tb.src, err = vm(l, "nvx"+v.sfx+"-vm1", hvs[0], "tap1", "10.15.0.1/24", "", 1450); err != nil {
		return tb, err
	}
	if tb.dst, err = vm(l, "nvx"+v.sfx+"-vm2", hvs[1], "tap2", "10.15.0.2/24", "", 1450); err != nil {
		return tb, err
	}
	tb.nss = append(tb.nss, tb.src.NS, tb.dst.NS)
	tz, err := c.create("/tunnel-zones", map[string]string{"name": "bench-vxlan" + v.sfx, "type": "vxlan"})
	if err != nil {
		return tb, err
	}
	br, err := c.create("/bridges", map[string]string{"name": "bench-vxlan" + v.sfx})
	if err != nil {
		return tb, err
	}
	for i, hv := range hvs {
		addr := fmt.Sprintf("192.168.251.%d", i+1)
		a, err := c.startAgent(ctx, l, fmt.Sprintf("bench-vxlan%s-hv%d", v.sfx, i+1), hv, addr, v.args...)
		if err != nil {
			return tb, err
		}
		tb.agents = append(tb.agents, a)
		if _, err := c.create("/tunnel-zone-members", map[string]string{"tunnel_zone_id": tz.ID, "host_id": a.hostID, "address": addr}); err != nil {
			return tb, err
		}
		p, err := c.create("/ports", map[string]string{"bridge_id": br.ID})
		if err != nil {
			return tb, err
		}
		if err := c.bind(a, fmt.Sprintf("tap%d", i+1), p.ID); err != nil {
			return tb, err
		}
	}
	tb.nextHop = tb.dst.MAC
	tb.rps = []nsDev{{hvs[0], "tap1"}}
	return tb, tb.finish(l)
}

// underlay links two hypervisor namespaces with a veth u1–u2 carrying
// net.1 and net.2, with static neighbours so nothing ages out mid-run.
func underlay(l *lab, hv1, hv2, net string) error {
	if err := l.veth(hv1, "u1", hv2, "u2", 0); err != nil {
		return err
	}
	if err := l.ip(hv1, "addr", "add", net+".1/24", "dev", "u1"); err != nil {
		return err
	}
	if err := l.ip(hv2, "addr", "add", net+".2/24", "dev", "u2"); err != nil {
		return err
	}
	m1, err := l.mac(hv1, "u1")
	if err != nil {
		return err
	}
	m2, err := l.mac(hv2, "u2")
	if err != nil {
		return err
	}
	if err := l.ip(hv1, "neigh", "replace", net+".2", "lladdr", m2, "dev", "u1", "nud", "permanent"); err != nil {
		return err
	}
	return l.ip(hv2, "neigh", "replace", net+".1", "lladdr", m1, "dev", "u2", "nud", "permanent")
}

// finish prepares a Nagare testbed for traffic: pings until the path works
// (the agents bind ports asynchronously and the first packets teach the
// bridge and the router their MACs). The VMs keep their interfaces'
// default offloads, as on the kernel side.
func (tb *testbed) finish(l *lab) error {
	deadline := time.Now().Add(30 * time.Second)
	// Ping only once every bound port is attached: a first packet that
	// races the bindings is not what is being measured.
	for _, a := range tb.agents {
		for !a.attached() {
			if time.Now().After(deadline) {
				return fmt.Errorf("nagare %s: agent %s did not attach %v within 30 s:\n%s", tb.kase, a.name, a.ifaces, a.proc.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for {
		_, err := l.exec(tb.src.NS, "ping", "-c", "2", "-i", "0.2", "-W", "1", "-q", tb.dst.IP)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for _, a := range tb.agents {
				state := "running"
				if a.proc.exited() {
					state = fmt.Sprintf("exited: %v", a.proc.err)
				}
				fmt.Fprintf(&logs, "--- agent %s (%s):\n%s\n", a.name, state, a.proc.out.String())
			}
			return fmt.Errorf("nagare %s: %s cannot ping %s after 30 s: %w\n%s", tb.kase, tb.src.NS, tb.dst.IP, err, logs.String())
		}
	}
}

// freePorts returns n TCP ports on loopback that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// agentLogLevel is the agents' --log-level: warn, or $NAGARE_BENCH_AGENT_LOG.
func agentLogLevel() string {
	if l := os.Getenv("NAGARE_BENCH_AGENT_LOG"); l != "" {
		return l
	}
	return "warn"
}
