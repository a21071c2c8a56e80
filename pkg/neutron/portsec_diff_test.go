package neutron

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

// secWorld is a random network of security groups and ports, translated
// both ways: by reference (TranslatePort) and as it was (the port's own
// chains, legacyTranslatePort).
type secWorld struct {
	r      *rand.Rand
	groups []*SecurityGroup
	rules  map[string][]*SecurityGroupRule
	ports  []*Port
	in     []PortInput
}

const (
	diffNet  = "d1000000-0000-4000-8000-000000000000"
	diffSub4 = "d2000000-0000-4000-8000-000000000000"
	diffSub6 = "d3000000-0000-4000-8000-000000000000"
	diffHost = "d4000000-0000-4000-8000-000000000000"
)

func diffID(kind byte, i int) string {
	return fmt.Sprintf("d%c%06x-0000-4000-8000-000000000000", kind, i)
}

func newSecWorld(seed uint64) *secWorld {
	r := rand.New(rand.NewPCG(seed, 26))
	w := &secWorld{r: r, rules: map[string][]*SecurityGroupRule{}}
	for i := range 3 {
		g := &SecurityGroup{Stateful: r.IntN(3) != 0}
		g.ID = diffID('a', i)
		w.groups = append(w.groups, g)
	}
	for _, g := range w.groups {
		for range r.IntN(6) {
			if x := w.randomRule(g); x.validate() == nil {
				w.rules[g.ID] = append(w.rules[g.ID], x)
			}
		}
	}
	s4 := &Subnet{NetworkID: diffNet, CIDR: netip.MustParsePrefix("10.0.0.0/24"), IPVersion: 4, GatewayIP: netip.MustParseAddr("10.0.0.1"), EnableDHCP: true}
	s4.ID = diffSub4
	s6 := &Subnet{NetworkID: diffNet, CIDR: netip.MustParsePrefix("fd00::/64"), IPVersion: 6}
	s6.ID = diffSub6
	subnets := map[string]*Subnet{diffSub4: s4, diffSub6: s6}
	for i := range 3 + r.IntN(4) {
		p := &Port{NetworkID: diffNet, AdminStateUp: true, VNICType: "normal", DeviceOwner: "compute:nova", PortSecurityEnabled: r.IntN(6) != 0,
			MACAddress: packet.MAC{0xfa, 0x16, 0x3e, 0, 0, byte(1 + i)}}
		p.ID = diffID('b', i)
		p.FixedIPs = []FixedIP{{SubnetID: diffSub4, IPAddress: netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)})}}
		if r.IntN(2) == 0 {
			p.FixedIPs = append(p.FixedIPs, FixedIP{SubnetID: diffSub6, IPAddress: netip.MustParseAddr(fmt.Sprintf("fd00::%x", 10+i))})
		}
		for range r.IntN(3) {
			a := AddressPair{IPAddress: []netip.Prefix{netip.MustParsePrefix("10.0.0.200/32"), netip.MustParsePrefix("10.0.0.64/28"),
				netip.MustParsePrefix("192.168.7.0/24"), netip.MustParsePrefix("fd00::200/128"), netip.MustParsePrefix("fd00::/120")}[r.IntN(5)]}
			if r.IntN(3) == 0 {
				a.MACAddress = packet.MAC{2, 0, 0, 0, 0x99, byte(i)}
			}
			p.AllowedAddressPairs = append(p.AllowedAddressPairs, a)
		}
		var groups []*SecurityGroup
		for _, g := range w.groups {
			if r.IntN(2) == 0 {
				groups = append(groups, g)
			}
		}
		w.ports = append(w.ports, p)
		w.in = append(w.in, PortInput{Port: p, Subnets: subnets, Groups: groups, HostID: diffHost})
	}
	return w
}

