package sim

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// The test topology: two bridges joined by router r0, VMs bound on two
// hosts, an uplink, a VLAN trunk, and an IPv6 bridge.
//
//	 h1: vm1 (pa1), vm3 trunk (pa4), vm-v10b (pa6 vlan 10), vm4 (pb1), vm6 (pc1), uplinks (rU, rD)
//	 h2: vm2 (pa2), vm-v10 (pa5 vlan 10), vm5 (pb2)
//
//	bridge-a 10.0.1.0/24 --(paR|rA 10.0.1.1)-- r0 --(rB 10.0.2.1|pbR)-- bridge-b 10.0.2.0/24
//	                                            |-- rU 192.0.2.1/24 (uplink on h1)
//	                                            |-- rC 2001:db8:c::1/64 --(pcR)-- bridge-c
//	                                            |-- rD 2001:db8:d::1/64 (IPv6 uplink on h1)
//	                                            |-- rL 10.255.0.1/30 --(l0)-- r1 (routes 172.16/16 back: a loop)

var (
	macVM1 = packet.MAC{2, 0, 0, 0, 0x0a, 0x01}
	macVM2 = packet.MAC{2, 0, 0, 0, 0x0a, 0x02}
	macVM3 = packet.MAC{2, 0, 0, 0, 0x0a, 0x03}
	macV10 = packet.MAC{2, 0, 0, 0, 0x0a, 0x10}
	macVM4 = packet.MAC{2, 0, 0, 0, 0x0b, 0x01}
	macVM5 = packet.MAC{2, 0, 0, 0, 0x0b, 0x02}
	macVM6 = packet.MAC{2, 0, 0, 0, 0x0c, 0x01}
	macRA  = packet.MAC{2, 0, 0, 0, 0x01, 0x01}
	macRB  = packet.MAC{2, 0, 0, 0, 0x01, 0x02}
	macRC  = packet.MAC{2, 0, 0, 0, 0x01, 0x03}
	macRU  = packet.MAC{2, 0, 0, 0, 0x01, 0x0f}
	macRL  = packet.MAC{2, 0, 0, 0, 0x01, 0x20}
	macL0  = packet.MAC{2, 0, 0, 0, 0x01, 0x21}
	macRD  = packet.MAC{2, 0, 0, 0, 0x01, 0x0d}
	macGW  = packet.MAC{2, 0, 0, 0, 0xee, 0xee} // the upstream router behind the uplink
	macGW6 = packet.MAC{2, 0, 0, 0, 0xee, 0x66}
)

func ip(s string) netip.Addr     { return netip.MustParseAddr(s) }
func pfx(s string) netip.Prefix  { return netip.MustParsePrefix(s) }
func mm(m packet.MAC) packet.MAC { return m }
func meta(id string) model.Meta  { return model.Meta{ID: id} }
func bport(id, br string) *model.Port {
	return &model.Port{Meta: meta(id), BridgeID: br, State: model.StateUp}
}

func vmPort(id, br, host, ifname string, key uint32) *model.Port {
	p := bport(id, br)
	p.HostID, p.InterfaceName, p.TunnelKey = host, ifname, key
	return p
}

func rport(id, r, addr, net string, mac packet.MAC, peer string) *model.Port {
	return &model.Port{Meta: meta(id), RouterID: r, State: model.StateUp, MAC: mm(mac), Address: ip(addr), Network: pfx(net), PeerID: peer}
}

func route(id, r, dst, gw, port string, weight uint32) *model.Route {
	rt := &model.Route{Meta: meta(id), RouterID: r, Type: model.RouteNormal, Dst: pfx(dst), PortID: port, Weight: weight}
	if gw != "" {
		rt.Gateway = ip(gw)
	}
	return rt
}

