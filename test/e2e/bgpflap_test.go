//go:build linux

package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/test/e2e/harness"
)

// TestBGPFailbackLoop takes one uplink's link down and up again many
// times against FRR (oneUplink). At link up both ends want the session
// back: FRR connects as soon as its interface is up, the gateway's
// attempts go on every 2 s. Both connecting at once once left the session
// down for good (GoBGP's collision defect, replayed message by message in
// package gobgp's TestGoBGPCollisionDefect); the gateway only connects
// now. The session must come back established on both sides within
// sessionBound every time, and the VM's traffic must cross the uplink
// again (after the uplink's hold-down, which grows while it flaps).
func TestBGPFailbackLoop(t *testing.T) {
	harness.Require(t, "vtysh")
	// Four in the suite (each ~10 s, on both datapaths, serially: BFD at
	// 100 ms on a shared machine); the defect showed in none of 39 flaps
	// on the old code here, so hunting it takes NAGARE_E2E_FLAPS=50.
	flaps := 4
	if v, err := strconv.Atoi(os.Getenv("NAGARE_E2E_FLAPS")); err == nil && v > 0 {
		flaps = v
	}
	// The session's own bound: a connection attempt every 2 s at most
	// (GoBGP's), the BFD session's start, a loaded machine.
	const sessionBound = 8 * time.Second
	// The hold-down doubles per fall in the last minute, up to 30 s.
	const trafficBound = 40 * time.Second

	u := newOneUplink(t, "", "")
	env, r1, frr, vm := u.env, u.r1, u.frr, u.vm
	established := u.established
	if err := harness.Eventually(30*time.Second, established); err != nil {
		t.Fatal(err)
	}
	vm.WaitPing(t, serverAddr, trafficBound)

	var sessions, traffic []string
	var worst time.Duration
	for i := range flaps {
		r1.MustRun(t, "ip", "link", "set", "eth0", "down")
		// Down long enough for the gateway to be trying to connect again
		// (BFD tells it, it resets the session, waits a second, then
		// tries every 2 s), for a varying time so that link up falls at
		// every phase of its attempts.
		if err := harness.Eventually(5*time.Second, func() error {
			if out, _ := env.CLI("router router0 list bgp-peer"); strings.Contains(out, "status established") {
				return fmt.Errorf("session still established")
			}
			return nil
		}); err != nil {
			t.Fatalf("flap %d: the gateway did not notice its link going: %v", i+1, err)
		}
		time.Sleep(time.Duration(3000+(i%7)*400) * time.Millisecond)
		r1.MustRun(t, "ip", "link", "set", "eth0", "up")
		up := time.Now()
		if err := harness.Eventually(sessionBound, established); err != nil {
			sum, _ := frr.Vtysh("show bgp summary")
			t.Fatalf("flap %d: session not back within %s of link up: %v\n%s\nr1's log:\n%s", i+1, sessionBound, err, sum,
				tailLines(frr.Log(), 40))
		}
		back := time.Since(up)
		worst = max(worst, back)
		vm.WaitPing(t, serverAddr, trafficBound)
		sessions = append(sessions, fmt.Sprintf("%.1f", back.Seconds()))
		traffic = append(traffic, fmt.Sprintf("%.1f", time.Since(up).Seconds()))
	}
	// How often both ends opened a connection at once (FRR logs the
	// notification that resolves the collision).
	collisions := strings.Count(strings.ToLower(frr.Log()), "collision")
	t.Logf("%d link flaps: session established again after %s s (worst %.1f s); traffic through the uplink again after %s s (hold-down included); %d connection collisions resolved by r1; load %s",
		flaps, strings.Join(sessions, " "), worst.Seconds(), strings.Join(traffic, " "), collisions, loadAvg())
}

// oneUplink is a provider router with one BGP uplink on gw (hv2) peering
// with r1 (FRR, AS 65001, 192.0.2.10 on lo), and a VM on hv1 behind it.
//
//	vm (hv1) 203.0.113.0/24 ── bridge0 ── router0 (AS 64512) ── eth1 of gw (hv2) 192.168.41.2 ── r1 (FRR, AS 65001)
//	                                                                                               192.0.2.10 on lo
type oneUplink struct {
	env  *harness.Env
	gw   *harness.Hypervisor
	r1   *harness.NS
	frr  *harness.FRR
	vm   *harness.VM
	peer string // the peer's CLI path: router router0 bgp-peer peerN
}

