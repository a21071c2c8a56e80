//go:build linux

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/test/e2e/harness"
)

// Static uplinks, for sites without BGP: the provider router's default
// route through two next hops, one behind each of two uplinks on two
// gateways; the next hops are plain Linux routers (namespaces) leading to
// one "internet", which reaches the tenant range back through both (a
// nexthop group: the kernel drops a member whose link goes).
//
//	vm1..vm4 (hv1) ── bridge0 ── router0 ─┬─ eth1 of gw1 (hv2) 192.168.31.2 ── u1 .1 ─┐
//	  203.0.113.0/24                       └─ eth1 of gw2 (hv3) 192.168.32.2 ── u2 .1 ─┴─ inet: 192.0.2.10
//	  0.0.0.0/0 via 192.168.31.1 and via 192.168.32.1 (ECMP)
//
// The gateways tell a live next hop by its answers to their ARP probes
// (100 ms × the probe multiplier). Each uplink is cut three ways under
// ping -i 0.01 and brought back: the upstream's link goes down (the
// gateway loses its carrier), the upstream falls silent (no ARP answers,
// no forwarding; the link stays up, so only the probes tell), and the
// upstream goes away (its interfaces deleted: the gateway's eth1 goes
// with them, and comes back new). The gaps fail above maxGap.
type staticTopo struct {
	*harness.Env
	vms  []*harness.VM
	gws  []*harness.Hypervisor
	ups  []*harness.NS // u1, u2
	inet *harness.NS
	// inetMembers are the upstreams in the internet's nexthop group.
	inetMembers map[int]bool
}

func TestStaticUplinks(t *testing.T) {
	harness.Require(t, "tcpdump")
	st := newStaticTopology(t)
	st.waitReady(t)
	for _, vm := range st.vms {
		vm.WaitPing(t, serverAddr, 20*time.Second)
	}
	// ECMP: both uplinks carry some of the flows out (echo requests).
	flows := startPings(t, st.vms)
	time.Sleep(time.Second)
	for k := 1; k <= 2; k++ {
		n := len(flowsMatching(t, st, k, "icmp[icmptype] == icmp-echo"))
		t.Logf("uplink %d carries %d of the %d ping flows out", k, n, len(flows))
		if n == 0 {
			t.Errorf("no ping flow leaves by uplink %d: ECMP does not spread", k)
		}
	}
	for _, f := range flows {
		f.bg.Stop()
	}
	events := []struct {
		name         string
		k            int
		cut, restore func(t *testing.T, k int)
		hold         time.Duration
	}{
		{"link down", 1, st.linkDown, st.linkUp, 3 * time.Second},
		{"next hop silent", 2, st.silence, st.unsilence, 3 * time.Second},
		{"upstream deleted", 1, st.remove, st.recreate, 3 * time.Second},
		{"link down", 2, st.linkDown, st.linkUp, 3 * time.Second},
		{"next hop silent", 1, st.silence, st.unsilence, 3 * time.Second},
		{"upstream deleted", 2, st.remove, st.recreate, 3 * time.Second},
	}
	var report []string
	for _, ev := range events {
		line := measureFailover(t, st, ev.name, ev.k, ev.hold, func(t *testing.T) { ev.cut(t, ev.k) }, func(t *testing.T) { ev.restore(t, ev.k) })
		t.Log(line)
		report = append(report, line)
	}
	t.Logf("static uplink failover gaps (ping -i 0.01, worst flow; load %s):\n  %s", loadAvg(), strings.Join(report, "\n  "))
}

