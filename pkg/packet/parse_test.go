package packet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

func decode(b []byte) *Parsed {
	var p Parsed
	p.Decode(b)
	return &p
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// layers checks the always-valid summary of a decode.
func wantLayers(t *testing.T, p *Parsed, drop Drop, l3 L3, l4 L4) {
	t.Helper()
	if p.Drop != drop || p.L3 != l3 || p.L4 != l4 {
		t.Fatalf("decoded drop=%v l3=%v l4=%v, want drop=%v l3=%v l4=%v (%v)", p.Drop, p.L3, p.L4, drop, l3, l4, p)
	}
}

func TestDecodeTCP4(t *testing.T) {
	f := tcp4Frame()
	p := decode(f)
	wantLayers(t, p, DropNone, L3IPv4, L4TCP)
	eq(t, "EthDst", p.EthDst, macR)
	eq(t, "EthSrc", p.EthSrc, macA)
	eq(t, "EtherType", p.EtherType, EtherTypeIPv4)
	eq(t, "L3Off", p.L3Off, 14)
	eq(t, "L4Off", p.L4Off, 34)
	eq(t, "L3End", p.L3End, len(f))
	eq(t, "SrcIP", p.SrcIP, ap(c4))
	eq(t, "DstIP", p.DstIP, ap(s4))
	eq(t, "TTL", p.TTL, 64)
	eq(t, "TOS", p.TOS, 0x10)
	eq(t, "DSCP", p.DSCP(), 4)
	eq(t, "DontFrag", p.DontFrag, true)
	eq(t, "FragID", p.FragID, 0x1234)
	eq(t, "IPChecksumOK", p.IPChecksumOK, true)
	eq(t, "Frag", p.Frag, FragNone)
	eq(t, "SrcPort", p.SrcPort, 40000)
	eq(t, "DstPort", p.DstPort, 80)
	eq(t, "TCPSeq", p.TCPSeq, 1000)
	eq(t, "TCPFlags", p.TCPFlags, TCPSyn)
	eq(t, "IsTCPSyn", p.IsTCPSyn(), true)
	eq(t, "IsTCPSynAck", p.IsTCPSynAck(), false)
	eq(t, "payload", string(p.Payload()), "hello")
	eq(t, "IsBroadcast", p.IsBroadcast(), false)
}

func TestDecodeLayers(t *testing.T) {
	padded := cat(udp4Frame(), make([]byte, 20)) // Ethernet minimum-size padding
	opts := func() []byte {
		u := udpH(c4, s4, 1, 2, nil)
		ip := ip4H(c4, s4, IPProtoUDP, len(u)+4)
		ip[0] = 0x46
		ip = ip4Fix(append(ip, 1, 1, 1, 0)) // NOP NOP NOP EOL
		return cat(ethH(macR, macA, EtherTypeIPv4), ip, u)
	}()
	badCsum := tcp4Frame()
	badCsum[14+10] ^= 0xff

	tests := []struct {
		name  string
		frame []byte
		check func(t *testing.T, p *Parsed)
	}{
		{"udp4 padded", padded, func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropNone, L3IPv4, L4UDP)
			eq(t, "L3End", p.L3End, len(padded)-20)
			eq(t, "payload", string(p.Payload()), "query")
		}},
		{"ipv4 options", opts, func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropNone, L3IPv4, L4UDP)
			eq(t, "L4Off", p.L4Off, 14+24)
			eq(t, "IPChecksumOK", p.IPChecksumOK, true)
			eq(t, "DstPort", p.DstPort, 2)
		}},
		{"ipv4 bad checksum is flagged, not dropped", badCsum, func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropNone, L3IPv4, L4TCP)
			eq(t, "IPChecksumOK", p.IPChecksumOK, false)
		}},
		{"dot1q", cat(ethH(macR, macA, EtherTypeIPv4, uint32(EtherTypeVLAN)<<16|5<<13|0x1000|100), tcp4Frame()[14:]), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropNone, L3IPv4, L4TCP)
			eq(t, "VLANs", p.VLANs, 1)
			eq(t, "VLAN[0]", p.VLAN[0], VLANTag{TPID: EtherTypeVLAN, VID: 100, PCP: 5, DEI: true})
			eq(t, "L3Off", p.L3Off, 18)
			eq(t, "DstPort", p.DstPort, 80)
		}},
		{"qinq", cat(ethH(macR, macA, EtherTypeIPv6, uint32(EtherTypeQinQ)<<16|3<<13|200, uint32(EtherTypeVLAN)<<16|4094), tcp6Frame()[14:]), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropNone, L3IPv6, L4TCP)
			eq(t, "VLANs", p.VLANs, 2)
			eq(t, "outer", p.VLAN[0], VLANTag{TPID: EtherTypeQinQ, VID: 200, PCP: 3})
			eq(t, "inner", p.VLAN[1], VLANTag{TPID: EtherTypeVLAN, VID: 4094})
			eq(t, "L3Off", p.L3Off, 22)
		}},
		{"three tags", cat(ethH(macR, macA, EtherTypeIPv4, 0x88a80001, 0x81000002, 0x81000003), tcp4Frame()[14:]), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropTooManyVLANs, L3None, L4None)
		}},
		{"vlan tag truncated", cat(ethH(macR, macA, EtherTypeVLAN), []byte{0, 1}), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropTruncated, L3None, L4None)
			eq(t, "L3Off", p.L3Off, 0)
		}},
		{"unknown ethertype is L2-only, not a drop", cat(ethH(MAC{0x01, 0x80, 0xc2, 0, 0, 0x0e}, macA, 0x88cc), make([]byte, 46)), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropNone, L3Unknown, L4None)
			eq(t, "EtherType", p.EtherType, 0x88cc)
			eq(t, "IsMulticast", p.IsMulticast(), true)
		}},
		{"arp request", arpReqFrame(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropNone, L3ARP, L4None)
			eq(t, "op", p.ARPOp, ARPRequest)
			eq(t, "sha", p.ARPSenderMAC, macA)
			eq(t, "spa", p.ARPSenderIP, ap(c4))
			eq(t, "tha", p.ARPTargetMAC, MAC{})
			eq(t, "tpa", p.ARPTargetIP, ap(s4))
			eq(t, "IsARPRequest", p.IsARPRequest(), true)
			eq(t, "IsBroadcast", p.IsBroadcast(), true)
			eq(t, "IsGratuitousARP", p.IsGratuitousARP(), false)
		}},
		{"arp not ethernet/ipv4", func() []byte { f := arpReqFrame(); f[14+1] = 6; return f }(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropBadARP, L3None, L4None)
		}},
		{"arp truncated", arpReqFrame()[:14+27], func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropTruncated, L3None, L4None)
		}},
		{"ethertype ipv4 version 6", func() []byte { f := tcp4Frame(); f[14] = 0x65; return f }(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropBadIPVersion, L3None, L4None)
		}},
		{"ethertype ipv6 version 4", func() []byte { f := tcp6Frame(); f[14] = 0x40; return f }(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropBadIPVersion, L3None, L4None)
		}},
		{"ihl 4", func() []byte { f := tcp4Frame(); f[14] = 0x44; return f }(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropBadIHL, L3None, L4None)
		}},
		{"ihl beyond total length", func() []byte { f := tcp4Frame()[:14+40]; f[14] = 0x4f; f[16], f[17] = 0, 40; return f }(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropBadIHL, L3None, L4None)
		}},
		{"total length beyond frame", func() []byte { f := tcp4Frame(); f[16]++; return f }(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropBadIPLength, L3None, L4None)
		}},
		{"ipv6 payload length beyond frame", func() []byte { f := tcp6Frame(); f[18]++; return f }(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropBadIPLength, L3None, L4None)
		}},
		{"tcp6", tcp6Frame(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropNone, L3IPv6, L4TCP)
			eq(t, "SrcIP", p.SrcIP, ap(c6))
			eq(t, "DstIP", p.DstIP, ap(s6))
			eq(t, "FlowLabel", p.FlowLabel, 0x12345)
			eq(t, "TOS", p.TOS, 0xab)
			eq(t, "TTL", p.TTL, 64)
			eq(t, "L4Off", p.L4Off, 54)
			eq(t, "TCPAck", p.TCPAck, 9)
			eq(t, "payload", string(p.Payload()), "data")
		}},
		{"udp6", udp6Frame(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropNone, L3IPv6, L4UDP)
			eq(t, "ports", [2]uint16{p.SrcPort, p.DstPort}, [2]uint16{1000, 2000})
		}},
		{"tcp data offset 4", func() []byte { f := tcp4Frame(); f[34+12] = 4 << 4; return f }(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropBadL4Header, L3IPv4, L4None)
		}},
		{"tcp data offset beyond segment", func() []byte { f := tcp4Frame(); f[34+12] = 15 << 4; return f }(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropBadL4Header, L3IPv4, L4None)
		}},
		{"tcp header short", cat(ethH(macR, macA, EtherTypeIPv4), ip4H(c4, s4, IPProtoTCP, 10), make([]byte, 10)), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropBadL4Header, L3IPv4, L4None)
		}},
		{"udp length 7", func() []byte { f := udp4Frame(); f[34+5] = 7; return f }(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropBadL4Header, L3IPv4, L4None)
		}},
		{"udp length beyond ip payload", func() []byte { f := udp4Frame(); f[34+5]++; return f }(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropBadL4Header, L3IPv4, L4None)
		}},
		{"udp length below ip payload", func() []byte { f := udp4Frame(); f[34+5] -= 2; return f }(), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropNone, L3IPv4, L4UDP)
			eq(t, "payload", string(p.Payload()), "que")
		}},
		{"other ip protocol", cat(ethH(macR, macA, EtherTypeIPv4), ip4H(c4, s4, 132, 12), make([]byte, 12)), func(t *testing.T, p *Parsed) {
			wantLayers(t, p, DropNone, L3IPv4, L4Other)
			eq(t, "IPProto", p.IPProto, 132)
			eq(t, "HasPorts", p.HasPorts(), false)
		}},
		{"empty", nil, func(t *testing.T, p *Parsed) { wantLayers(t, p, DropTruncated, L3None, L4None) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, decode(tc.frame)) })
	}
}