func baseObjects() []model.Object {
	paR := bport("paR", "bridge-a")
	paR.PeerID = "rA"
	pbR := bport("pbR", "bridge-b")
	pbR.PeerID = "rB"
	pcR := bport("pcR", "bridge-c")
	pcR.PeerID = "rC"
	pa5 := vmPort("pa5", "bridge-a", "h2", "tap-v10", 105)
	pa5.VLAN = 10
	pa6 := vmPort("pa6", "bridge-a", "h1", "tap-v10b", 106)
	pa6.VLAN = 10
	rU := rport("rU", "r0", "192.0.2.1", "192.0.2.0/24", macRU, "")
	rU.HostID, rU.InterfaceName, rU.TunnelKey = "h1", "uplink0", 900
	rD := rport("rD", "r0", "2001:db8:d::1", "2001:db8:d::/64", macRD, "")
	rD.HostID, rD.InterfaceName, rD.TunnelKey = "h1", "uplink6", 901
	blackhole := &model.Route{Meta: meta("route-bh"), RouterID: "r0", Type: model.RouteBlackhole, Dst: pfx("198.51.100.0/24"), Weight: 100}
	reject := &model.Route{Meta: meta("route-rej"), RouterID: "r0", Type: model.RouteReject, Dst: pfx("203.0.113.0/24"), Weight: 100}
	return []model.Object{
		&model.Host{Meta: meta("h1"), Name: "host1"},
		&model.Host{Meta: meta("h2"), Name: "host2"},
		&model.TunnelZone{Meta: meta("tz"), Name: "tz", Type: model.TunnelVXLAN},
		&model.TunnelZoneMember{Meta: meta("tzm1"), TunnelZoneID: "tz", HostID: "h1", Address: ip("10.99.0.1")},
		&model.TunnelZoneMember{Meta: meta("tzm2"), TunnelZoneID: "tz", HostID: "h2", Address: ip("10.99.0.2")},
		&model.Bridge{Meta: meta("bridge-a"), Name: "bridge-a", State: model.StateUp},
		&model.Bridge{Meta: meta("bridge-b"), Name: "bridge-b", State: model.StateUp},
		&model.Bridge{Meta: meta("bridge-c"), Name: "bridge-c", State: model.StateUp},
		&model.Router{Meta: meta("r0"), Name: "r0", State: model.StateUp},
		&model.Router{Meta: meta("r1"), Name: "r1", State: model.StateUp},
		vmPort("pa1", "bridge-a", "h1", "tap-vm1", 101),
		vmPort("pa2", "bridge-a", "h2", "tap-vm2", 102),
		vmPort("pa4", "bridge-a", "h1", "trunk0", 104),
		pa5, pa6, paR,
		vmPort("pb1", "bridge-b", "h1", "tap-vm4", 201),
		vmPort("pb2", "bridge-b", "h2", "tap-vm5", 202),
		pbR,
		vmPort("pc1", "bridge-c", "h1", "tap-vm6", 301),
		pcR,
		rport("rA", "r0", "10.0.1.1", "10.0.1.0/24", macRA, "paR"),
		rport("rB", "r0", "10.0.2.1", "10.0.2.0/24", macRB, "pbR"),
		rport("rC", "r0", "2001:db8:c::1", "2001:db8:c::/64", macRC, "pcR"),
		rport("rL", "r0", "10.255.0.1", "10.255.0.0/30", macRL, "l0"),
		rport("l0", "r1", "10.255.0.2", "10.255.0.0/30", macL0, "rL"),
		rU, rD,
		// Routes are explicit: each router port's subnet has its own.
		route("net-a", "r0", "10.0.1.0/24", "", "rA", 100),
		route("net-b", "r0", "10.0.2.0/24", "", "rB", 100),
		route("net-c", "r0", "2001:db8:c::/64", "", "rC", 100),
		route("net-l", "r0", "10.255.0.0/30", "", "rL", 100),
		route("net-l1", "r1", "10.255.0.0/30", "", "l0", 100),
		route("net-u", "r0", "192.0.2.0/24", "", "rU", 100),
		route("net-d", "r0", "2001:db8:d::/64", "", "rD", 100),
		route("route-default", "r0", "0.0.0.0/0", "192.0.2.254", "rU", 100),
		blackhole, reject,
		route("route-ecmp1", "r0", "100.64.0.0/16", "192.0.2.10", "rU", 100),
		route("route-ecmp2", "r0", "100.64.0.0/16", "192.0.2.11", "rU", 100),
		route("route-ecmp3", "r0", "100.64.0.0/16", "192.0.2.12", "rU", 200),
		route("route-lpm", "r0", "100.64.5.0/24", "192.0.2.20", "rU", 100),
		route("route-loop0", "r0", "172.16.0.0/16", "10.255.0.2", "rL", 100),
		route("route-loop1", "r1", "172.16.0.0/16", "10.255.0.1", "l0", 100),
		route("route-v6", "r0", "2001:db8:f::/48", "2001:db8:d::fe", "rD", 100),
		&model.DHCPSubnet{Meta: meta("dhcp-a"), BridgeID: "bridge-a", Subnet: pfx("10.0.1.0/24"), Gateway: ip("10.0.1.1")},
		&model.DHCPHost{Meta: meta("dhcp-vm2"), DHCPSubnetID: "dhcp-a", MAC: mm(macVM2), Address: ip("10.0.1.12")},
	}
}

// fakeMACs is a MAC table in a map: what the agent's replicated table
// looks like to the simulation.
type fakeMACs struct {
	m      map[macEntry]string
	learns int
}

type macEntry struct {
	bridge string
	vlan   uint16
	mac    packet.MAC
}

func newFakeMACs() *fakeMACs { return &fakeMACs{m: map[macEntry]string{}} }

func (f *fakeMACs) Lookup(b string, vlan uint16, mac packet.MAC) (string, bool) {
	p, ok := f.m[macEntry{b, vlan, mac}]
	return p, ok
}

func (f *fakeMACs) Learn(b string, vlan uint16, mac packet.MAC, port string, now int64) {
	f.m[macEntry{b, vlan, mac}] = port
	f.learns++
}

type arpEntry struct {
	router string
	ip     netip.Addr
}

type fakeARP map[arpEntry]packet.MAC

func (f fakeARP) Lookup(r string, a netip.Addr) (packet.MAC, bool) {
	m, ok := f[arpEntry{r, a}]
	return m, ok
}

