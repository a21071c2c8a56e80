//go:build linux

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nagare/nagare/test/e2e/harness"
)

// snatTopo is the flow-state tests' topology: a VM on hv1 behind a router
// that masquerades it behind its uplink address; the uplink is bound on
// hv2, where "ext" (the outside world) is plugged in.
//
//	vm 10.0.1.11 (hv1) -- net1 -- 10.0.1.1 router0 192.0.2.1 (uplink, bound on hv2) -- ext 192.0.2.100 (hv2)
//
// A connection from vm to ext is translated on hv1 (where it enters); its
// replies enter on hv2, which can translate them back only with the
// binding hv1 pushed to it.
type snatTopo struct {
	*harness.Env
	vm, ext *harness.VM
	hv1     *harness.Hypervisor
	hv2     *harness.Hypervisor
}

const (
	snatAddr = "192.0.2.1"
	extAddr  = "192.0.2.100"
)

func newSNATTopo(t *testing.T, opts harness.Options) *snatTopo {
	t.Helper()
	env := harness.New(t, opts)
	s := &snatTopo{Env: env, hv1: env.Host("hv1"), hv2: env.Host("hv2")}
	cli := func(format string, args ...any) string { t.Helper(); return env.MustCLI(t, format, args...) }
	cli("create tunnel-zone name tz type vxlan")
	for _, h := range env.Hosts {
		cli("tunnel-zone tzone0 add member host %s address %s", h.Alias, h.TunnelIP)
	}
	cli("create router name r")
	cli("create bridge name net1")
	in := cli("router router0 add port address 10.0.1.1 net 10.0.1.0/24")
	bp := cli("bridge bridge0 add port")
	cli("%s set peer %s", portCmd(bp), in)
	up := cli("router router0 add port address %s net 192.0.2.0/24", snatAddr)
	cli("router router0 add route dst 10.0.1.0/24 port %s", in)
	cli("router router0 add route dst 192.0.2.0/24 port %s", up)
	cli("create chain name pre")
	cli("chain chain0 add rule dst %s type rev_snat action accept", snatAddr)
	cli("create chain name post")
	cli("chain chain1 add rule src 10.0.1.0/24 out-ports %s type snat action accept target %s:1024-65535", up, snatAddr)
	cli("router router0 set infilter chain0")
	cli("router router0 set outfilter chain1")

	mtu := env.UnderlayMTU - 50
	s.vm = env.AddVM(t, s.hv1, "vm", harness.VMConfig{MAC: "02:00:0a:00:01:0b", Addrs: []string{"10.0.1.11/24"}, Gateway: "10.0.1.1", MTU: mtu})
	cli("host %s add binding interface %s port %s", s.hv1.Alias, s.vm.Tap, cli("bridge bridge0 add port"))
	s.ext = env.AddVM(t, s.hv2, "ext", harness.VMConfig{MAC: "02:00:c0:00:02:64", Addrs: []string{extAddr + "/24"}, MTU: mtu})
	cli("host %s add binding interface %s port %s", s.hv2.Alias, s.ext.Tap, up)
	s.vm.WaitPing(t, "10.0.1.1", 15*time.Second)
	s.ext.WaitPing(t, snatAddr, 15*time.Second)
	return s
}

// echoServer accepts connections in ns on addr and echoes lines back; it
// records the peer address each connection came from.
type echoServer struct {
	l     net.Listener
	mu    sync.Mutex
	peers []string
}