// TestDecodeTruncatedEveryOffset cuts a valid TCP/IPv4 frame at every byte
// offset: each prefix is dropped, with the reason of the layer it cuts.
func TestDecodeTruncatedEveryOffset(t *testing.T) {
	f := tcp4Frame()
	for n := 0; n < len(f); n++ {
		p := decode(f[:n])
		want := DropBadIPLength // IPv4 header complete, datagram not
		if n < 14+20 {
			want = DropTruncated
		}
		if p.Drop != want {
			t.Errorf("frame cut at %d: drop %v, want %v", n, p.Drop, want)
		}
		if p.L4 != L4None {
			t.Errorf("frame cut at %d: L4 %v decoded from a cut frame", n, p.L4)
		}
	}
	wantLayers(t, decode(f), DropNone, L3IPv4, L4TCP)
	// The same with IPv6, VXLAN and ND frames: never DropNone.
	for _, f := range [][]byte{tcp6Frame(), nsFrame(), vxlanFrame(5, tcp4Frame()), greFrame(5, tcp6Frame()), arpReqFrame()} {
		for n := 0; n < len(f); n++ {
			if p := decode(f[:n]); p.Drop == DropNone {
				t.Errorf("%x cut at %d decoded without drop: %v", f, n, p)
			}
		}
	}
}