func (w *secWorld) randomRule(g *SecurityGroup) *SecurityGroupRule {
	r := w.r
	n := func(v int) *int { return &v }
	x := &SecurityGroupRule{SecurityGroupID: g.ID, Direction: []string{"ingress", "egress"}[r.IntN(2)], Ethertype: []string{"IPv4", "IPv6"}[r.IntN(2)]}
	x.Protocol = []string{"", "tcp", "udp", "icmp", "ipv6-icmp", "17", "132"}[r.IntN(7)]
	switch x.Protocol {
	case "tcp", "udp", "17", "132":
		if r.IntN(2) == 0 {
			lo := []int{22, 53, 67, 80, 546, 1000}[r.IntN(6)]
			x.PortRangeMin, x.PortRangeMax = n(lo), n(lo+r.IntN(3)*100)
		}
	case "icmp", "ipv6-icmp":
		if r.IntN(2) == 0 {
			x.PortRangeMin = n([]int{0, 3, 8, 128, 129, 134, 135, 136}[r.IntN(8)])
			if r.IntN(2) == 0 {
				x.PortRangeMax = n(0)
			}
		}
	}
	switch r.IntN(3) {
	case 0:
		if x.Ethertype == "IPv4" {
			x.RemoteIPPrefix = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/28"), netip.MustParsePrefix("10.0.0.12/32"), netip.MustParsePrefix("0.0.0.0/0")}[r.IntN(3)]
		} else {
			x.RemoteIPPrefix = []netip.Prefix{netip.MustParsePrefix("fd00::/124"), netip.MustParsePrefix("::/0")}[r.IntN(2)]
		}
	case 1:
		x.RemoteGroupID = w.groups[r.IntN(len(w.groups))].ID
	}
	return x
}

// objects is the world's native model, legacy or by reference.
func (w *secWorld) objects(t *testing.T, legacy bool) []model.Object {
	n := &Network{AdminStateUp: true}
	n.ID = diffNet
	objs := []model.Object{&model.Host{Meta: model.Meta{ID: diffHost}, Name: "h"}}
	objs = append(objs, TranslateNetwork(n)...)
	objs = append(objs, TranslateSubnet(w.in[0].Subnets[diffSub4], n)...)
	for _, g := range w.groups {
		objs = append(objs, TranslateSecurityGroup(g, w.rules[g.ID], nil)...)
	}
	if legacy {
		objs = append(objs, legacyCommonChains()...)
	}
	for i, in := range w.in {
		var po []model.Object
		if legacy {
			po = legacyTranslatePort(in)
		} else {
			po = TranslatePort(in)
		}
		po[0].(*model.Port).TunnelKey = uint32(100 + i)
		objs = append(objs, po...)
	}
	for _, o := range objs {
		model.ApplyDefaults(o)
		if err := model.Validate(o); err != nil {
			t.Fatalf("%s %s: %v", model.KindOf(o).Name, o.GetMeta().ID, err)
		}
	}
	return objs
}