func newStaticTopology(t *testing.T) *staticTopo {
	t.Helper()
	env := harness.New(t, harness.Options{Hypervisors: 3})
	st := &staticTopo{Env: env, gws: env.Hosts[1:], inetMembers: map[int]bool{}}
	cli := providerTopology(t, env)

	st.inet = env.NewNS(t, "inet")
	st.inet.MustRun(t, "ip", "addr", "add", serverAddr+"/32", "dev", "lo")
	for k := 1; k <= 2; k++ {
		st.ups = append(st.ups, env.NewNS(t, fmt.Sprintf("u%d", k)))
		st.wireUp(t, k)
		p := cli("router router0 add port address 192.168.3%d.2 net 192.168.3%d.0/24", k, k)
		cli("router router0 add route dst 0.0.0.0/0 gw 192.168.3%d.1 port %s", k, p)
		cli("host %s add binding interface eth1 port %s", st.gws[k-1].Alias, p)
	}
	for i := range 4 {
		addr := fmt.Sprintf("203.0.113.%d", 11+i)
		vm := env.AddVM(t, env.Hosts[0], fmt.Sprintf("vm%d", i+1), harness.VMConfig{MAC: fmt.Sprintf("02:00:cb:00:72:%02x", 11+i),
			Addrs: []string{addr + "/24"}, Gateway: "203.0.113.1", MTU: env.UnderlayMTU - 50})
		p := cli("bridge bridge0 add port")
		cli("host %s add binding interface %s port %s", env.Hosts[0].Alias, vm.Tap, p)
		st.vms = append(st.vms, vm)
	}
	return st
}