// fragment4 rewrites an IPv4 frame's flags/offset field and truncates the
// datagram to ipLen bytes.
func fragment4(f []byte, mf bool, off uint16, ipLen int) []byte {
	f = bytes.Clone(f[:14+ipLen])
	fo := off
	if mf {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(f[14+6:], fo)
	binary.BigEndian.PutUint16(f[14+2:], uint16(ipLen))
	ip4Fix(f[14:])
	return f
}

func TestDecodeFragments4(t *testing.T) {
	f := tcp4Frame()
	p := decode(fragment4(f, true, 0, 20+24))
	wantLayers(t, p, DropNone, L3IPv4, L4TCP)
	eq(t, "Frag", p.Frag, FragFirst)
	eq(t, "DstPort", p.DstPort, 80)

	// The short first fragment trick: ports and flags would come in a
	// fragment without a header. Dropped.
	p = decode(fragment4(f, true, 0, 20+8))
	wantLayers(t, p, DropShortFragment, L3IPv4, L4None)
	p = decode(fragment4(udp4Frame(), true, 0, 20+4))
	wantLayers(t, p, DropShortFragment, L3IPv4, L4None)
	// The whole TCP header, options included, must be in the first
	// fragment: options push nothing a filter needs out, but a header
	// that ends in the next fragment is no honest sender's.
	withOpts := bytes.Clone(f)
	withOpts[34+12] = 8 << 4 // 32-byte header, fragment carries 24
	p = decode(fragment4(withOpts, true, 0, 20+24))
	wantLayers(t, p, DropShortFragment, L3IPv4, L4None)

	p = decode(fragment4(f, false, 185, 20+8))
	wantLayers(t, p, DropNone, L3IPv4, L4None)
	eq(t, "Frag", p.Frag, FragLater)
	eq(t, "FragOff", p.FragOff, 185)
	eq(t, "IPProto", p.IPProto, IPProtoTCP)
	eq(t, "HasPorts", p.HasPorts(), false)
	eq(t, "IsFragment", p.IsFragment(), true)

	// RFC 1858 overlap: offset 8 bytes rewrites the TCP flags.
	p = decode(fragment4(f, true, 1, 20+16))
	wantLayers(t, p, DropOverlapFragment, L3IPv4, L4None)
	p = decode(fragment4(f, false, minLaterFragOff, 20+8))
	wantLayers(t, p, DropNone, L3IPv4, L4None)
}

// ext6 is an IPv6 extension header of type-independent layout: next
// header, length in 8-byte units beyond the first, padding.
func ext6(nh uint8, units int) []byte {
	b := make([]byte, 8*(units+1))
	b[0], b[1] = nh, byte(units)
	if units == 0 {
		b[2], b[3] = 1, 4 // PadN
	}
	return b
}

func frag6(nh uint8, off uint16, m bool, id uint32) []byte {
	fo := off << 3
	if m {
		fo |= 1
	}
	return cat([]byte{nh, 0}, u16(fo), u32(id))
}

// v6Frame wraps ext headers and an L4 segment (checksummed by the caller or
// not at all) in Ethernet and IPv6 with first next header nh.
func v6Frame(nh uint8, rest ...[]byte) []byte {
	body := cat(rest...)
	return cat(ethH(macR, macA, EtherTypeIPv6), ip6H(c6, s6, nh, len(body)), body)
}

func TestDecodeIPv6ExtHeaders(t *testing.T) {
	u := udpH(c6, s6, 1, 2, []byte("abc"))
	tcp := tcpH(c6, s6, 3, 4, 0, 0, TCPSyn, nil)

	p := decode(v6Frame(IPProtoHopByHop, ext6(IPProtoDestOpts, 0), ext6(IPProtoRouting, 1), ext6(IPProtoUDP, 0), u))
	wantLayers(t, p, DropNone, L3IPv6, L4UDP)
	eq(t, "ExtHeaders", p.ExtHeaders, 3)
	eq(t, "L4Off", p.L4Off, 14+40+8+16+8)
	eq(t, "IPProto", p.IPProto, IPProtoUDP)
	eq(t, "payload", string(p.Payload()), "abc")

	p = decode(v6Frame(IPProtoDestOpts, ext6(IPProtoHopByHop, 0), ext6(IPProtoUDP, 0), u))
	wantLayers(t, p, DropBadExtHeader, L3None, L4None)

	var many [][]byte
	for i := 0; i < 100; i++ {
		many = append(many, ext6(IPProtoDestOpts, 0))
	}
	many[99][0] = IPProtoUDP
	p = decode(v6Frame(IPProtoDestOpts, append(many, u)...))
	wantLayers(t, p, DropTooManyExtHeaders, L3None, L4None)
	p = decode(v6Frame(IPProtoDestOpts, append(many[100-MaxIPv6ExtHeaders:], u)...))
	wantLayers(t, p, DropNone, L3IPv6, L4UDP)

	p = decode(v6Frame(IPProtoRouting, ext6(IPProtoUDP, 3))[:14+40+8+8])
	wantLayers(t, p, DropBadIPLength, L3None, L4None)
	f := v6Frame(IPProtoRouting, ext6(IPProtoUDP, 0))
	f[14+40+1] = 2 // claims 24 bytes, the datagram has 8
	wantLayers(t, decode(f), DropBadExtHeader, L3None, L4None)

	p = decode(v6Frame(IPProtoFragment, frag6(IPProtoTCP, 0, true, 0xabcdef), tcp))
	wantLayers(t, p, DropNone, L3IPv6, L4TCP)
	eq(t, "Frag", p.Frag, FragFirst)
	eq(t, "FragID", p.FragID, 0xabcdef)
	eq(t, "HasFragHeader", p.HasFragHeader, true)

	p = decode(v6Frame(IPProtoFragment, frag6(IPProtoTCP, 0, false, 1), tcp))
	wantLayers(t, p, DropNone, L3IPv6, L4TCP)
	eq(t, "atomic fragment Frag", p.Frag, FragNone)

	p = decode(v6Frame(IPProtoFragment, frag6(IPProtoTCP, 200, true, 1), make([]byte, 16)))
	wantLayers(t, p, DropNone, L3IPv6, L4None)
	eq(t, "Frag", p.Frag, FragLater)
	eq(t, "FragOff", p.FragOff, 200)
	eq(t, "IPProto", p.IPProto, IPProtoTCP)

	p = decode(v6Frame(IPProtoFragment, frag6(IPProtoTCP, 2, true, 1), make([]byte, 16)))
	wantLayers(t, p, DropOverlapFragment, L3IPv6, L4None)

	p = decode(v6Frame(IPProtoFragment, frag6(IPProtoFragment, 0, true, 1), frag6(IPProtoTCP, 0, true, 1), tcp))
	wantLayers(t, p, DropBadExtHeader, L3None, L4None)

	// RFC 7112: the first fragment must hold the whole header chain.
	p = decode(v6Frame(IPProtoFragment, frag6(IPProtoTCP, 0, true, 1), tcp[:12]))
	wantLayers(t, p, DropShortFragment, L3IPv6, L4None)
	p = decode(v6Frame(IPProtoFragment, frag6(IPProtoDestOpts, 0, true, 1), ext6(IPProtoTCP, 1)[:8]))
	wantLayers(t, p, DropShortFragment, L3None, L4None)

	p = decode(v6Frame(IPProtoNoNext))
	wantLayers(t, p, DropNone, L3IPv6, L4None)
}

func TestDropString(t *testing.T) {
	seen := map[string]bool{}
	for d := Drop(0); d < numDrops; d++ {
		s := d.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Errorf("Drop(%d).String() = %q: empty or duplicate", d, s)
		}
		seen[s] = true
	}
	eq(t, "out of range", Drop(200).String(), "unknown")
	for _, s := range []fmt.Stringer{L3(9), L4(9), Frag(9), Tunnel(9)} {
		eq(t, "invalid enum", s.String(), "invalid")
	}
}

