package packet

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
)

// seedFrames is the fuzz seed corpus: a valid frame of every kind the
// package decodes and builds.
func seedFrames() [][]byte {
	seeds := [][]byte{
		tcp4Frame(), udp4Frame(), tcp6Frame(), udp6Frame(), echo4Frame(), echo6Frame(), arpReqFrame(), nsFrame(),
		vxlanFrame(0x123456, tcp4Frame()), vxlanFrame(1, vxlanFrame(2, arpReqFrame())), greFrame(7, nsFrame()),
		cat(ethH(macR, macA, EtherTypeIPv4, 0x88a86064, 0x810000c8), tcp4Frame()[14:]),
		fragment4(tcp4Frame(), true, 0, 44), fragment4(tcp4Frame(), false, 100, 28),
		v6Frame(IPProtoFragment, frag6(IPProtoTCP, 0, true, 7), tcpH(c6, s6, 3, 4, 0, 0, TCPSyn, nil)),
		v6Frame(IPProtoHopByHop, ext6(IPProtoDestOpts, 0), ext6(IPProtoRouting, 1), ext6(IPProtoUDP, 0), udpH(c6, s6, 1, 2, []byte("abc"))),
		ndFrame(s6, c6, ICMPv6NeighborAdvert, uint32(NDSolicited)<<24, cat(ap(s6).AsSlice(), []byte{2, 1}, macB[:]), 255),
		ndFrame(c6, "ff02::2", ICMPv6RouterSolicit, 0, cat([]byte{1, 1}, macA[:]), 255),
		cat(ethH(macR, macA, 0x88cc), make([]byte, 46)),
	}
	buf := make([]byte, 2048)
	for _, b := range []builder{
		func(d []byte) (int, error) { return BuildICMPv4TimeExceeded(d, decode(tcp4Frame()), ap("10.0.0.254")) },
		func(d []byte) (int, error) {
			return BuildICMPv6PacketTooBig(d, decode(tcp6Frame()), ap("2001:db8::fe"), 1280)
		},
		func(d []byte) (int, error) { return BuildTCPReset(d, decode(tcp4Frame())) },
	} {
		n, err := b(buf)
		if err != nil {
			panic(err)
		}
		seeds = append(seeds, bytes.Clone(buf[:n]))
	}
	return seeds
}

// checkInvariants holds a decode of frame to what Parsed promises.
func checkInvariants(t *testing.T, d *Decoder, frame []byte, depth int) {
	orig := bytes.Clone(frame)
	var p Parsed
	d.Decode(&p, frame)
	if !bytes.Equal(frame, orig) {
		t.Fatal("Decode modified the frame")
	}
	if p.Drop >= numDrops || p.L3 > L3IPv6 || p.L4 > L4GRE || p.Tunnel > TunnelGRE || p.Frag > FragLater {
		t.Fatalf("enum out of range: %+v", p)
	}
	if p.Drop == DropNone && p.L3 == L3None {
		t.Fatal("no drop but no L3")
	}
	n := len(frame)
	if p.L3Off != 0 && (p.L3Off < EthHeaderLen || p.L3Off > n || p.VLANs > 2) {
		t.Fatalf("L3Off %d VLANs %d in a %d-byte frame", p.L3Off, p.VLANs, n)
	}
	if p.isIP() && !(p.L3Off < p.L4Off && p.L4Off <= p.L3End && p.L3End <= n) {
		t.Fatalf("IP offsets L3 %d L4 %d end %d in a %d-byte frame", p.L3Off, p.L4Off, p.L3End, n)
	}
	if p.L4 != L4None && !p.isIP() {
		t.Fatal("L4 without IP")
	}
	if p.L4 != L4None && p.Frag == FragLater {
		t.Fatal("L4 header in a later fragment")
	}
	switch p.L4 {
	case L4TCP, L4UDP, L4ICMPv4, L4ICMPv6:
		if !(p.L4Off < p.PayloadOff && p.PayloadOff <= p.end && p.end <= p.L3End) {
			t.Fatalf("payload offsets %d..%d outside L4 %d..%d", p.PayloadOff, p.end, p.L4Off, p.L3End)
		}
	}
	_ = p.Payload()
	if p.IsICMPError() && !(p.ICMPInnerOff == p.L4Off+icmpHdrLen && p.ICMPInnerOff+IPv4MinHeaderLen <= p.L3End) {
		t.Fatalf("ICMP inner offset %d outside %d..%d", p.ICMPInnerOff, p.L4Off, p.L3End)
	}
	if p.Tunnel != TunnelNone {
		if p.Drop != DropNone || p.Frag != FragNone || !(p.L4Off < p.InnerOff && p.InnerOff <= p.end) {
			t.Fatalf("tunnel inner offset %d outside %d..%d (drop %v)", p.InnerOff, p.L4Off, p.end, p.Drop)
		}
		if p.Tunnel == TunnelVXLAN && p.TunnelID > MaxTunnelKey {
			t.Fatalf("VNI %#x wider than 24 bits", p.TunnelID)
		}
		if depth < 3 {
			checkInvariants(t, d, p.Inner(), depth+1)
		}
	}
	// Deterministic, and nothing left over from the previous frame.
	var q Parsed
	q.Decode(tcp6Frame())
	d.Decode(&q, bytes.Clone(frame))
	q.b, p.b = nil, nil
	if !reflect.DeepEqual(p, q) {
		t.Fatalf("two decodes of one frame differ:\n%+v\n%+v", p, q)
	}
	_ = p.String()
}

