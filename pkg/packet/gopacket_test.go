package packet

// Cross-checks against github.com/gopacket/gopacket/layers, an independent
// decoder: every frame the tests build by hand, frames gopacket itself
// serialises from random field values, and the output of every builder
// (whose checksums gopacket verifies). gopacket is a test-only dependency.

import (
	"bytes"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func gpDecode(b []byte) gopacket.Packet {
	return gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true, Lazy: false})
}

func gpAddr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	if a.Is4In6() {
		a = a.Unmap()
	}
	return a
}

var l4LayerType = map[L4]gopacket.LayerType{
	L4TCP: layers.LayerTypeTCP, L4UDP: layers.LayerTypeUDP, L4GRE: layers.LayerTypeGRE,
	L4ICMPv4: layers.LayerTypeICMPv4, L4ICMPv6: layers.LayerTypeICMPv6,
}

// crossCheck compares what both decoders make of frame, layer by layer, for
// the layers this package decoded.
func crossCheck(t *testing.T, frame []byte) {
	t.Helper()
	p := decode(frame)
	g := gpDecode(frame)
	if p.L3Off == 0 {
		return
	}
	eth, _ := g.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth == nil {
		t.Fatalf("gopacket found no Ethernet layer where we did")
	}
	eq(t, "gopacket eth src", p.EthSrc, MAC(eth.SrcMAC))
	eq(t, "gopacket eth dst", p.EthDst, MAC(eth.DstMAC))
	var tags []VLANTag
	for _, l := range g.Layers()[1:] { // tags directly after the outer Ethernet header
		q, ok := l.(*layers.Dot1Q)
		if !ok {
			break
		}
		tags = append(tags, VLANTag{VID: q.VLANIdentifier, PCP: q.Priority, DEI: q.DropEligible})
	}
	if len(tags) == int(p.VLANs) {
		for i := range tags {
			tags[i].TPID = p.VLAN[i].TPID
			eq(t, "gopacket vlan", p.VLAN[i], tags[i])
		}
	} else if p.Drop != DropTooManyVLANs {
		t.Errorf("gopacket found %d VLAN tags, we %d", len(tags), p.VLANs)
	}

	switch p.L3 {
	case L3ARP:
		a := g.Layer(layers.LayerTypeARP).(*layers.ARP)
		eq(t, "gopacket arp op", p.ARPOp, a.Operation)
		eq(t, "gopacket arp sha", p.ARPSenderMAC, MAC(a.SourceHwAddress))
		eq(t, "gopacket arp spa", p.ARPSenderIP, gpAddr(a.SourceProtAddress))
		eq(t, "gopacket arp tha", p.ARPTargetMAC, MAC(a.DstHwAddress))
		eq(t, "gopacket arp tpa", p.ARPTargetIP, gpAddr(a.DstProtAddress))
	case L3IPv4:
		ip := g.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		eq(t, "gopacket ipv4 src", p.SrcIP, gpAddr(ip.SrcIP))
		eq(t, "gopacket ipv4 dst", p.DstIP, gpAddr(ip.DstIP))
		eq(t, "gopacket ipv4 ttl", p.TTL, ip.TTL)
		eq(t, "gopacket ipv4 tos", p.TOS, ip.TOS)
		eq(t, "gopacket ipv4 id", p.FragID, uint32(ip.Id))
		eq(t, "gopacket ipv4 proto", p.IPProto, uint8(ip.Protocol))
		eq(t, "gopacket ipv4 df", p.DontFrag, ip.Flags&layers.IPv4DontFragment != 0)
		eq(t, "gopacket ipv4 mf", p.MoreFrags, ip.Flags&layers.IPv4MoreFragments != 0)
		eq(t, "gopacket ipv4 frag offset", p.FragOff, ip.FragOffset)
		eq(t, "gopacket ipv4 header length", p.L4Off-p.L3Off, int(ip.IHL)*4)
		eq(t, "gopacket ipv4 length", p.L3End-p.L3Off, int(ip.Length))
		_, v := ip.VerifyChecksum()
		eq(t, "gopacket ipv4 checksum ok", p.IPChecksumOK, v.Valid)
	case L3IPv6:
		ip := g.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		eq(t, "gopacket ipv6 src", p.SrcIP, gpAddr(ip.SrcIP))
		eq(t, "gopacket ipv6 dst", p.DstIP, gpAddr(ip.DstIP))
		eq(t, "gopacket ipv6 hop limit", p.TTL, ip.HopLimit)
		eq(t, "gopacket ipv6 traffic class", p.TOS, ip.TrafficClass)
		eq(t, "gopacket ipv6 flow label", p.FlowLabel, ip.FlowLabel)
		eq(t, "gopacket ipv6 length", p.L3End-p.L3Off, 40+int(ip.Length))
		if f, ok := g.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment); ok {
			eq(t, "gopacket ipv6 frag offset", p.FragOff, f.FragmentOffset)
			eq(t, "gopacket ipv6 frag id", p.FragID, f.Identification)
			eq(t, "gopacket ipv6 frag m", p.MoreFrags, f.MoreFragments)
		}
	}

	if p.Frag != FragNone {
		return // gopacket does not decode L4 inside fragments
	}
	if p.L4 != L4None && p.L4 != L4Other && g.Layer(l4LayerType[p.L4]) == nil {
		t.Fatalf("gopacket found no %v layer where we did", p.L4)
	}
	switch p.L4 {
	case L4TCP:
		tcp := g.Layer(layers.LayerTypeTCP).(*layers.TCP)
		eq(t, "gopacket tcp ports", [2]uint16{p.SrcPort, p.DstPort}, [2]uint16{uint16(tcp.SrcPort), uint16(tcp.DstPort)})
		eq(t, "gopacket tcp seq", p.TCPSeq, tcp.Seq)
		eq(t, "gopacket tcp ack", p.TCPAck, tcp.Ack)
		eq(t, "gopacket tcp data offset", p.PayloadOff-p.L4Off, int(tcp.DataOffset)*4)
		var fl uint8
		for i, b := range []bool{tcp.FIN, tcp.SYN, tcp.RST, tcp.PSH, tcp.ACK, tcp.URG, tcp.ECE, tcp.CWR} {
			if b {
				fl |= 1 << i
			}
		}
		eq(t, "gopacket tcp flags", p.TCPFlags, fl)
		eq(t, "gopacket tcp payload", string(p.Payload()), string(tcp.Payload))
	case L4UDP:
		udp := g.Layer(layers.LayerTypeUDP).(*layers.UDP)
		eq(t, "gopacket udp ports", [2]uint16{p.SrcPort, p.DstPort}, [2]uint16{uint16(udp.SrcPort), uint16(udp.DstPort)})
		eq(t, "gopacket udp length", len(p.Payload())+8, int(udp.Length))
	case L4ICMPv4:
		ic := g.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		eq(t, "gopacket icmp type", p.ICMPType, ic.TypeCode.Type())
		eq(t, "gopacket icmp code", p.ICMPCode, ic.TypeCode.Code())
		if p.IsEchoRequest() || p.IsEchoReply() {
			eq(t, "gopacket icmp echo", [2]uint16{p.ICMPEchoID, p.ICMPEchoSeq}, [2]uint16{ic.Id, ic.Seq})
		}
	case L4ICMPv6:
		ic := g.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
		eq(t, "gopacket icmp6 type", p.ICMPType, ic.TypeCode.Type())
		eq(t, "gopacket icmp6 code", p.ICMPCode, ic.TypeCode.Code())
		if e, ok := g.Layer(layers.LayerTypeICMPv6Echo).(*layers.ICMPv6Echo); ok {
			eq(t, "gopacket icmp6 echo", [2]uint16{p.ICMPEchoID, p.ICMPEchoSeq}, [2]uint16{e.Identifier, e.SeqNumber})
		}
		var opts layers.ICMPv6Options
		if ns, ok := g.Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation); ok {
			eq(t, "gopacket ns target", p.NDTarget, gpAddr(ns.TargetAddress))
			opts = ns.Options
		}
		if na, ok := g.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement); ok {
			eq(t, "gopacket na target", p.NDTarget, gpAddr(na.TargetAddress))
			eq(t, "gopacket na flags", p.NDFlags, na.Flags&0xe0)
			opts = na.Options
		}
		for _, o := range opts {
			if (o.Type == layers.ICMPv6OptSourceAddress || o.Type == layers.ICMPv6OptTargetAddress) && len(o.Data) == 6 {
				eq(t, "gopacket nd link addr", p.NDLinkAddr, MAC(o.Data))
			}
		}
	case L4GRE:
		gre := g.Layer(layers.LayerTypeGRE).(*layers.GRE)
		if p.Tunnel == TunnelGRE {
			eq(t, "gopacket gre proto", p.GREProto, uint16(gre.Protocol))
			eq(t, "gopacket gre key present", p.GREKeyPresent, gre.KeyPresent)
			eq(t, "gopacket gre key", p.TunnelID, gre.Key)
			eq(t, "gopacket gre seq", p.GRESeq, gre.Seq)
		}
	}
	if p.Tunnel == TunnelVXLAN {
		vx := g.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		eq(t, "gopacket vxlan vni", p.TunnelID, vx.VNI)
		eq(t, "gopacket vxlan I", true, vx.ValidIDFlag)
		eq(t, "gopacket vxlan inner", string(p.Inner()), string(vx.Payload))
		crossCheck(t, p.Inner())
	}
}