type env struct {
	t    *testing.T
	topo *Topology
	sim  *Simulator
	macs *fakeMACs
	arp  fakeARP
	res  *Result
}

func newEnv(t testing.TB, objs []model.Object, cfg Config) *env {
	topo, err := Build(objs)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	macs, arp := newFakeMACs(), fakeARP{}
	if cfg.HostID == "" {
		cfg.HostID = "h1"
	}
	cfg.MACs, cfg.ARP = macs, arp
	e := &env{topo: topo, sim: NewSimulator(topo, cfg), macs: macs, arp: arp, res: NewResult()}
	if tt, ok := t.(*testing.T); ok {
		e.t = tt
	}
	return e
}

// learned pre-populates the MAC table, as earlier traffic would have.
func (e *env) learned(bridge string, vlan uint16, mac packet.MAC, port string) {
	e.macs.m[macEntry{bridge, vlan, mac}] = port
}

func (e *env) run(inPort string, frame []byte) *Result {
	var p packet.Parsed
	p.Decode(frame)
	e.sim.Simulate(&Input{InPortID: inPort, Pkt: &p, Now: 1}, e.res)
	return e.res
}

func (e *env) trace(inPort string, frame []byte) (*Result, *Tracer) {
	var p packet.Parsed
	p.Decode(frame)
	tr := &Tracer{}
	e.sim.Simulate(&Input{InPortID: inPort, Pkt: &p, Now: 1, Trace: tr}, e.res)
	return e.res, tr
}

// Frame construction, written out by hand so the tests do not depend on
// the simulation's own view of packets.

type pkt struct {
	src, dst   packet.MAC
	vlan       int // -1 untagged
	srcIP      string
	dstIP      string
	proto      uint8
	sport      uint16
	dport      uint16
	ttl        uint8
	df         bool
	payloadLen int
	tcpFlags   uint8
}

func udp(src, dst packet.MAC, srcIP, dstIP string) pkt {
	return pkt{src: src, dst: dst, vlan: -1, srcIP: srcIP, dstIP: dstIP, proto: packet.IPProtoUDP, sport: 40000, dport: 53, ttl: 64, payloadLen: 32}
}

func (p pkt) bytes() []byte {
	var b []byte
	b = append(b, p.dst[:]...)
	b = append(b, p.src[:]...)
	if p.vlan >= 0 {
		b = binary.BigEndian.AppendUint16(b, packet.EtherTypeVLAN)
		b = binary.BigEndian.AppendUint16(b, uint16(p.vlan))
	}
	src, dst := ip(p.srcIP), ip(p.dstIP)
	var l4 []byte
	switch p.proto {
	case packet.IPProtoUDP:
		l4 = binary.BigEndian.AppendUint16(nil, p.sport)
		l4 = binary.BigEndian.AppendUint16(l4, p.dport)
		l4 = binary.BigEndian.AppendUint16(l4, uint16(8+p.payloadLen))
		l4 = append(l4, 0, 0)
	case packet.IPProtoTCP:
		l4 = binary.BigEndian.AppendUint16(nil, p.sport)
		l4 = binary.BigEndian.AppendUint16(l4, p.dport)
		l4 = append(l4, 0, 0, 0, 1, 0, 0, 0, 0, 5<<4, p.tcpFlags, 0xff, 0xff, 0, 0, 0, 0)
	case packet.IPProtoICMPv4:
		l4 = []byte{packet.ICMPv4EchoRequest, 0, 0, 0, 0x12, 0x34, 0, 1}
	case packet.IPProtoICMPv6:
		l4 = []byte{packet.ICMPv6EchoRequest, 0, 0, 0, 0x12, 0x34, 0, 1}
	}
	l4 = append(l4, make([]byte, p.payloadLen)...)
	if src.Is4() {
		b = binary.BigEndian.AppendUint16(b, packet.EtherTypeIPv4)
		h := []byte{0x45, 0, 0, 0, 0, 1, 0, 0, p.ttl, p.proto, 0, 0}
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
		if p.df {
			h[6] = 0x40
		}
		h = append(h, src.AsSlice()...)
		h = append(h, dst.AsSlice()...)
		binary.BigEndian.PutUint16(h[10:], packet.Checksum(h, 0))
		if p.proto == packet.IPProtoICMPv4 {
			binary.BigEndian.PutUint16(l4[2:], packet.Checksum(l4, 0))
		}
		b = append(b, h...)
	} else {
		b = binary.BigEndian.AppendUint16(b, packet.EtherTypeIPv6)
		h := []byte{0x60, 0, 0, 0, 0, 0, p.proto, p.ttl}
		binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
		h = append(h, src.AsSlice()...)
		h = append(h, dst.AsSlice()...)
		if p.proto == packet.IPProtoICMPv6 {
			binary.BigEndian.PutUint16(l4[2:], packet.L4Checksum(src, dst, packet.IPProtoICMPv6, l4))
		}
		b = append(b, h...)
	}
	return append(b, l4...)
}

func arpRequest(t testing.TB, src packet.MAC, srcIP, target string) []byte {
	b := make([]byte, 64)
	n, err := packet.BuildARPRequest(b, src, ip(srcIP), ip(target))
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}
