//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/test/e2e/harness"
)

// TestTraffic shares one environment among scenarios that do not change
// the topology they run on; they run in order.
func TestTraffic(t *testing.T) {
	t.Parallel()
	tp := newTopology(t)

	t.Run("SameSubnetAcrossHosts", func(t *testing.T) {
		for _, c := range [][2]string{
			{"vm11", "10.0.1.12"}, {"vm12", "10.0.1.11"}, {"vm21", "10.0.2.12"}, {"vm22", "10.0.2.11"},
			{"vm11", "fd00:1::12"}, {"vm22", "fd00:2::11"},
		} {
			tp.vm[c[0]].WaitPing(t, c[1], 10*time.Second)
			mustPing(t, tp.vm[c[0]], c[1], 5)
		}
	})
	// The VMs are DHCP hosts: the router knows their MACs from the topology.
	t.Run("RoutedAcrossHosts", func(t *testing.T) {
		for _, c := range [][2]string{{"vm11", "10.0.2.12"}, {"vm22", "10.0.1.11"}, {"vm12", "10.0.2.11"}, {"vm21", "10.0.1.12"}} {
			tp.vm[c[0]].WaitPing(t, c[1], 10*time.Second)
			mustPing(t, tp.vm[c[0]], c[1], 5)
		}
	})
	// Next hops the topology does not know: the router must ask (ARP, ND),
	// and the answer enters the overlay on the host of the destination VM,
	// not on the host where the router simulation asked.
	t.Run("RoutedNextHopResolvedByARP", func(t *testing.T) {
		vm := tp.vm["vm22"]
		vm.NS.MustRun(t, "ip", "addr", "add", "10.0.2.99/24", "dev", "eth0") // no DHCP host entry
		t.Cleanup(func() { _, _ = vm.NS.Run("ip", "addr", "del", "10.0.2.99/24", "dev", "eth0") })
		tp.vm["vm11"].WaitPing(t, "10.0.2.99", 10*time.Second)
		mustPing(t, tp.vm["vm11"], "10.0.2.99", 5)
	})
	t.Run("RoutedAcrossHostsIPv6", func(t *testing.T) {
		for _, c := range [][2]string{{"vm11", "fd00:2::12"}, {"vm22", "fd00:1::11"}} {
			tp.vm[c[0]].WaitPing(t, c[1], 10*time.Second)
			mustPing(t, tp.vm[c[0]], c[1], 5)
		}
	})
	t.Run("Iperf3", func(t *testing.T) {
		harness.Require(t, "iperf3")
		iperf(t, tp.vm["vm11"], tp.vm["vm12"], 3) // bridged, hv1 → hv2
		iperf(t, tp.vm["vm22"], tp.vm["vm11"], 2) // routed, hv2 → hv1
	})
	t.Run("DHCP", func(t *testing.T) { testDHCP(t, tp) })
	t.Run("PMTUD", func(t *testing.T) { testPMTUD(t, tp) })
	t.Run("DatapathStatus", func(t *testing.T) { testDatapathStatus(t, tp) })
	t.Run("Metrics", func(t *testing.T) { testMetrics(t, tp) })
}