// wireUp makes upstream k's links (to its gateway's eth1 and to the
// internet), its addresses and routes, and puts it back into the
// internet's nexthop group toward the tenant range.
func (st *staticTopo) wireUp(t *testing.T, k int) {
	t.Helper()
	gw, up := st.gws[k-1], st.ups[k-1]
	harness.Veth(t, gw.NS, "eth1", up, "eth0")
	gw.NS.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.conf.eth1.disable_ipv6=1")
	gw.NS.MustRun(t, "ip", "link", "set", "eth1", "up")
	up.MustRun(t, "ip", "addr", "add", fmt.Sprintf("192.168.3%d.1/24", k), "dev", "eth0")
	up.MustRun(t, "ip", "link", "set", "eth0", "up")
	e := fmt.Sprintf("e%d", k)
	harness.Veth(t, up, "eth1", st.inet, e)
	up.MustRun(t, "ip", "addr", "add", fmt.Sprintf("10.200.%d.2/24", k), "dev", "eth1")
	up.MustRun(t, "ip", "link", "set", "eth1", "up")
	up.MustRun(t, "ip", "route", "replace", "default", "via", fmt.Sprintf("10.200.%d.1", k))
	up.MustRun(t, "ip", "route", "replace", "203.0.113.0/24", "via", fmt.Sprintf("192.168.3%d.2", k))
	up.MustRun(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	st.inet.MustRun(t, "ip", "addr", "replace", fmt.Sprintf("10.200.%d.1/24", k), "dev", e)
	st.inet.MustRun(t, "ip", "link", "set", e, "up")
	st.joinInet(t, k)
}

// joinInet (re)adds upstream k's nexthop to the internet's group toward
// the tenant range, leaveInet takes it out: the internet's own failover,
// immediate so that the gaps measured are the gateways' (the kernel
// keeps using a nexthop whose link lost its carrier until its neighbour
// entry fails, which took up to a second here).
func (st *staticTopo) joinInet(t *testing.T, k int) {
	t.Helper()
	st.inet.MustRun(t, "ip", "nexthop", "replace", "id", fmt.Sprint(k), "via", fmt.Sprintf("10.200.%d.2", k), "dev", fmt.Sprintf("e%d", k))
	st.inetMembers[k] = true
	st.inetGroup(t)
}

func (st *staticTopo) leaveInet(t *testing.T, k int) {
	t.Helper()
	st.inetMembers[k] = false
	st.inetGroup(t)
}

func (st *staticTopo) inetGroup(t *testing.T) {
	t.Helper()
	var members []string
	for j := 1; j <= 2; j++ {
		if st.inetMembers[j] {
			members = append(members, fmt.Sprint(j))
		}
	}
	st.inet.MustRun(t, "ip", "nexthop", "replace", "id", "10", "group", strings.Join(members, "/"))
	st.inet.MustRun(t, "ip", "route", "replace", "203.0.113.0/24", "nhid", "10")
}

// linkDown: the upstream's end of the wire goes down (the gateway's eth1
// loses its carrier), and the upstream leaves the internet.
func (st *staticTopo) linkDown(t *testing.T, k int) {
	st.leaveInet(t, k)
	st.ups[k-1].MustRun(t, "ip", "link", "set", "eth0", "down")
	st.ups[k-1].MustRun(t, "ip", "link", "set", "eth1", "down")
}

func (st *staticTopo) linkUp(t *testing.T, k int) {
	st.ups[k-1].MustRun(t, "ip", "link", "set", "eth1", "up")
	st.ups[k-1].MustRun(t, "ip", "link", "set", "eth0", "up")
	st.ups[k-1].MustRun(t, "ip", "route", "replace", "default", "via", fmt.Sprintf("10.200.%d.1", k))
	st.ups[k-1].MustRun(t, "ip", "route", "replace", "203.0.113.0/24", "via", fmt.Sprintf("192.168.3%d.2", k))
	st.joinInet(t, k)
}

// silence: the upstream hangs with its link up: it answers no ARP and
// forwards nothing (only the gateway's probes can tell), and leaves the
// internet.
func (st *staticTopo) silence(t *testing.T, k int) {
	st.leaveInet(t, k)
	up := st.ups[k-1]
	up.MustRun(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
	up.MustRun(t, "ip", "link", "set", "eth0", "arp", "off")
	up.MustRun(t, "ip", "link", "set", "eth1", "down")
}

func (st *staticTopo) unsilence(t *testing.T, k int) {
	up := st.ups[k-1]
	up.MustRun(t, "ip", "link", "set", "eth1", "up")
	up.MustRun(t, "ip", "route", "replace", "default", "via", fmt.Sprintf("10.200.%d.1", k))
	up.MustRun(t, "ip", "link", "set", "eth0", "arp", "on")
	up.MustRun(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	st.joinInet(t, k)
}

// remove: the upstream goes away with its interfaces; the gateway's eth1
// (the other end of the wire) goes too.
func (st *staticTopo) remove(t *testing.T, k int) {
	st.leaveInet(t, k)
	st.ups[k-1].MustRun(t, "ip", "link", "del", "eth0")
	st.ups[k-1].MustRun(t, "ip", "link", "del", "eth1")
}

func (st *staticTopo) recreate(t *testing.T, k int) { st.wireUp(t, k) }

func (st *staticTopo) waitReady(t *testing.T) {
	t.Helper()
	err := harness.Eventually(30*time.Second, func() error {
		for k := 1; k <= 2; k++ {
			if _, err := st.ups[k-1].Run("ping", "-c", "1", "-W", "1", fmt.Sprintf("192.168.3%d.2", k)); err != nil {
				return fmt.Errorf("uplink %d's address does not answer its upstream: %v", k, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The uplinks pass their hold-down; the other hosts' probes learn it
	// at most one probe later.
	time.Sleep(1500 * time.Millisecond)
}

func (st *staticTopo) pingVMs() []*harness.VM           { return st.vms }
func (st *staticTopo) wire(k int) (*harness.NS, string) { return st.ups[k-1], "eth0" }

func (st *staticTopo) failbackDebug(k int) string {
	var b strings.Builder
	for _, c := range [][]string{{"ip", "-br", "link"}, {"ip", "neigh"}, {"ip", "route"}} {
		out, err := st.ups[k-1].Run(c...)
		fmt.Fprintf(&b, "u%d: %s (%v):\n%s\n", k, strings.Join(c, " "), err, out)
	}
	out, err := st.inet.Run("ip", "nexthop")
	fmt.Fprintf(&b, "inet: ip nexthop (%v):\n%s\n", err, out)
	routes, _ := st.CLI("router router0 list route")
	fmt.Fprintf(&b, "router0's routes:\n%s\n", routes)
	return b.String()
}