// frame is a random frame from port i's VM: from its MAC, a pair's or
// another; from its addresses, a pair's or another; ARP (forged or not),
// neighbor discovery, DHCP, ICMP, TCP or UDP; to a port or flooded.
func (w *secWorld) frame(t *testing.T, i int) []byte {
	r := w.r
	p := w.ports[i]
	dst := w.ports[r.IntN(len(w.ports))]
	src := p.MACAddress
	switch r.IntN(6) {
	case 0:
		src = packet.MAC{2, 0, 0, 0, 0x99, byte(i)}
	case 1:
		src = packet.MAC{0xfa, 0x16, 0x3e, 0, 0, byte(1 + r.IntN(8))}
	}
	dmac := dst.MACAddress
	if r.IntN(4) == 0 {
		dmac = packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	v6 := r.IntN(2) == 0
	pick := func(own []netip.Addr, others ...string) netip.Addr {
		if len(own) > 0 && r.IntN(2) == 0 {
			return own[r.IntN(len(own))]
		}
		return netip.MustParseAddr(others[r.IntN(len(others))])
	}
	var mine, theirs []netip.Addr
	for _, f := range p.FixedIPs {
		if f.IPAddress.Is6() == v6 {
			mine = append(mine, f.IPAddress)
		}
	}
	for _, f := range dst.FixedIPs {
		if f.IPAddress.Is6() == v6 {
			theirs = append(theirs, f.IPAddress)
		}
	}
	var from, to netip.Addr
	if v6 {
		from = pick(append(mine, linkLocal(src)), "fd00::200", "fd00::7", "fd00::c", "fe80::1", "2001:db8::1")
		to = pick(theirs, "fd00::a", "fd00::b", "ff02::1")
	} else {
		from = pick(mine, "10.0.0.200", "10.0.0.70", "10.0.0.12", "192.168.7.9", "10.9.9.9")
		to = pick(theirs, "10.0.0.10", "10.0.0.11", "10.0.0.255")
	}
	b := make([]byte, 256)
	switch k := r.IntN(9); {
	case k == 0 && !v6: // ARP, its payload's sender MAC maybe forged
		n, err := packet.BuildARPRequest(b, src, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if r.IntN(3) == 0 {
			copy(b[14+8:14+14], []byte{2, 0, 0, 0, 0x99, byte(i)})
		}
		copy(b[0:6], dmac[:])
		return b[:n]
	case k == 0 && v6: // neighbor solicitation or advertisement
		// A solicitation asks about a unicast target; an advertisement
		// (the answer to one) claims it.
		target := pick(append(mine, linkLocal(src)), "fd00::200", "fd00::c", "fd00::a", "fd00::5")
		n, err := packet.BuildNeighborSolicit(b, src, from, target)
		if err != nil {
			t.Fatal(err)
		}
		if r.IntN(2) == 0 {
			var ns packet.Parsed
			ns.Decode(b[:n])
			na := make([]byte, 256)
			if n, err = packet.BuildNeighborAdvert(na, &ns, src, false); err != nil {
				t.Fatal(err)
			}
			if r.IntN(2) == 0 {
				// From its own address, claiming another's.
				other := netip.MustParseAddr([]string{"fd00::a", "fd00::200", "fd00::77"}[r.IntN(3)]).As16()
				copy(na[14+40+8:14+40+24], other[:])
			}
			return na[:n]
		}
		return b[:n]
	}
	pr := &packet.Probe{EthSrc: src, EthDst: dmac, Src: from, Dst: to, Length: 80}
	switch r.IntN(5) {
	case 0:
		pr.Proto = packet.IPProtoTCP
	case 1:
		pr.Proto = packet.IPProtoUDP
	case 2: // DHCP and DHCPv6, both ways
		pr.Proto = packet.IPProtoUDP
		if v6 {
			pr.SrcPort, pr.DstPort = 546, 547
		} else {
			pr.SrcPort, pr.DstPort = 68, 67
		}
		if r.IntN(2) == 0 {
			pr.SrcPort, pr.DstPort = pr.DstPort, pr.SrcPort
		}
	default:
		pr.Proto = packet.IPProtoICMPv4
		if v6 {
			pr.Proto = packet.IPProtoICMPv6
		}
	}
	if pr.SrcPort == 0 && pr.Proto != packet.IPProtoICMPv4 && pr.Proto != packet.IPProtoICMPv6 {
		pr.SrcPort = uint16([]int{22, 80, 1000, 40000}[r.IntN(4)])
		pr.DstPort = uint16([]int{22, 53, 80, 180, 1100, 546}[r.IntN(6)])
	}
	n, err := packet.BuildProbe(b, pr)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Proto == packet.IPProtoICMPv6 && r.IntN(2) == 0 {
		// Another ICMPv6 type: router solicitations and advertisements
		// among them (the parser reads no checksum).
		b[14+40] = []byte{1, 128, 129, 130, 133, 134, 137}[r.IntN(7)]
	}
	if pr.Proto == packet.IPProtoICMPv4 && r.IntN(2) == 0 {
		b[14+20], b[14+21] = []byte{0, 3, 8, 11}[r.IntN(4)], byte(r.IntN(2))
	}
	return b[:n]
}

// reply is the answer of the port a frame was addressed to (nil if it
// is none or the frame has no answer): what connection tracking lets
// through as return traffic.
func (w *secWorld) reply(t *testing.T, frame []byte) (int, []byte) {
	var p packet.Parsed
	p.Decode(frame)
	to := -1
	for i, q := range w.ports {
		if q.MACAddress == p.EthDst {
			to = i
		}
	}
	if to < 0 || (p.L3 != packet.L3IPv4 && p.L3 != packet.L3IPv6) {
		return 0, nil
	}
	b := make([]byte, 256)
	var n int
	var err error
	switch {
	case p.L4 == packet.L4TCP || p.L4 == packet.L4UDP:
		n, err = packet.BuildProbe(b, &packet.Probe{EthSrc: p.EthDst, EthDst: p.EthSrc, Src: p.DstIP, Dst: p.SrcIP, Proto: p.IPProto,
			SrcPort: p.DstPort, DstPort: p.SrcPort, TCPFlags: packet.TCPSyn | packet.TCPAck, Length: 80})
	case p.L4 == packet.L4ICMPv4 && p.ICMPType == 8:
		n, err = packet.BuildICMPv4EchoReply(b, &p)
	case p.L4 == packet.L4ICMPv6 && p.ICMPType == 128:
		n, err = packet.BuildICMPv6EchoReply(b, &p)
	default:
		return 0, nil
	}
	if errors.Is(err, packet.ErrNotAnswerable) {
		return 0, nil // an echo to a broadcast address, or one that was a reply
	}
	if err != nil {
		t.Fatal(err)
	}
	return to, b[:n]
}

// outcome renders what a walk decided, by port ids (not indexes).
func outcome(topo *sim.Topology, res *sim.Result) string {
	var acts []string
	for _, a := range res.Actions() {
		id := ""
		if a.Type == flow.ActOutput || a.Type == flow.ActEncap {
			id, a.Port = topo.PortID(a.Port), 0
		}
		acts = append(acts, fmt.Sprintf("%+v %s", a, id))
	}
	return fmt.Sprintf("%s %s slow=%v gen=%d %s", res.Verdict, res.Reason, res.SlowPath, len(res.Generated()), strings.Join(acts, "; "))
}

// TestPortSecurityByReferenceMatchesLegacyChains: for random groups,
// rules and ports, a port's filter by reference (the simulation's compiled
// port security, its groups' address sets from the ports' member
// addresses) decides every frame as the port's own stored chains did —
// same verdict, reason, actions and slow-path flag — with connection
// tracking on, replies included.
func TestPortSecurityByReferenceMatchesLegacyChains(t *testing.T) {
	frames, forwarded := 0, 0
	for seed := range uint64(40) {
		w := newSecWorld(seed)
		var topos [2]*sim.Topology
		var sims [2]*sim.Simulator
		for k, legacy := range []bool{true, false} {
			topo, err := sim.Build(w.objects(t, legacy))
			if err != nil {
				t.Fatalf("seed %d legacy %v: %v", seed, legacy, err)
			}
			topos[k] = topo
			sims[k] = sim.NewSimulator(topo, sim.Config{HostID: diffHost, FlowState: flowstate.New(flowstate.Config{})})
		}
		res := [2]*sim.Result{sim.NewResult(), sim.NewResult()}
		var reply []byte
		replyIn := 0
		for step := range 400 {
			in := w.r.IntN(len(w.ports))
			b := w.frame(t, in)
			if reply != nil {
				in, b, reply = replyIn, reply, nil
			}
			var got [2]string
			for k := range 2 {
				res[k].Reset()
				sims[k].Simulate(&sim.Input{InPortID: w.ports[in].ID, Frame: b, Now: int64(step)}, res[k])
				got[k] = outcome(topos[k], res[k])
			}
			frames++
			if got[0] != got[1] {
				t.Fatalf("seed %d frame %d from port %d (%x):\n legacy: %s\n by ref: %s\nport %+v\ngroups %v", seed, step, in, b, got[0], got[1], w.ports[in], w.in[in].Groups)
			}
			if res[0].Verdict == sim.Forward {
				forwarded++
				if w.r.IntN(2) == 0 {
					replyIn, reply = w.reply(t, b)
				}
			}
		}
	}
	// Both outcomes must be exercised, or the comparison proves little.
	if forwarded < frames/10 || forwarded > frames*9/10 {
		t.Errorf("%d of %d frames forwarded: the random frames do not exercise both verdicts", forwarded, frames)
	}
	t.Logf("%d frames, %d forwarded", frames, forwarded)
}