// iperf runs an iperf3 TCP test from client to server for secs seconds and
// checks that it completes and moves data (no rate is asserted: the
// machine is shared).
func iperf(t *testing.T, client, server *harness.VM, secs int) {
	t.Helper()
	server.Background(t, "iperf3", "-s", "-1", "-B", server.Addr)
	var out []byte
	err := harness.Eventually(10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+20)*time.Second)
		defer cancel()
		var err error
		out, err = client.NS.Command(ctx, "iperf3", "-c", server.Addr, "-t", strconv.Itoa(secs), "-J").CombinedOutput()
		// iperf3 -J may exit 0 with the error inside the JSON: retry on the
		// text, whatever the status.
		if strings.Contains(string(out), "Connection refused") || strings.Contains(string(out), "unable to connect") {
			return fmt.Errorf("the server is not listening yet: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("iperf3 %s → %s: %v\n%s", client.Name, server.Addr, err, out)
	}
	var res struct {
		End struct {
			SumSent struct {
				Bytes   float64 `json:"bytes"`
				Seconds float64 `json:"seconds"`
				Retr    int     `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("iperf3 %s → %s: bad JSON (%v):\n%s", client.Name, server.Addr, err, out)
	}
	if res.Error != "" || res.End.SumReceived.Bytes < 1<<20 {
		t.Fatalf("iperf3 %s → %s: error %q, %.0f bytes received:\n%s", client.Name, server.Addr, res.Error, res.End.SumReceived.Bytes, out)
	}
	t.Logf("iperf3 %s → %s: %.1f MB in %.1f s (%.0f Mbit/s, %d retransmits; informational)", client.Name, server.Addr,
		res.End.SumReceived.Bytes/1e6, res.End.SumSent.Seconds, res.End.SumReceived.BitsPerSecond/1e6, res.End.SumSent.Retr)
}

// testDHCP plugs a VM without an address into bridge0 on hv2 and runs
// udhcpc: it must get its fixed address, the router and the overlay MTU.
func testDHCP(t *testing.T, tp *topo) {
	harness.Require(t, "udhcpc")
	const mac, addr = "02:00:0a:00:01:0d", "10.0.1.13"
	vm := tp.AddVM(t, tp.Host("hv2"), "vm13", harness.VMConfig{MAC: mac})
	p := tp.MustCLI(t, "bridge bridge0 add port")
	tp.MustCLI(t, "host %s add binding interface %s port %s", vm.Host.Alias, vm.Tap, p)
	tp.MustCLI(t, "bridge bridge0 dhcp subnet 10.0.1.0/24 add host name vm13 mac %s address %s", mac, addr)

	bound := udhcpc(t, vm)
	t.Logf("udhcpc: %s", bound)
	want := fmt.Sprintf("ip=%s mask=24 router=10.0.1.1 mtu=%d ", addr, tp.UnderlayMTU-50)
	if !strings.HasPrefix(bound, "bound "+want) {
		t.Fatalf("DHCP lease: got %q, want it to start with %q", bound, "bound "+want)
	}
	if got := vm.NS.MustRun(t, "cat", "/sys/class/net/eth0/mtu"); got != strconv.Itoa(tp.UnderlayMTU-50) {
		t.Errorf("eth0 MTU after DHCP: %s", got)
	}
	vm.WaitPing(t, "10.0.1.11", 10*time.Second) // vm11, on the other host
	mustPing(t, vm, "10.0.1.11", 3)
	mustPing(t, vm, "10.0.2.11", 3) // routed through the DHCP-given gateway
}

// testPMTUD sends packets too big for the overlay (underlay MTU - 50) with
// DF set. A routed path answers with frag-needed (IPv4) or packet-too-big
// (IPv6) carrying the overlay MTU, from the router port; packets that fit
// pass, bridged or routed.
func testPMTUD(t *testing.T, tp *topo) {
	vm := tp.vm["vm11"]
	overlay := tp.UnderlayMTU - 50
	// A VM that believes its link takes 1500 bytes, so that the router, not
	// its own stack, has to refuse the packet.
	vm.NS.MustRun(t, "ip", "link", "set", "eth0", "mtu", strconv.Itoa(tp.UnderlayMTU))
	t.Cleanup(func() {
		_, _ = vm.NS.Run("ip", "link", "set", "eth0", "mtu", strconv.Itoa(overlay))
		_, _ = vm.NS.Run("ip", "route", "flush", "cache")
	})

	fits4, over4 := strconv.Itoa(overlay-28), strconv.Itoa(tp.UnderlayMTU-28) // 1422, 1472
	fits6, over6 := strconv.Itoa(overlay-48), strconv.Itoa(tp.UnderlayMTU-48) // 1402, 1452

	t.Run("IPv4", func(t *testing.T) {
		r := vm.Ping("10.0.2.12", 2, "0.3", "-M", "do", "-s", over4)
		wantFrag := fmt.Sprintf("From 10.0.1.1 icmp_seq=1 Frag needed and DF set (mtu = %d)", overlay)
		if r.Received != 0 || !strings.Contains(r.Output, wantFrag) {
			t.Errorf("ping -M do -s %s 10.0.2.12: want no answer and %q:\n%s", over4, wantFrag, r.Output)
		}
		// The VM's stack learnt the path MTU from the router's answer.
		if route := vm.NS.MustRun(t, "ip", "route", "get", "10.0.2.12"); !strings.Contains(route, fmt.Sprintf("mtu %d", overlay)) {
			t.Errorf("route cache after frag-needed: %s", route)
		}
		mustPing(t, vm, "10.0.2.12", 3, "-M", "do", "-s", fits4) // routed
		mustPing(t, vm, "10.0.1.12", 3, "-M", "do", "-s", fits4) // bridged

		// A bridge has no address to answer from: too big on a bridged
		// path is a counted drop (which is why VMs need the overlay MTU
		// that DHCP gives them).
		before, err := vm.Host.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if r := vm.Ping("10.0.1.12", 2, "0.3", "-M", "do", "-s", over4); r.Received != 0 {
			t.Errorf("a %s-byte ping crossed a %d-byte overlay:\n%s", over4, overlay, r.Output)
		}
		after, err := vm.Host.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		const drops = "nagare_agent_simulation_drops_total"
		if d := after.Label(drops, "reason", "mtu-exceeded") - before.Label(drops, "reason", "mtu-exceeded"); d < 1 {
			t.Errorf("%s{reason=\"mtu-exceeded\"} did not rise for oversize bridged pings", drops)
		}
	})
	// The drop of an oversize packet depends on its length, which no flow
	// key holds: it must not become a flow that drops the small packets of
	// the same 5-tuple too.
	t.Run("SmallAfterOversizeSameFlow", func(t *testing.T) {
		for _, dst := range []*harness.VM{tp.vm["vm12"], tp.vm["vm22"]} { // bridged, routed
			got := udpBigThenSmall(t, vm, dst, tp.UnderlayMTU-28, 100)
			if !got {
				t.Errorf("%s → %s: after one %d-byte UDP datagram (too big, dropped), the 100-byte ones of the same flow are dropped too",
					vm.Name, dst.Name, tp.UnderlayMTU-28)
			}
		}
	})
	t.Run("IPv6", func(t *testing.T) {
		r := vm.Ping("fd00:2::12", 2, "0.3", "-M", "do", "-s", over6)
		wantPTB := fmt.Sprintf("From fd00:1::1 icmp_seq=1 Packet too big: mtu=%d", overlay)
		if r.Received != 0 || !strings.Contains(r.Output, wantPTB) {
			t.Errorf("ping -M do -s %s fd00:2::12: want no answer and %q:\n%s", over6, wantPTB, r.Output)
		}
		mustPing(t, vm, "fd00:2::12", 3, "-M", "do", "-s", fits6)
		mustPing(t, vm, "fd00:1::12", 3, "-M", "do", "-s", fits6)
	})
}

// datapath reads a host's published datapath status from the API.
func datapath(tp *topo, h *harness.Hypervisor) (*agentstatus.Datapath, error) {
	var st agentstatus.Datapath
	err := tp.Call("GET", "/api/v1/hosts/"+h.ID+"/datapath", nil, &st)
	return &st, err
}

// testDatapathStatus reads the datapath status the agents publish, through
// the API (GET /api/v1/hosts/{id}/datapath) and the CLI (host X show
// datapath, host X list flow).
func testDatapathStatus(t *testing.T, tp *topo) {
	h := tp.Host("hv1")
	var st *agentstatus.Datapath
	// The API asks the agent for a fresh status: wait for one newer than
	// the traffic above.
	since := time.Now()
	err := harness.Eventually(10*time.Second, func() error {
		var err error
		if st, err = datapath(tp, h); err != nil {
			return err
		}
		if st.Updated.Before(since) {
			return fmt.Errorf("status of %s not refreshed since %s", st.Updated, since)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("GET /api/v1/hosts/%s/datapath: %v", h.ID, err)
	}
	if st.HostName != "hv1" || st.Datapath != harness.Datapath() || st.Flows == 0 || st.Hits == 0 || st.Misses == 0 ||
		st.VXLAN.TxPackets == 0 || len(st.FlowDump) == 0 {
		t.Errorf("datapath status of hv1 is missing something: %+v", st)
	}
	ifaces := map[string]bool{}
	for _, p := range st.Ports {
		ifaces[p.Interface] = true
	}
	if !ifaces["tap-vm11"] || !ifaces["tap-vm21"] || len(st.Ports) != 2 {
		t.Errorf("datapath ports of hv1: %+v, want tap-vm11 and tap-vm21", st.Ports)
	}
	t.Logf("hv1 datapath: %d flows, %d hits, %d misses, vxlan tx %d rx %d",
		st.Flows, st.Hits, st.Misses, st.VXLAN.TxPackets, st.VXLAN.RxPackets)

	out := tp.MustCLI(t, "host %s show datapath", h.Alias)
	t.Logf("host %s show datapath:\n%s", h.Alias, out)
	for _, want := range []string{"datapath " + harness.Datapath() + " host " + h.Alias + " flows ", " hits ", " misses ",
		"interface tap-vm11 ", "interface tap-vm21 ", "tunnel vxlan rx "} {
		if !strings.Contains(out, want) {
			t.Errorf("show datapath lacks %q", want)
		}
	}
	if flows := tp.MustCLI(t, "host %s list flow", h.Alias); !strings.Contains(flows, "in_port(") {
		t.Errorf("host %s list flow shows no flow:\n%s", h.Alias, flows)
	}
}

// testMetrics scrapes hv1's agent before and after traffic of new flows.
func testMetrics(t *testing.T, tp *topo) {
	h := tp.Host("hv1")
	before, err := h.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	// New ICMP echo ids: new flows (misses, upcalls), then hits.
	mustPing(t, tp.vm["vm11"], "10.0.1.12", 10)
	mustPing(t, tp.vm["vm21"], "10.0.1.12", 10)
	after, err := h.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nagare_agent_upcalls_total", "nagare_datapath_hits_total", "nagare_datapath_misses_total",
		"nagare_datapath_flows", "nagare_datapath_tunnel_tx_packets_total", "nagare_datapath_tunnel_rx_packets_total"} {
		if !after.Has(name) {
			t.Errorf("metric %s missing", name)
		}
	}
	for _, name := range []string{"nagare_agent_upcalls_total", "nagare_datapath_hits_total", "nagare_datapath_misses_total"} {
		if after.Sum(name) <= before.Sum(name) {
			t.Errorf("%s did not increase with traffic: %v → %v", name, before.Sum(name), after.Sum(name))
		}
	}
	if after.Label("nagare_datapath_tunnel_tx_packets_total", "encap", "vxlan") < 20 {
		t.Errorf("vxlan tx packets: %v", after.Label("nagare_datapath_tunnel_tx_packets_total", "encap", "vxlan"))
	}
	if n := after.Sum("nagare_datapath_flows"); n < 2 {
		t.Errorf("nagare_datapath_flows = %v after two pings, want ≥ 2", n)
	}
	// The flows gauge also falls as idle flows expire; the installs
	// counter only grows.
	const installed = "nagare_datapath_flows_installed_total"
	if after.Has(installed) && after.Sum(installed) < before.Sum(installed)+2 {
		t.Errorf("%s: %v → %v after two pings of new flows, want +2 at least", installed, before.Sum(installed), after.Sum(installed))
	}
	t.Logf("hv1: upcalls %v→%v, hits %v→%v, misses %v→%v, flows %v→%v",
		before.Sum("nagare_agent_upcalls_total"), after.Sum("nagare_agent_upcalls_total"),
		before.Sum("nagare_datapath_hits_total"), after.Sum("nagare_datapath_hits_total"),
		before.Sum("nagare_datapath_misses_total"), after.Sum("nagare_datapath_misses_total"),
		before.Sum("nagare_datapath_flows"), after.Sum("nagare_datapath_flows"))
}

// udpBigThenSmall sends, from one UDP socket of src (DF set), one datagram
// of big bytes and then small ones to dst, and reports whether a small one
// arrived.
func udpBigThenSmall(t *testing.T, src, dst *harness.VM, big, small int) bool {
	t.Helper()
	const port = 40002
	var rfd int
	err := dst.NS.Do(func() error {
		var err error
		if rfd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		return unix.Bind(rfd, &unix.SockaddrInet4{Port: port, Addr: netip.MustParseAddr(dst.Addr).As4()})
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", dst.Name, err)
	}
	defer unix.Close(rfd)
	tv := unix.NsecToTimeval(int64(300 * time.Millisecond))
	_ = unix.SetsockoptTimeval(rfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	var sfd int
	err = src.NS.Do(func() error {
		var err error
		if sfd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		return unix.SetsockoptInt(sfd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE) // DF, ignore learnt PMTU
	})
	if err != nil {
		t.Fatalf("socket in %s: %v", src.Name, err)
	}
	defer unix.Close(sfd)
	to := &unix.SockaddrInet4{Port: port, Addr: netip.MustParseAddr(dst.Addr).As4()}
	if err := unix.Sendto(sfd, make([]byte, big), 0, to); err != nil {
		t.Fatalf("send %d bytes: %v", big, err)
	}
	buf := make([]byte, 2048)
	for i := 0; i < 5; i++ {
		if err := unix.Sendto(sfd, make([]byte, small), 0, to); err != nil {
			t.Fatalf("send %d bytes: %v", small, err)
		}
		if n, _, err := unix.Recvfrom(rfd, buf, 0); err == nil && n == small {
			return true
		}
	}
	return false
}