// newOneUplink builds it; neighbor is more of r1's configuration of its
// neighbor 192.168.41.2 (a line each), peerArgs more words for the
// gateway's bgp-peer.
func newOneUplink(t *testing.T, neighbor, peerArgs string) *oneUplink {
	t.Helper()
	probe := []string{"--gateway-probe-multiplier", strconv.Itoa(bfdMultiplier)}
	env := harness.New(t, harness.Options{Hypervisors: 2, InNamespace: []string{"hv2"}, AgentArgs: probe,
		Nice: map[string]int{"hv2": -10}})
	hv1, gw := env.Host("hv1"), env.Host("hv2")
	cli := providerTopology(t, env)
	cli("router router0 set asn 64512")
	cli("router router0 add bgp-network net 203.0.113.0/24")

	r1 := upstreamWire(t, env, gw, "192.168.41.1/24")
	// FRR as an upstream would run it: it connects too (default timers).
	frr := harness.StartFRR(t, r1, "", bfdProfile, "router bgp 65001\n bgp router-id 192.168.41.1\n bgp log-neighbor-changes\n"+
		" no bgp ebgp-requires-policy\n no bgp network import-check\n timers bgp 1 3\n"+
		" neighbor 192.168.41.2 remote-as 64512\n neighbor 192.168.41.2 bfd profile fast\n neighbor 192.168.41.2 advertisement-interval 0\n"+
		neighbor+" address-family ipv4 unicast\n  network 192.0.2.0/24\n exit-address-family\n")

	p := cli("router router0 add port address 192.168.41.2 net 192.168.41.0/24")
	alias := cli("%s add bgp-peer asn 65001 address 192.168.41.1 bfd-multiplier %d %s", portCmd(p), bfdMultiplier, peerArgs)
	_, peer, _ := strings.Cut(alias, ":")
	vm := env.AddVM(t, hv1, "vm", harness.VMConfig{MAC: "02:00:cb:00:71:0b", Addrs: []string{"203.0.113.11/24"},
		Gateway: "203.0.113.1", MTU: env.UnderlayMTU - 50})
	cli("host %s add binding interface %s port %s", hv1.Alias, vm.Tap, cli("bridge bridge0 add port"))
	cli("host %s add binding interface eth1 port %s", gw.Alias, p)
	return &oneUplink{env: env, gw: gw, r1: r1, frr: frr, vm: vm, peer: "router router0 bgp-peer " + peer}
}

// upstreamWire makes the upstream r1 on the wire of gw's eth1, at addr
// on its eth0, with the "internet" address serverAddr on its lo.
func upstreamWire(t *testing.T, env *harness.Env, gw *harness.Hypervisor, addr string) *harness.NS {
	t.Helper()
	r1 := env.NewNS(t, "r1")
	harness.Veth(t, gw.NS, "eth1", r1, "eth0")
	gw.NS.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.conf.eth1.disable_ipv6=1")
	gw.NS.MustRun(t, "ip", "link", "set", "eth1", "up")
	r1.MustRun(t, "ip", "addr", "add", addr, "dev", "eth0")
	r1.MustRun(t, "ip", "link", "set", "eth0", "up")
	r1.MustRun(t, "ip", "addr", "add", serverAddr+"/32", "dev", "lo")
	return r1
}

// established says whether both ends see the session established.
func (u *oneUplink) established() error {
	peers, err := u.env.CLI("router router0 list bgp-peer")
	if err != nil {
		return err
	}
	if !strings.Contains(peers, "status established") {
		return fmt.Errorf("the gateway's session is not established: %s", strings.TrimSpace(peers))
	}
	out, err := u.frr.Vtysh("show bgp neighbors 192.168.41.2")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "BGP state = Established") {
		return fmt.Errorf("r1's session is not established: %s", firstLineWith(out, "BGP state"))
	}
	return nil
}

func firstLineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return "(no " + sub + ")"
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