// verifyGopacketChecksums checks every checksum in frame with gopacket.
func verifyGopacketChecksums(t *testing.T, frame []byte) {
	t.Helper()
	g := gpDecode(frame)
	var nl gopacket.NetworkLayer
	for _, l := range g.Layers() {
		var res gopacket.ChecksumVerificationResult
		var err error
		switch l := l.(type) {
		case *layers.IPv4:
			nl = l
			err, res = l.VerifyChecksum()
		case *layers.IPv6:
			nl = l
			continue
		case *layers.TCP:
			l.SetNetworkLayerForChecksum(nl)
			err, res = l.VerifyChecksum()
		case *layers.UDP:
			l.SetNetworkLayerForChecksum(nl)
			err, res = l.VerifyChecksum()
		case *layers.ICMPv4:
			err, res = l.VerifyChecksum()
		case *layers.ICMPv6:
			l.SetNetworkLayerForChecksum(nl)
			err, res = l.VerifyChecksum()
		default:
			continue
		}
		if err != nil || !res.Valid {
			t.Errorf("gopacket: %v checksum %#x, want %#x (%v)", l.LayerType(), res.Actual, res.Correct, err)
		}
	}
}

func TestGopacketHandBuiltFrames(t *testing.T) {
	frames := [][]byte{
		tcp4Frame(), udp4Frame(), tcp6Frame(), udp6Frame(), echo4Frame(), echo6Frame(), arpReqFrame(), nsFrame(),
		vxlanFrame(0x123456, tcp6Frame()), greFrame(99, udp4Frame()),
		cat(ethH(macR, macA, EtherTypeIPv6, 0x88a86064, 0x810000c8), tcp6Frame()[14:]),
		fragment4(tcp4Frame(), true, 0, 44), fragment4(tcp4Frame(), false, 100, 28),
		v6Frame(IPProtoFragment, frag6(IPProtoTCP, 0, true, 7), tcpH(c6, s6, 3, 4, 0, 0, TCPSyn, nil)),
		v6Frame(IPProtoHopByHop, ext6(IPProtoDestOpts, 0), ext6(IPProtoUDP, 1), udpH(c6, s6, 1, 2, []byte("abc"))),
	}
	for _, f := range frames {
		crossCheck(t, f)
		verifyGopacketChecksums(t, f)
	}
}