// checkBuilders answers the decoded frame with every builder that applies
// and decodes the answer: a builder must never panic, and what it builds
// must decode to what it meant.
func checkBuilders(t *testing.T, frame []byte) {
	var p Parsed
	p.Decode(frame)
	buf := make([]byte, 1600)
	var r Parsed
	if n, err := BuildARPReply(buf, &p, macB); err == nil {
		r.Decode(buf[:n])
		if r.Drop != DropNone || !r.IsARPReply() || r.ARPSenderIP != p.ARPTargetIP || r.ARPTargetIP != p.ARPSenderIP || r.VLAN != p.VLAN {
			t.Fatalf("ARP reply round trip: %v", &r)
		}
	}
	if n, err := BuildICMPv4EchoReply(buf, &p); err == nil {
		r.Decode(buf[:n])
		if r.Drop != DropNone || !r.IsEchoReply() || r.ICMPEchoID != p.ICMPEchoID || !bytes.Equal(r.Payload(), p.Payload()) {
			t.Fatalf("echo reply round trip: %v", &r)
		}
	}
	if n, err := BuildICMPv6EchoReply(buf, &p); err == nil {
		r.Decode(buf[:n])
		if r.Drop != DropNone || !r.IsEchoReply() || r.ICMPEchoSeq != p.ICMPEchoSeq || !bytes.Equal(r.Payload(), p.Payload()) {
			t.Fatalf("echo6 reply round trip: %v", &r)
		}
	}
	if n, err := BuildNeighborAdvert(buf, &p, macB, false); err == nil {
		r.Decode(buf[:n])
		if r.Drop != DropNone || !r.IsNeighborAdvert() || r.NDTarget != p.NDTarget || r.NDLinkAddr != macB {
			t.Fatalf("NA round trip: %v", &r)
		}
	}
	if n, err := BuildTCPReset(buf, &p); err == nil {
		r.Decode(buf[:n])
		if r.Drop != DropNone || !r.IsTCPRst() || r.SrcPort != p.DstPort || r.DstIP != p.SrcIP {
			t.Fatalf("RST round trip: %v", &r)
		}
	}
	if p.L3 == L3IPv4 && p.L4 == L4UDP {
		// Answer with the same payload, from where it was sent to.
		pl := copy(buf[UDP4HeaderLen:], p.Payload())
		h := UDP4{EthSrc: p.EthDst, EthDst: p.EthSrc, Src: p.DstIP, Dst: p.SrcIP, SrcPort: p.DstPort, DstPort: p.SrcPort}
		if n, err := BuildUDP4(buf, h, pl); err == nil {
			r.Decode(buf[:n])
			verifies, _ := l4Verifies(&r)
			if r.Drop != DropNone || r.L4 != L4UDP || !verifies || r.SrcPort != p.DstPort || r.DstIP != p.SrcIP || !bytes.Equal(r.Payload(), p.Payload()) {
				t.Fatalf("UDP round trip: %v", &r)
			}
		} else if pl == len(p.Payload()) {
			t.Fatalf("BuildUDP4 for a %d-byte payload: %v", pl, err)
		}
	}
	for _, b := range []func() (int, error){
		func() (int, error) { return BuildICMPv4TimeExceeded(buf, &p, ap("10.9.9.9")) },
		func() (int, error) { return BuildICMPv4FragNeeded(buf, &p, ap("10.9.9.9"), 1400) },
		func() (int, error) { return BuildICMPv6TimeExceeded(buf, &p, ap("2001:db8::99")) },
		func() (int, error) { return BuildICMPv6PacketTooBig(buf, &p, ap("2001:db8::99"), 1280) },
	} {
		n, err := b()
		if err != nil {
			continue
		}
		r.Decode(buf[:n])
		if r.Drop != DropNone || !r.IsICMPError() || r.DstIP != p.SrcIP {
			t.Fatalf("ICMP error round trip: %v", &r)
		}
		if !bytes.Equal(buf[r.ICMPInnerOff:n], frame[p.L3Off:p.L3Off+(n-r.ICMPInnerOff)]) {
			t.Fatal("ICMP error does not quote the start of the original datagram")
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s, uint16(DefaultVXLANPort))
	}
	f.Fuzz(func(t *testing.T, frame []byte, vxlanPort uint16) {
		d := Decoder{VXLANPort: vxlanPort}
		checkInvariants(t, &d, frame, 0)
		checkBuilders(t, frame)
		var p Parsed
		p.Decode(frame)
		if p.Tunnel != TunnelNone {
			checkBuilders(t, p.Inner())
		}
	})
}