func startEchoServer(t *testing.T, ns *harness.NS, addr string) *echoServer {
	t.Helper()
	s := &echoServer{}
	if err := ns.Do(func() (err error) { s.l, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { s.l.Close() })
	go func() {
		for {
			c, err := s.l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.peers = append(s.peers, c.RemoteAddr().String())
			s.mu.Unlock()
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte("echo " + line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *echoServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.peers...)
}

// dialIn opens a TCP connection from ns, retrying while the path warms up
// (ARP, first simulations).
func dialIn(t *testing.T, ns *harness.NS, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	err := harness.Eventually(15*time.Second, func() error {
		return ns.Do(func() (err error) { c, err = net.DialTimeout("tcp4", addr, 2*time.Second); return err })
	})
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange writes a line on c and waits for its echo. TCP retransmits
// what the network lost meanwhile (an agent restarting), so the deadline
// is generous; a connection the network broke fails with a reset or
// times out.
func exchange(c net.Conn, r *bufio.Reader, msg string) error {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return fmt.Errorf("write %q: %w", msg, err)
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read the echo of %q: %w", msg, err)
	}
	if got != "echo "+msg+"\n" {
		return fmt.Errorf("echo of %q: got %q", msg, got)
	}
	return nil
}

// waitStateSaved waits until h's agent has saved a flow-state file holding
// at least one entry (the header alone is shorter than 64 bytes).
func waitStateSaved(t *testing.T, h *harness.Hypervisor) {
	t.Helper()
	path := filepath.Join(h.StateDir(), "flowstate-"+h.Name)
	err := harness.Eventually(10*time.Second, func() error {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if fi.Size() < 64 {
			return fmt.Errorf("%s holds no entry yet (%d bytes)", path, fi.Size())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("flow state of %s not saved: %v", h.Name, err)
	}
}

func metric(t *testing.T, h *harness.Hypervisor, name string, label ...string) float64 {
	t.Helper()
	m, err := h.Metrics()
	if err != nil {
		t.Fatalf("metrics of %s: %v", h.Name, err)
	}
	if len(label) == 2 {
		return m.Label(name, label[0], label[1])
	}
	return m.Sum(name)
}

// TestFlowStateNAT: a masqueraded connection whose replies enter another
// host than the one that translated it. hv2 never simulates the forward
// direction, so it can reverse-translate the first reply only thanks to
// the state hv1 pushes before forwarding the SYN. The connection then
// survives the restart (SIGKILL) of either agent: the state is saved and
// loaded, and the datapath's flows, which are gone, are simulated again
// from it with the same translation.
func TestFlowStateNAT(t *testing.T) {
	t.Parallel()
	// A short established timeout: the live connection's entries must be
	// kept alive by the agents while its flows forward (the simulation
	// does not see those packets).
	const established = 4 * time.Second
	s := newSNATTopo(t, harness.Options{AgentArgs: []string{"--conntrack-tcp-established-timeout", established.String()}})
	srv := startEchoServer(t, s.ext.NS, extAddr+":7000")

	c := dialIn(t, s.vm.NS, extAddr+":7000")
	r := bufio.NewReader(c)
	if err := exchange(c, r, "hello"); err != nil {
		t.Fatal(err)
	}
	peers := srv.seen()
	if len(peers) != 1 || !strings.HasPrefix(peers[0], snatAddr+":") {
		t.Fatalf("ext saw connections from %v, want one from %s (masqueraded)", peers, snatAddr)
	}
	t.Logf("vm %s reaches ext as %s", c.LocalAddr(), peers[0])

	t.Run("FirstReplyTranslatedWithPushedState", func(t *testing.T) {
		// hv2 made no state of its own: its table holds what hv1 pushed,
		// and that is what translated the SYN-ACK back.
		if n := metric(t, s.hv2, "nagare_flowstate_inserted_total"); n != 0 {
			t.Errorf("hv2 created %v entries itself; it should only import", n)
		}
		if n := metric(t, s.hv2, "nagare_flowstate_imported_total"); n < 1 {
			t.Errorf("hv2 imported %v entries, want at least the SNAT binding", n)
		}
		if n := metric(t, s.hv2, "nagare_flowstate_packets_total", "event", "received"); n < 1 {
			t.Errorf("hv2 received %v state packets", n)
		}
		if n := metric(t, s.hv1, "nagare_flowstate_packets_total", "event", "sent"); n < 1 {
			t.Errorf("hv1 sent %v state packets", n)
		}
		if n := metric(t, s.hv1, "nagare_flowstate_inserted_total"); n < 1 {
			t.Errorf("hv1 created %v entries, want the SNAT binding", n)
		}
	})

	t.Run("LiveFlowsKeepTheirState", func(t *testing.T) {
		// Well past the timeout, with traffic on the flows all along: the
		// agents touch the entries of flows that hit. Were the entries to
		// expire, the flows would be invalidated and the next reply could
		// not be translated back.
		for i := range 4 * int(established/time.Second) {
			if err := exchange(c, r, fmt.Sprint("live ", i)); err != nil {
				for _, h := range []*harness.Hypervisor{s.hv1, s.hv2} {
					t.Logf("%s: %v entries, %v expired, %v invalidated flows", h.Name, metric(t, h, "nagare_flowstate_entries"),
						metric(t, h, "nagare_flowstate_expired_total"), metric(t, h, "nagare_agent_flows_invalidated_total"))
				}
				t.Fatalf("after %d s of traffic: %v", i, err)
			}
			time.Sleep(time.Second)
		}
		if n := metric(t, s.hv2, "nagare_flowstate_expired_total"); n != 0 {
			t.Errorf("hv2 expired %v entries of a live connection", n)
		}
	})

	top := t // the restarted agents belong to the test, not to a subtest (whose cleanup would stop them)
	for _, h := range []*harness.Hypervisor{s.hv1, s.hv2} {
		t.Run("ConnectionSurvivesRestartOf"+h.Name, func(t *testing.T) {
			if err := exchange(c, r, "before "+h.Name); err != nil {
				t.Fatal(err)
			}
			waitStateSaved(t, h)
			h.KillAgent()
			h.StartAgent(top)
			err := harness.Eventually(10*time.Second, func() error {
				if strings.Count(h.AgentLog(), "flow state restored") == 0 {
					return fmt.Errorf("%s's log does not say it restored its flow state", h.Name)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
			for i := range 3 {
				if err := exchange(c, r, fmt.Sprintf("after %s %d", h.Name, i)); err != nil {
					t.Fatalf("the connection did not survive the restart of %s's agent: %v", h.Name, err)
				}
			}
			if peers := srv.seen(); len(peers) != 1 {
				t.Errorf("ext saw %v: the connection was re-established, not kept", peers)
			}
		})
	}

	// Many short connections one after the other, each a new SNAT
	// binding pushed from hv1 to hv2: all must complete. The rate is
	// informational (the machine is shared).
	t.Run("ManyShortConnections", func(t *testing.T) {
		const n = 300
		start := time.Now()
		for i := range n {
			err := s.vm.NS.Do(func() error {
				c, err := net.DialTimeout("tcp4", extAddr+":7000", 5*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				return exchange(c, bufio.NewReader(c), "short")
			})
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
		}
		d := time.Since(start)
		t.Logf("%d masqueraded connections (connect, one exchange, close) in %v: %.0f/s (informational)", n, d.Round(time.Millisecond), n/d.Seconds())
	})

	t.Run("NewConnectionAfterRestarts", func(t *testing.T) {
		c2 := dialIn(t, s.vm.NS, extAddr+":7000")
		if err := exchange(c2, bufio.NewReader(c2), "second"); err != nil {
			t.Fatal(err)
		}
		peers := srv.seen()
		last := peers[len(peers)-1]
		if len(peers) < 2 || last == peers[0] || !strings.HasPrefix(last, snatAddr+":") {
			t.Errorf("ext saw %v, want a new connection from %s on another port", peers, snatAddr)
		}
	})
}

// TestFlowStateBounds: a VM opening connections as fast as it can (a SYN
// flood by connect) fills its own conntrack zone and nothing else. Its
// new connections are refused while the zone is full; another VM's, in
// another zone, still succeed; the table never exceeds --conntrack-max;
// refusals are counted in the metrics and in the published status.
//
//	vm1 10.0.1.11 (hv1) -- net1 --+                     +-- net1 -- srv 10.0.1.12 (hv2)
//	vm2 10.0.2.11 (hv1) -- net2 -- router0 (10.0.1.1, 10.0.2.1)
//
// The ports of vm1 and vm2 have a chain that reads the connection state,
// so their connections are tracked, in the zone of the bridge they enter.
func TestFlowStateBounds(t *testing.T) {
	t.Parallel()
	const tableMax, zoneMax = 400, 100
	env := harness.New(t, harness.Options{AgentArgs: []string{"--conntrack-max", fmt.Sprint(tableMax), "--conntrack-zone-max", fmt.Sprint(zoneMax)}})
	cli := func(format string, args ...any) string { t.Helper(); return env.MustCLI(t, format, args...) }
	hv1, hv2 := env.Host("hv1"), env.Host("hv2")
	cli("create tunnel-zone name tz type vxlan")
	for _, h := range env.Hosts {
		cli("tunnel-zone tzone0 add member host %s address %s", h.Alias, h.TunnelIP)
	}
	cli("create router name r")
	cli("create chain name track")
	cli("chain chain0 add rule ct-state new type accept")
	mtu := env.UnderlayMTU - 50
	vms := map[string]*harness.VM{}
	for s := 1; s <= 2; s++ {
		cli("create bridge name net%d", s)
		rp := cli("router router0 add port address 10.0.%d.1 net 10.0.%d.0/24", s, s)
		bp := cli("bridge bridge%d add port", s-1)
		cli("%s set peer %s", portCmd(bp), rp)
		cli("router router0 add route dst 10.0.%d.0/24 port %s", s, rp)
	}
	for _, v := range []struct {
		name   string
		h      *harness.Hypervisor
		subnet int
		host   int
		track  bool
	}{{"vm1", hv1, 1, 11, true}, {"vm2", hv1, 2, 11, true}, {"srv", hv2, 1, 12, false}} {
		vm := env.AddVM(t, v.h, v.name, harness.VMConfig{MAC: fmt.Sprintf("02:00:0a:00:%02x:%02x", v.subnet, v.host),
			Addrs: []string{fmt.Sprintf("10.0.%d.%d/24", v.subnet, v.host)}, Gateway: fmt.Sprintf("10.0.%d.1", v.subnet), MTU: mtu})
		p := cli("bridge bridge%d add port", v.subnet-1)
		if v.track {
			cli("%s set infilter chain0", portCmd(p))
		}
		cli("host %s add binding interface %s port %s", v.h.Alias, vm.Tap, p)
		vm.WaitPing(t, fmt.Sprintf("10.0.%d.1", v.subnet), 15*time.Second)
		vms[v.name] = vm
	}
	vm1, vm2, srv := vms["vm1"], vms["vm2"], vms["srv"]
	startEchoServer(t, srv.NS, "10.0.1.12:7000")
	c := dialIn(t, vm2.NS, "10.0.1.12:7000")
	if err := exchange(c, bufio.NewReader(c), "before"); err != nil {
		t.Fatal(err)
	}

	// The flood: connections to a closed port of srv, each from a new
	// source port; srv resets them, the entries stay (closed: 10 s).
	const n = 800
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused, timedOut := 0, 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n / 16 {
				err := vm1.NS.Do(func() error {
					c, err := net.DialTimeout("tcp4", "10.0.1.12:9", 150*time.Millisecond)
					if err == nil {
						c.Close()
					}
					return err
				})
				mu.Lock()
				if err != nil && strings.Contains(err.Error(), "refused") {
					refused++
				} else if err != nil {
					timedOut++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("flood of %d connections from vm1: %d reset by srv, %d got no answer", n/16*16, refused, timedOut)
	// More than zoneMax may be answered: the kernel reuses a source port
	// whose connection was reset, and the entry of its tuple serves again.
	if timedOut == 0 {
		t.Errorf("all %d connections answered: the zone bound of %d refused none", refused, zoneMax)
	}

	t.Run("OtherZoneUnaffected", func(t *testing.T) {
		for i := range 3 {
			c := dialIn(t, vm2.NS, "10.0.1.12:7000")
			if err := exchange(c, bufio.NewReader(c), fmt.Sprint("during ", i)); err != nil {
				t.Fatalf("vm2 (another zone) during the flood: %v", err)
			}
		}
		if err := exchange(c, bufio.NewReader(c), "still"); err != nil {
			t.Fatalf("vm2's established connection during the flood: %v", err)
		}
	})
	t.Run("FloodingZoneRefused", func(t *testing.T) {
		err := vm1.NS.Do(func() error {
			c, err := net.DialTimeout("tcp4", "10.0.1.12:7000", time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			t.Error("vm1 opened a new connection while its zone is full")
		}
	})
	t.Run("CountedAndBounded", func(t *testing.T) {
		m, err := hv1.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		entries, max := m.Sum("nagare_flowstate_entries"), m.Sum("nagare_flowstate_max_entries")
		zoneFull := m.Label("nagare_flowstate_refused_total", "reason", "zone-full")
		simDrops := m.Label("nagare_agent_simulation_drops_total", "reason", "flow-state-full")
		t.Logf("hv1: %v entries (max %v), %v refused zone-full, %v simulations dropped flow-state-full", entries, max, zoneFull, simDrops)
		// The flood's zone is full, the other zone holds vm2's few
		// connections: the table stays far below its own bound.
		if max != tableMax || entries < zoneMax || entries > zoneMax+20 {
			t.Errorf("hv1 table: %v entries (bound %v); want the flooding zone's %d and a few", entries, max, zoneMax)
		}
		if zoneFull < 1 || simDrops < 1 {
			t.Errorf("refusals not counted: zone-full %v, simulation drops %v", zoneFull, simDrops)
		}
		var st struct {
			Updated   time.Time `json:"updated"`
			FlowState *struct {
				Entries         int    `json:"entries"`
				MaxEntries      int    `json:"max_entries"`
				MaxPerZone      int    `json:"max_per_zone"`
				RefusedZoneFull uint64 `json:"refused_zone_full"`
			} `json:"flow_state"`
		}
		err = harness.Eventually(10*time.Second, func() error {
			if err := env.Call("GET", "/api/v1/hosts/"+hv1.ID+"/datapath", nil, &st); err != nil {
				return err
			}
			if st.FlowState == nil || st.FlowState.RefusedZoneFull == 0 {
				return fmt.Errorf("status of %s shows no zone-full refusal: %+v", st.Updated, st.FlowState)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if fs := st.FlowState; fs.MaxEntries != tableMax || fs.MaxPerZone != zoneMax || fs.Entries > tableMax {
			t.Errorf("published flow state: %+v", *fs)
		}
	})
}

// TestFlowStateStatefulPortGroup: asymmetric paths, the reason for
// MidoNet's stateful port groups. The router masquerades vm behind uplink
// A (on hv2), but the outside answers through uplink B (on hv3): only if
// both uplinks are in a stateful port group does hv1 push the binding to
// hv3 too, and only then can hv3 translate the replies back.
//
//	vm 10.0.1.11 (hv1) -- router0 --+-- A 192.0.2.1 (hv2) ---- ext 192.0.2.100
//	                                +-- B 198.51.100.1 (hv3) -- extb 198.51.100.100
//	ext reaches 192.0.2.1 through extb (a veth between them): replies take B.
func TestFlowStateStatefulPortGroup(t *testing.T) {
	t.Parallel()
	env := harness.New(t, harness.Options{Hypervisors: 3})
	cli := func(format string, args ...any) string { t.Helper(); return env.MustCLI(t, format, args...) }
	hv1, hv2, hv3 := env.Host("hv1"), env.Host("hv2"), env.Host("hv3")
	cli("create tunnel-zone name tz type vxlan")
	for _, h := range env.Hosts {
		cli("tunnel-zone tzone0 add member host %s address %s", h.Alias, h.TunnelIP)
	}
	cli("create router name r")
	cli("create bridge name net1")
	in := cli("router router0 add port address 10.0.1.1 net 10.0.1.0/24")
	cli("%s set peer %s", portCmd(cli("bridge bridge0 add port")), in)
	upA := cli("router router0 add port address 192.0.2.1 net 192.0.2.0/24")
	upB := cli("router router0 add port address 198.51.100.1 net 198.51.100.0/24")
	cli("router router0 add route dst 10.0.1.0/24 port %s", in)
	cli("router router0 add route dst 192.0.2.0/24 port %s", upA)
	cli("router router0 add route dst 198.51.100.0/24 port %s", upB)
	cli("create chain name pre")
	cli("chain chain0 add rule dst 192.0.2.1 type rev_snat action accept")
	cli("create chain name post")
	cli("chain chain1 add rule src 10.0.1.0/24 out-ports %s type snat action accept target 192.0.2.1:1024-65535", upA)
	cli("router router0 set infilter chain0")
	cli("router router0 set outfilter chain1")

	mtu := env.UnderlayMTU - 50
	vm := env.AddVM(t, hv1, "vm", harness.VMConfig{MAC: "02:00:0a:00:01:0b", Addrs: []string{"10.0.1.11/24"}, Gateway: "10.0.1.1", MTU: mtu})
	cli("host %s add binding interface %s port %s", hv1.Alias, vm.Tap, cli("bridge bridge0 add port"))
	ext := env.AddVM(t, hv2, "ext", harness.VMConfig{MAC: "02:00:c0:00:02:64", Addrs: []string{"192.0.2.100/24"}, MTU: mtu})
	cli("host %s add binding interface %s port %s", hv2.Alias, ext.Tap, upA)
	extb := env.AddVM(t, hv3, "extb", harness.VMConfig{MAC: "02:00:c6:33:64:64", Addrs: []string{"198.51.100.100/24"}, MTU: mtu})
	cli("host %s add binding interface %s port %s", hv3.Alias, extb.Tap, upB)
	// The asymmetric return: ext sends what is for 192.0.2.1 to extb,
	// which forwards it to uplink B.
	ext.NS.MustRun(t, "ip", "link", "add", "x0", "mtu", fmt.Sprint(mtu), "type", "veth", "peer", "name", "x1", "mtu", fmt.Sprint(mtu), "netns", extb.NS.Name)
	ext.NS.MustRun(t, "ip", "addr", "add", "10.200.0.1/30", "dev", "x0")
	ext.NS.MustRun(t, "ip", "link", "set", "x0", "up")
	ext.NS.MustRun(t, "ip", "route", "add", "192.0.2.1/32", "via", "10.200.0.2", "dev", "x0")
	extb.NS.MustRun(t, "ip", "addr", "add", "10.200.0.2/30", "dev", "x1")
	extb.NS.MustRun(t, "ip", "link", "set", "x1", "up")
	extb.NS.MustRun(t, "ip", "route", "add", "192.0.2.0/24", "via", "198.51.100.1")
	for _, k := range []string{"net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.x1.rp_filter=0", "net.ipv4.conf.eth0.rp_filter=0"} {
		extb.NS.MustRun(t, "sysctl", "-q", "-w", k)
	}
	vm.WaitPing(t, "10.0.1.1", 15*time.Second)
	extb.WaitPing(t, "198.51.100.1", 15*time.Second)
	srv := startEchoServer(t, ext.NS, "192.0.2.100:7000")

	dial := func() error {
		return vm.NS.Do(func() error {
			c, err := net.DialTimeout("tcp4", "192.0.2.100:7000", 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			return exchange(c, bufio.NewReader(c), "hello")
		})
	}
	t.Run("WithoutGroupRepliesAreLost", func(t *testing.T) {
		// The SYN gets out (ext accepts it), but hv3 cannot translate
		// the SYN-ACK back: the connection never completes.
		if err := dial(); err == nil {
			t.Fatal("connected although hv3 has no state for the replies: is the return path really through B?")
		}
		if n := metric(t, hv3, "nagare_flowstate_imported_total"); n != 0 {
			t.Errorf("hv3 imported %v entries without a stateful group", n)
		}
	})
	t.Run("StatefulGroupCarriesTheState", func(t *testing.T) {
		cli("create port-group name uplinks stateful true")
		cli("port-group pgroup0 add member port %s", upA)
		cli("port-group pgroup0 add member port %s", upB)
		if err := harness.Eventually(15*time.Second, dial); err != nil {
			t.Fatalf("vm → ext with replies through uplink B: %v", err)
		}
		if n := metric(t, hv3, "nagare_flowstate_imported_total"); n < 1 {
			t.Errorf("hv3 imported %v entries", n)
		}
		if n := metric(t, hv3, "nagare_flowstate_inserted_total"); n != 0 {
			t.Errorf("hv3 created %v entries itself; the state it used came from hv1", n)
		}
		if peers := srv.seen(); len(peers) != 1 || !strings.HasPrefix(peers[0], "192.0.2.1:") {
			t.Errorf("ext saw %v, want one connection from 192.0.2.1", peers)
		}
	})
}