// TestEveryDropReasonReachable keeps the Drop enum honest: each reason is
// produced by some frame, so a new reason cannot be added without a frame
// that shows it, and none is dead.
func TestEveryDropReasonReachable(t *testing.T) {
	grp := solicitedNodeRef(s6)
	vx := vxlanFrame(1, tcp4Frame())
	vx[14+20+8] = 0
	badIHL := tcp4Frame()
	badIHL[14] = 0x43
	badARP := arpReqFrame()
	badARP[14+4] = 8
	badVer := tcp4Frame()
	badVer[14] = 0x55
	longIP := tcp4Frame()
	longIP[16] = 0xff
	tcpOff := tcp4Frame()
	tcpOff[34+12] = 0x10
	gre := greFrame(1, nil)
	gre[35] |= 0x01 // version 1
	var many [][]byte
	for i := 0; i <= MaxIPv6ExtHeaders; i++ {
		many = append(many, ext6(IPProtoDestOpts, 0))
	}
	m := icmp4H(ICMPv4Unreachable, 0, 0, nil)
	byReason := map[Drop][]byte{
		DropNone:              tcp4Frame(),
		DropTruncated:         tcp4Frame()[:20],
		DropTooManyVLANs:      cat(ethH(macR, macA, EtherTypeIPv4, 0x81000001, 0x81000002, 0x81000003), tcp4Frame()[14:]),
		DropBadARP:            badARP,
		DropBadIPVersion:      badVer,
		DropBadIHL:            badIHL,
		DropBadIPLength:       longIP,
		DropBadExtHeader:      v6Frame(IPProtoDestOpts, ext6(IPProtoHopByHop, 0), ext6(IPProtoNoNext, 0)),
		DropTooManyExtHeaders: v6Frame(IPProtoDestOpts, many...),
		DropShortFragment:     fragment4(tcp4Frame(), true, 0, 28),
		DropOverlapFragment:   fragment4(tcp4Frame(), false, 1, 28),
		DropBadL4Header:       tcpOff,
		DropBadICMP:           cat(ethH(macA, macR, EtherTypeIPv4), ip4H(s4, c4, IPProtoICMPv4, len(m)), m),
		DropBadND:             ndFrame(c6, grp, ICMPv6NeighborSolicit, 0, ap(s6).AsSlice(), 1),
		DropBadVXLAN:          vx,
		DropBadGRE:            gre,
	}
	for d := Drop(0); d < numDrops; d++ {
		f, ok := byReason[d]
		if !ok {
			t.Errorf("no frame shows drop reason %v", d)
			continue
		}
		eq(t, "drop for the "+d.String()+" frame", decode(f).Drop, d)
	}
}

