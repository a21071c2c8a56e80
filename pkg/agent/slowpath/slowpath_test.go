package slowpath

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nagare/nagare/pkg/agent/learned"
	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbmem"
	"github.com/nagare/nagare/pkg/packet"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

var (
	macVM1 = packet.MAC{2, 0, 0, 0, 0x0a, 1}
	macVM2 = packet.MAC{2, 0, 0, 0, 0x0a, 2}
	macVM3 = packet.MAC{2, 0, 0, 0, 0x0b, 3}
	macRA  = packet.MAC{2, 0, 0, 0, 1, 1}
	macRB  = packet.MAC{2, 0, 0, 0, 1, 2}
)

// topology: vm1, vm2 on bridge-a 10.0.1.0/24; vm3 on bridge-b
// 10.0.2.0/24; router r0 between them; DHCP on bridge-a. All bound here.
func topology() []model.Object {
	port := func(id, br, iface string, key uint32) *model.Port {
		return &model.Port{Meta: model.Meta{ID: id}, BridgeID: br, State: model.StateUp, HostID: "h1", InterfaceName: iface, TunnelKey: key}
	}
	peer := func(id, br, peer string) *model.Port {
		return &model.Port{Meta: model.Meta{ID: id}, BridgeID: br, State: model.StateUp, PeerID: peer}
	}
	rport := func(id, addr, net string, mac packet.MAC, peer string) *model.Port {
		return &model.Port{Meta: model.Meta{ID: id}, RouterID: "r0", State: model.StateUp, MAC: mac, Address: ip(addr),
			Network: netip.MustParsePrefix(net), PeerID: peer}
	}
	route := func(id, dst, port string) *model.Route {
		return &model.Route{Meta: model.Meta{ID: id}, RouterID: "r0", Type: model.RouteNormal, Dst: netip.MustParsePrefix(dst), PortID: port, Weight: 100}
	}
	return []model.Object{
		&model.Host{Meta: model.Meta{ID: "h1"}, Name: "h1"},
		&model.Bridge{Meta: model.Meta{ID: "bridge-a"}, State: model.StateUp},
		&model.Bridge{Meta: model.Meta{ID: "bridge-b"}, State: model.StateUp},
		&model.Router{Meta: model.Meta{ID: "r0"}, State: model.StateUp},
		port("vm1", "bridge-a", "vm1", 11), port("vm2", "bridge-a", "vm2", 12), port("vm3", "bridge-b", "vm3", 21),
		peer("paR", "bridge-a", "rA"), peer("pbR", "bridge-b", "rB"),
		rport("rA", "10.0.1.1", "10.0.1.0/24", macRA, "paR"), rport("rB", "10.0.2.1", "10.0.2.0/24", macRB, "pbR"),
		route("net-a", "10.0.1.0/24", "rA"), route("net-b", "10.0.2.0/24", "rB"),
		&model.DHCPSubnet{Meta: model.Meta{ID: "dhcp-a"}, BridgeID: "bridge-a", Subnet: netip.MustParsePrefix("10.0.1.0/24"),
			Gateway: ip("10.0.1.1"), ServerAddress: ip("10.0.1.2")},
		&model.DHCPHost{Meta: model.Meta{ID: "dh1"}, DHCPSubnetID: "dhcp-a", MAC: macVM1, Address: ip("10.0.1.11")},
	}
}

// host is a slow path serving a memory datapath with the topology's VMs.
type host struct {
	h   *Handler
	dp  *memory.Datapath
	vms map[string]*memory.Interface
	reg *prometheus.Registry
}