// randomGopacketFrame serialises a random packet with gopacket.
func randomGopacketFrame(r *rand.Rand) []byte {
	mac := func() net.HardwareAddr {
		m := make(net.HardwareAddr, 6)
		for i := range m {
			m[i] = byte(r.Uint32())
		}
		return m
	}
	ip := func(n int) net.IP {
		b := make(net.IP, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	payload := make([]byte, r.IntN(64))
	for i := range payload {
		payload[i] = byte(r.Uint32())
	}
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: mac(), DstMAC: mac()}
	ls = append(ls, eth)
	next := func(et layers.EthernetType) {
		if q, ok := ls[len(ls)-1].(*layers.Dot1Q); ok {
			q.Type = et
		} else {
			eth.EthernetType = et
		}
	}
	for i := r.IntN(3); i > 0; i-- {
		next(layers.EthernetTypeDot1Q)
		ls = append(ls, &layers.Dot1Q{Priority: uint8(r.IntN(8)), DropEligible: r.IntN(2) == 0, VLANIdentifier: uint16(r.IntN(4096))})
	}
	if r.IntN(8) == 0 {
		next(layers.EthernetTypeARP)
		ls = append(ls, &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: uint16(1 + r.IntN(2)), SourceHwAddress: mac(), SourceProtAddress: ip(4), DstHwAddress: mac(), DstProtAddress: ip(4)})
		return serialize(ls)
	}
	var nl gopacket.NetworkLayer
	v6 := r.IntN(2) == 0
	proto := []layers.IPProtocol{layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolICMPv4}[r.IntN(3)]
	if v6 {
		if proto == layers.IPProtocolICMPv4 {
			proto = layers.IPProtocolICMPv6
		}
		next(layers.EthernetTypeIPv6)
		ip6 := &layers.IPv6{Version: 6, TrafficClass: uint8(r.Uint32()), FlowLabel: r.Uint32() & 0xfffff, NextHeader: proto, HopLimit: uint8(r.Uint32()), SrcIP: ip(16), DstIP: ip(16)}
		ip6.SrcIP[0] = 0x20 // unicast: ND validity rules do not apply
		nl = ip6
		ls = append(ls, ip6)
	} else {
		next(layers.EthernetTypeIPv4)
		ip4 := &layers.IPv4{Version: 4, TOS: uint8(r.Uint32()), Id: uint16(r.Uint32()), TTL: uint8(r.Uint32()), Protocol: proto, SrcIP: ip(4), DstIP: ip(4)}
		if r.IntN(2) == 0 {
			ip4.Flags = layers.IPv4DontFragment
		}
		if r.IntN(4) == 0 {
			ip4.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		}
		nl = ip4
		ls = append(ls, ip4)
	}
	switch proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(r.Uint32()), DstPort: layers.TCPPort(r.Uint32()), Seq: r.Uint32(), Ack: r.Uint32(),
			SYN: r.IntN(2) == 0, ACK: r.IntN(2) == 0, FIN: r.IntN(4) == 0, RST: r.IntN(8) == 0, PSH: r.IntN(2) == 0, ECE: r.IntN(4) == 0, CWR: r.IntN(4) == 0, Window: uint16(r.Uint32())}
		if r.IntN(2) == 0 {
			tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}}}
		}
		tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp)
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(r.Uint32()), DstPort: layers.UDPPort(r.Uint32())}
		if udp.DstPort == DefaultVXLANPort {
			udp.DstPort++
		}
		if r.IntN(4) == 0 { // VXLAN around a random inner frame
			udp.DstPort = DefaultVXLANPort
			payload = append([]byte{0x08, 0, 0, 0, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), 0}, randomGopacketFrame(r)...)
		}
		udp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, udp)
	case layers.IPProtocolICMPv4:
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(uint8(r.IntN(2)*8), 0), Id: uint16(r.Uint32()), Seq: uint16(r.Uint32())})
	case layers.IPProtocolICMPv6:
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(uint8(128+r.IntN(2)), 0)}
		ic.SetNetworkLayerForChecksum(nl)
		ls = append(ls, ic, &layers.ICMPv6Echo{Identifier: uint16(r.Uint32()), SeqNumber: uint16(r.Uint32())})
	}
	ls = append(ls, gopacket.Payload(payload))
	return serialize(ls)
}