func TestDecodeProtocolMismatchAndPredicates(t *testing.T) {
	// ICMPv4 inside IPv6 and ICMPv6 inside IPv4 mean nothing: no ICMP
	// fields are decoded from them.
	p := decode(v6Frame(IPProtoICMPv4, icmp4H(ICMPv4EchoRequest, 0, 0, nil)))
	wantLayers(t, p, DropNone, L3IPv6, L4Other)
	eq(t, "IsEchoRequest", p.IsEchoRequest(), false)
	m := icmp6H(c6, s6, ICMPv6EchoRequest, 0, 0, nil)
	p = decode(cat(ethH(macR, macA, EtherTypeIPv4), ip4H(c4, s4, IPProtoICMPv6, len(m)), m))
	wantLayers(t, p, DropNone, L3IPv4, L4Other)
	p = decode(v6Frame(IPProtoICMPv6, []byte{128, 0, 0, 0}))
	wantLayers(t, p, DropBadL4Header, L3IPv6, L4None)

	u := udpH(c4, "239.1.2.3", 1, 2, nil)
	f := cat(ethH(MAC{0x01, 0, 0x5e, 1, 2, 3}, macA, EtherTypeIPv4), ip4H(c4, "239.1.2.3", IPProtoUDP, len(u)), u)
	f[15] = 0x03 // ECN CE
	ip4Fix(f[14:34])
	p = decode(f)
	eq(t, "IsIPMulticast", p.IsIPMulticast(), true)
	eq(t, "IsMulticast", p.IsMulticast(), true)
	eq(t, "IsBroadcast", p.IsBroadcast(), false)
	eq(t, "ECN", p.ECN(), 3)
	eq(t, "Frame", &p.Frame()[0], &f[0])
	eq(t, "Inner of a non-tunnel", p.Inner() == nil, true)
	eq(t, "MAC.IsZero", MAC{}.IsZero(), true)
	eq(t, "MAC.String", macA.String(), "02:00:00:00:00:aa")

	fin := tcpH(c4, s4, 1, 2, 3, 4, TCPFin|TCPAck, nil)
	p = decode(cat(ethH(macR, macA, EtherTypeIPv4), ip4H(c4, s4, IPProtoTCP, len(fin)), fin))
	eq(t, "IsTCPFin", p.IsTCPFin(), true)
	eq(t, "IsTCPSyn", p.IsTCPSyn(), false)
	if s := p.String(); s == "" {
		t.Error("String() empty")
	}
}