// l4Verifies reports whether the decoded frame's L4 checksum verifies;
// ok is false where there is nothing to verify.
func l4Verifies(p *Parsed) (verifies, ok bool) {
	if p.Drop != DropNone || p.Frag != FragNone {
		return false, false
	}
	seg := p.b[p.L4Off:p.L3End]
	switch p.L4 {
	case L4TCP, L4ICMPv6:
	case L4UDP:
		if p.L3 == L3IPv4 && be16(seg[6:]) == 0 {
			return false, false
		}
	case L4ICMPv4:
		return Checksum(seg, 0) == 0, true
	default:
		return false, false
	}
	return Checksum(seg, PseudoHeaderSum(p.SrcIP, p.DstIP, p.IPProto, len(seg))) == 0, true
}

func FuzzRewrite(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s, []byte{192, 0, 2, 9}, []byte{0x20, 1, 0xd, 0xb8, 15: 9}, uint16(8080), uint8(0xff))
	}
	f.Fuzz(func(t *testing.T, frame, a4, a6 []byte, port uint16, ops uint8) {
		var p Parsed
		p.Decode(frame)
		ipOK := p.IPChecksumOK
		l4OK, l4Has := l4Verifies(&p)
		addr, _ := netip.AddrFromSlice(a4)
		if p.L3 == L3IPv6 {
			addr, _ = netip.AddrFromSlice(a6)
		}
		before := bytes.Clone(frame)
		var changed bool
		do := func(bit uint8, op func() bool) {
			if ops&bit != 0 && op() {
				changed = true
			}
		}
		do(1, func() bool { return p.SetSrcIP(addr) })
		do(2, func() bool { return p.SetDstIP(addr) })
		do(4, func() bool { return p.SetSrcPort(port) })
		do(8, func() bool { return p.SetDstPort(port) })
		do(16, p.DecTTL)
		do(32, func() bool { return p.SetICMPEchoID(port) })
		do(64, func() bool { return p.SetEthSrc(macB) })
		do(128, func() bool { return p.SetEthDst(macA) })
		if !changed {
			if !bytes.Equal(frame, before) {
				t.Fatal("refused rewrites changed the frame")
			}
			return
		}
		// What Parsed says is what a fresh decode of the frame says. (Not
		// the whole FlowKey: a rewrite can legitimately reclassify, as a
		// hop-limit decrement invalidates ND or a port becomes VXLAN's.)
		var q Parsed
		q.Decode(frame)
		if q.EthSrc != p.EthSrc || q.EthDst != p.EthDst || q.SrcIP != p.SrcIP || q.DstIP != p.DstIP || q.TTL != p.TTL {
			t.Fatalf("Parsed out of step with the rewritten frame:\n%v\n%v", &p, &q)
		}
		if q.HasPorts() && (q.SrcPort != p.SrcPort || q.DstPort != p.DstPort) {
			t.Fatalf("ports out of step: %v, %v", &p, &q)
		}
		if q.IsEchoRequest() && q.ICMPEchoID != p.ICMPEchoID {
			t.Fatalf("echo id out of step: %v, %v", &p, &q)
		}
		if q.L3 == L3IPv4 && q.IPChecksumOK != ipOK {
			t.Fatalf("IPv4 header checksum validity changed from %v", ipOK)
		}
		if l4Has {
			if v, _ := l4Verifies(&p); v != l4OK {
				t.Fatalf("L4 checksum validity changed from %v", l4OK)
			}
		}
	})
}