func serialize(ls []gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(err)
	}
	return bytes.Clone(buf.Bytes())
}

func TestGopacketRandomFrames(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for i := 0; i < n; i++ {
		f := randomGopacketFrame(r)
		p := decode(f)
		if p.Drop != DropNone {
			t.Fatalf("gopacket-serialised frame dropped (%v): %x", p.Drop, f)
		}
		crossCheck(t, f)
		if t.Failed() {
			t.Fatalf("frame %x", f)
		}
	}
}

func TestGopacketVerifiesBuilders(t *testing.T) {
	router4, router6 := ap("10.0.0.254"), ap("2001:db8::fe")
	outs := []builder{
		func(d []byte) (int, error) { return BuildARPReply(d, decode(arpReqFrame()), macB) },
		func(d []byte) (int, error) { return BuildARPRequest(d, macB, ap(s4), ap(c4)) },
		func(d []byte) (int, error) { return BuildICMPv4EchoReply(d, decode(echo4Frame())) },
		func(d []byte) (int, error) { return BuildICMPv4TimeExceeded(d, decode(tcp4Frame()), router4) },
		func(d []byte) (int, error) { return BuildICMPv4FragNeeded(d, decode(bigTCP4()), router4, 1400) },
		func(d []byte) (int, error) { return BuildICMPv6EchoReply(d, decode(echo6Frame())) },
		func(d []byte) (int, error) { return BuildICMPv6PacketTooBig(d, decode(tcp6Frame()), router6, 1280) },
		func(d []byte) (int, error) { return BuildICMPv6Unreachable(d, decode(udp6Frame()), router6, 4) },
		func(d []byte) (int, error) { return BuildNeighborAdvert(d, decode(nsFrame()), macB, false) },
		func(d []byte) (int, error) { return BuildNeighborSolicit(d, macA, ap(c6), ap(s6)) },
		func(d []byte) (int, error) { return BuildTCPReset(d, decode(tcp4Frame())) },
		func(d []byte) (int, error) { return BuildTCPReset(d, decode(tcp6Frame())) },
		func(d []byte) (int, error) {
			n := copy(d[UDP4HeaderLen:], "odd-length payload")
			return BuildUDP4(d, UDP4{EthSrc: macR, EthDst: macA, Src: ap(s4), Dst: ap(c4), SrcPort: 40000, DstPort: 9}, n)
		},
	}
	for i, b := range outs {
		buf := make([]byte, 2048)
		n, err := b(buf)
		if err != nil {
			t.Fatalf("builder %d: %v", i, err)
		}
		verifyGopacketChecksums(t, buf[:n])
		crossCheck(t, buf[:n])
		if el := gpDecode(buf[:n]).ErrorLayer(); el != nil {
			t.Errorf("builder %d: gopacket cannot decode the output: %v", i, el.Error())
		}
	}
	// NAT rewrites, verified by gopacket too.
	for _, f := range [][]byte{tcp4Frame(), udp6Frame(), echo4Frame(), echo6Frame()} {
		var p Parsed
		p.Decode(f)
		p.SetSrcIP(map[bool]netip.Addr{true: ap("198.51.100.7"), false: ap("fd00::7")}[p.L3 == L3IPv4])
		p.SetSrcPort(12345)
		p.SetICMPEchoID(4242)
		p.DecTTL()
		verifyGopacketChecksums(t, f)
	}
}