// newHost builds a host; wrap, if given, is the datapath the slow path
// sees in place of the memory datapath itself.
func newHost(t *testing.T, wrap ...func(*memory.Datapath) Datapath) *host {
	t.Helper()
	mh := memory.NewHost(nil)
	x := &host{dp: memory.New(datapath.Config{}, mh), vms: map[string]*memory.Interface{}, reg: prometheus.NewRegistry()}
	bindings := map[string]int32{}
	for i, name := range []string{"vm1", "vm2", "vm3"} {
		vm, err := mh.AddInterface(name)
		if err != nil {
			t.Fatal(err)
		}
		x.vms[name] = vm
		if err := x.dp.AddPort(datapath.PortConfig{PortID: name, Index: int32(i), Interface: name, TunnelKey: uint32(i + 1)}); err != nil {
			t.Fatal(err)
		}
		bindings[name] = int32(i)
	}
	var sp *Handler
	tables := learned.New(learned.Config{HostID: "h1", DB: nsdbmem.New(), Lease: func() nsdb.LeaseID { return 0 }, Flows: x.dp, Log: quiet,
		Resolved: func(r string, a netip.Addr) { sp.ReleaseParked(r, a) }})
	var err error
	var dp Datapath = x.dp
	for _, w := range wrap {
		dp = w(x.dp)
	}
	sp, err = New(Config{HostID: "h1", UnderlayMTU: 1500, Datapath: dp, MACs: tables.MACs(), Neighbors: neighbors{tables},
		Registerer: x.reg, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	x.h = sp
	s, err := mirror.NewSnapshot(1, topology()...)
	if err != nil {
		t.Fatal(err)
	}
	sp.SetTopology(s)
	sp.SetBindings(bindings)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = x.dp.Run(ctx, sp) }()
	return x
}

// neighbors is the learned tables as the slow path sees them.
type neighbors struct{ *learned.Tables }

func (n neighbors) Lookup(r string, a netip.Addr) (packet.MAC, bool) { return n.ARP().Lookup(r, a) }

// recv waits for the next frame out of a VM's port.
func (x *host) recv(t *testing.T, vm, what string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := x.vms[vm].Recv(ctx)
	if err != nil {
		t.Fatalf("%s: nothing out of %s: %v", what, vm, err)
	}
	return f
}

func (x *host) none(t *testing.T, vm, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if f, err := x.vms[vm].Recv(ctx); err == nil {
		t.Fatalf("%s: unexpected frame out of %s: %x", what, vm, f)
	}
}

func (x *host) send(t *testing.T, vm string, f []byte) {
	t.Helper()
	if err := x.vms[vm].Send(f); err != nil {
		t.Fatal(err)
	}
}

func probe(t *testing.T, p packet.Probe) []byte {
	t.Helper()
	b := make([]byte, 2048)
	if p.Length == 0 {
		p.Length = 64
	}
	n, err := packet.BuildProbe(b, &p)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

// A broadcast floods the bridge; the flood's flow takes the next one
// without a miss.
func TestFloodInstallsAFlow(t *testing.T) {
	x := newHost(t)
	arp := make([]byte, 64)
	n, err := packet.BuildARPRequest(arp, macVM1, ip("10.0.1.11"), ip("10.0.1.12"))
	if err != nil {
		t.Fatal(err)
	}
	arp = arp[:n]
	x.send(t, "vm1", arp)
	if got := x.recv(t, "vm2", "flood"); !bytes.Equal(got, arp) {
		t.Fatalf("flooded %x, want %x", got, arp)
	}
	x.none(t, "vm3", "flood stays on its bridge")
	x.send(t, "vm1", arp)
	x.recv(t, "vm2", "second flood")
	if s := x.dp.Stats(); s.Misses != 1 || s.Hits != 1 || s.Flows != 1 {
		t.Fatalf("misses %d hits %d flows %d: want the second packet to hit the flow the first installed", s.Misses, s.Hits, s.Flows)
	}
	if n := testutil.ToFloat64(x.h.met.upcalls); n != 1 {
		t.Fatalf("upcalls metric %v", n)
	}
}

// staleAlways is a Generational datapath on which an invalidation comes
// during every simulation.
type staleAlways struct {
	*memory.Datapath
	gen atomic.Uint64
}

func (s *staleAlways) Generation() uint64 { return s.gen.Add(1) - 1 }

func (s *staleAlways) InstallAt(gen, _ uint64, spec *datapath.FlowSpec) (bool, error) {
	if s.gen.Load() != gen {
		return false, nil
	}
	return true, s.Datapath.Install(spec)
}

// A flow whose simulation an invalidation overtook is not installed (it
// may have read what the invalidation changed); its packet still goes.
func TestNoInstallAfterInvalidation(t *testing.T) {
	x := newHost(t, func(dp *memory.Datapath) Datapath { return &staleAlways{Datapath: dp} })
	arp := make([]byte, 64)
	n, err := packet.BuildARPRequest(arp, macVM1, ip("10.0.1.11"), ip("10.0.1.12"))
	if err != nil {
		t.Fatal(err)
	}
	arp = arp[:n]
	for i := range 2 {
		x.send(t, "vm1", arp)
		if got := x.recv(t, "vm2", "flood"); !bytes.Equal(got, arp) {
			t.Fatalf("packet %d: flooded %x, want %x", i, got, arp)
		}
	}
	if s := x.dp.Stats(); s.Misses != 2 || s.Flows != 0 {
		t.Fatalf("misses %d flows %d: want both packets simulated and no flow installed", s.Misses, s.Flows)
	}
	if n := testutil.ToFloat64(x.h.met.installStale); n != 2 {
		t.Fatalf("stale installs metric %v, want 2", n)
	}
}

// A routed ping waits (parked) for the router's ARP request to be
// answered, then leaves rewritten: the router's MAC as source, the VM's
// as destination, TTL decremented.
func TestRoutedPingWaitsForARP(t *testing.T) {
	x := newHost(t)
	ping := probe(t, packet.Probe{EthSrc: macVM1, EthDst: macRA, Src: ip("10.0.1.11"), Dst: ip("10.0.2.13"),
		Proto: packet.IPProtoICMPv4, SrcPort: 77})
	x.send(t, "vm1", ping)
	req := x.recv(t, "vm3", "the router's ARP request")
	var p packet.Parsed
	p.Decode(req)
	if p.L3 != packet.L3ARP || p.ARPOp != 1 || p.ARPTargetIP != ip("10.0.2.13") || p.EthSrc != macRB {
		t.Fatalf("not the router's request for 10.0.2.13: %x", req)
	}
	reply := make([]byte, 64)
	n, err := packet.BuildARPReply(reply, &p, macVM3)
	if err != nil {
		t.Fatal(err)
	}
	x.send(t, "vm3", reply[:n])
	got := x.recv(t, "vm3", "the parked ping")
	want := probe(t, packet.Probe{EthSrc: macRB, EthDst: macVM3, Src: ip("10.0.1.11"), Dst: ip("10.0.2.13"),
		Proto: packet.IPProtoICMPv4, SrcPort: 77, TTL: 63})
	if !bytes.Equal(got, want) {
		t.Fatalf("routed ping\n got %x\nwant %x", got, want)
	}
	// The next one installs a flow, the one after hits it.
	for range 2 {
		x.send(t, "vm1", ping)
		if got := x.recv(t, "vm3", "routed ping"); !bytes.Equal(got, want) {
			t.Fatalf("routed ping\n got %x\nwant %x", got, want)
		}
	}
	if s := x.dp.Stats(); s.Hits == 0 {
		t.Fatalf("no hit: %+v", s)
	}
}

// DHCP is answered by the agent, out of the port it came in by.
func TestDHCPAnswered(t *testing.T) {
	x := newHost(t)
	discover := dhcpDiscover(t, macVM1)
	x.send(t, "vm1", discover)
	offer := x.recv(t, "vm1", "DHCP offer")
	var p packet.Parsed
	p.Decode(offer)
	if p.L4 != packet.L4UDP || p.SrcPort != 67 || p.DstPort != 68 || p.EthDst != macVM1 && !p.EthDst.IsBroadcast() {
		t.Fatalf("not a DHCP answer to vm1: %x", offer)
	}
	if !bytes.Contains(offer, ip("10.0.1.11").AsSlice()) {
		t.Fatal("the offer does not carry vm1's fixed address")
	}
	x.none(t, "vm2", "DHCP never leaves the host")
	if n := testutil.ToFloat64(x.h.met.dhcpReplies); n != 1 {
		t.Fatalf("dhcp replies metric %v", n)
	}
}

// dhcpDiscover builds a DHCPDISCOVER from mac (BOOTP with the DHCP cookie
// and a message-type option), broadcast.
func dhcpDiscover(t *testing.T, mac packet.MAC) []byte {
	t.Helper()
	bootp := make([]byte, 240, 300)
	bootp[0], bootp[1], bootp[2] = 1, 1, 6 // request, Ethernet, 6-byte addresses
	bootp[4], bootp[7] = 0x12, 0x34        // xid
	bootp[10] = 0x80                       // broadcast flag
	copy(bootp[28:], mac[:])
	copy(bootp[236:], []byte{99, 130, 83, 99})
	bootp = append(bootp, 53, 1, 1, 255)
	b := probe(t, packet.Probe{EthSrc: mac, EthDst: packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: ip("0.0.0.0"),
		Dst: ip("255.255.255.255"), Proto: packet.IPProtoUDP, SrcPort: 68, DstPort: 67, Length: 20 + 8 + len(bootp)})
	copy(b[14+20+8:], bootp)
	b[14+20+6], b[14+20+7] = 0, 0 // no UDP checksum (IPv4 allows it)
	return b
}

// The state of a connection through a port of a stateful port group
// goes to every other host binding a port of that group (several uplinks
// on several gateways), and to no host for a port of a plain group.
func TestStatefulPeers(t *testing.T) {
	objs := []model.Object{
		&model.TunnelZone{Meta: model.Meta{ID: "tz"}, Type: model.TunnelVXLAN},
		&model.TunnelZoneMember{Meta: model.Meta{ID: "m1"}, TunnelZoneID: "tz", HostID: "h1", Address: ip("10.99.0.1")},
		&model.TunnelZoneMember{Meta: model.Meta{ID: "m2"}, TunnelZoneID: "tz", HostID: "h2", Address: ip("10.99.0.2")},
		&model.TunnelZoneMember{Meta: model.Meta{ID: "m3"}, TunnelZoneID: "tz", HostID: "h3", Address: ip("10.99.0.3")},
		&model.TunnelZoneMember{Meta: model.Meta{ID: "m4"}, TunnelZoneID: "other", HostID: "h4", Address: ip("10.98.0.4")},
		&model.Port{Meta: model.Meta{ID: "up1"}, HostID: "h1"},
		&model.Port{Meta: model.Meta{ID: "up2"}, HostID: "h2"},
		&model.Port{Meta: model.Meta{ID: "up3"}, HostID: "h3"},
		&model.Port{Meta: model.Meta{ID: "up4"}, HostID: "h4"},
		&model.Port{Meta: model.Meta{ID: "vm"}, HostID: "h3"},
		&model.PortGroup{Meta: model.Meta{ID: "uplinks"}, Stateful: true},
		&model.PortGroup{Meta: model.Meta{ID: "plain"}},
		&model.PortGroupMember{Meta: model.Meta{ID: "g1"}, PortGroupID: "uplinks", PortID: "up1"},
		&model.PortGroupMember{Meta: model.Meta{ID: "g2"}, PortGroupID: "uplinks", PortID: "up2"},
		&model.PortGroupMember{Meta: model.Meta{ID: "g3"}, PortGroupID: "uplinks", PortID: "up3"},
		&model.PortGroupMember{Meta: model.Meta{ID: "g4"}, PortGroupID: "uplinks", PortID: "up4"},
		&model.PortGroupMember{Meta: model.Meta{ID: "g5"}, PortGroupID: "plain", PortID: "vm"},
	}
	peers := StatefulPeers(mirror.ObjectSnapshot(1, objs...), "h1")
	want := []netip.Addr{ip("10.99.0.2"), ip("10.99.0.3")}
	for _, p := range []string{"up1", "up2", "up3", "up4"} {
		if !slices.Equal(peers[p], want) {
			t.Errorf("peers of %s: %v, want %v (other hosts of the group, in a tunnel zone of this host)", p, peers[p], want)
		}
	}
	if len(peers["vm"]) != 0 {
		t.Errorf("a port of a plain group has peers: %v", peers["vm"])
	}
}
