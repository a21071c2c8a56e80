package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

type builder func(dst []byte) (int, error)

// build runs b with a large buffer, checks that the output decodes without
// drop and with correct checksums, and that every smaller buffer either
// fails with ErrShortBuffer or yields a shorter frame that also decodes.
func build(t *testing.T, b builder) ([]byte, *Parsed) {
	t.Helper()
	buf := make([]byte, 2048)
	n, err := b(buf)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	out := buf[:n]
	fullChecksums(t, out)
	for k := 0; k < n; k++ {
		small := make([]byte, k)
		m, err := b(small)
		switch {
		case errors.Is(err, ErrShortBuffer):
		case err == nil && m <= k:
			if p := decode(small[:m]); p.Drop != DropNone {
				t.Fatalf("buffer of %d: output does not decode: %v", k, p)
			}
		default:
			t.Fatalf("buffer of %d: n=%d err=%v", k, m, err)
		}
	}
	return out, decode(out)
}

func wantErr(t *testing.T, what string, b builder, want error) {
	t.Helper()
	buf := make([]byte, 2048)
	if n, err := b(buf); !errors.Is(err, want) || n != 0 {
		t.Errorf("%s: n=%d err=%v, want %v", what, n, err, want)
	}
}

func TestBuildARP(t *testing.T) {
	tagged := cat(ethH(BroadcastMAC, macA, EtherTypeARP, 0x81000000|300), arpReqFrame()[14:])
	for _, reqFrame := range [][]byte{arpReqFrame(), tagged} {
		req := decode(reqFrame)
		_, p := build(t, func(d []byte) (int, error) { return BuildARPReply(d, req, macB) })
		wantLayers(t, p, DropNone, L3ARP, L4None)
		eq(t, "op", p.ARPOp, ARPReply)
		eq(t, "eth dst", p.EthDst, macA)
		eq(t, "eth src", p.EthSrc, macB)
		eq(t, "sha", p.ARPSenderMAC, macB)
		eq(t, "spa", p.ARPSenderIP, ap(s4))
		eq(t, "tha", p.ARPTargetMAC, macA)
		eq(t, "tpa", p.ARPTargetIP, ap(c4))
		eq(t, "vlans", p.VLAN, req.VLAN)
	}
	rep, _ := build(t, func(d []byte) (int, error) { return BuildARPReply(d, decode(arpReqFrame()), macB) })
	wantErr(t, "reply to a reply", func(d []byte) (int, error) { return BuildARPReply(d, decode(rep), macB) }, ErrNotAnswerable)
	wantErr(t, "reply to tcp", func(d []byte) (int, error) { return BuildARPReply(d, decode(tcp4Frame()), macB) }, ErrNotAnswerable)

	_, p := build(t, func(d []byte) (int, error) { return BuildARPRequest(d, macB, ap(s4), ap(c4)) })
	eq(t, "IsARPRequest", p.IsARPRequest(), true)
	eq(t, "IsBroadcast", p.IsBroadcast(), true)
	eq(t, "spa", p.ARPSenderIP, ap(s4))
	eq(t, "tpa", p.ARPTargetIP, ap(c4))
	wantErr(t, "v6 address", func(d []byte) (int, error) { return BuildARPRequest(d, macB, ap(c6), ap(c4)) }, ErrBadArgument)
}

func TestBuildEchoReply(t *testing.T) {
	req := decode(echo4Frame())
	_, p := build(t, func(d []byte) (int, error) { return BuildICMPv4EchoReply(d, req) })
	wantLayers(t, p, DropNone, L3IPv4, L4ICMPv4)
	eq(t, "type", p.ICMPType, ICMPv4EchoReply)
	eq(t, "id", p.ICMPEchoID, req.ICMPEchoID)
	eq(t, "seq", p.ICMPEchoSeq, req.ICMPEchoSeq)
	eq(t, "src", p.SrcIP, req.DstIP)
	eq(t, "dst", p.DstIP, req.SrcIP)
	eq(t, "eth", [2]MAC{p.EthSrc, p.EthDst}, [2]MAC{req.EthDst, req.EthSrc})
	eq(t, "data", string(p.Payload()), "ping-data")
	eq(t, "IsEchoReply", p.IsEchoReply(), true)
	m4 := icmp4H(ICMPv4EchoRequest, 0, 1, nil)
	bc := decode(cat(ethH(BroadcastMAC, macA, EtherTypeIPv4), ip4H(c4, "255.255.255.255", IPProtoICMPv4, len(m4)), m4))
	wantErr(t, "echo to broadcast", func(d []byte) (int, error) { return BuildICMPv4EchoReply(d, bc) }, ErrNotAnswerable)
	wantErr(t, "echo reply to tcp", func(d []byte) (int, error) { return BuildICMPv4EchoReply(d, decode(tcp4Frame())) }, ErrNotAnswerable)

	req6 := decode(echo6Frame())
	_, p = build(t, func(d []byte) (int, error) { return BuildICMPv6EchoReply(d, req6) })
	wantLayers(t, p, DropNone, L3IPv6, L4ICMPv6)
	eq(t, "type", p.ICMPType, ICMPv6EchoReply)
	eq(t, "id", p.ICMPEchoID, req6.ICMPEchoID)
	eq(t, "src", p.SrcIP, req6.DstIP)
	eq(t, "data", string(p.Payload()), "ping6")
	m := icmp6H(c6, "ff02::1", ICMPv6EchoRequest, 0, 1, nil)
	mc := decode(cat(ethH(MAC{0x33, 0x33, 0, 0, 0, 1}, macA, EtherTypeIPv6), ip6H(c6, "ff02::1", IPProtoICMPv6, len(m)), m))
	wantErr(t, "echo to multicast", func(d []byte) (int, error) { return BuildICMPv6EchoReply(d, mc) }, ErrNotAnswerable)
}

func bigTCP4() []byte {
	t := tcpH(c4, s4, 1, 2, 3, 4, TCPAck, bytes.Repeat([]byte{0xa5}, 1400))
	return cat(ethH(macR, macA, EtherTypeIPv4), ip4H(c4, s4, IPProtoTCP, len(t)), t)
}

func TestBuildICMPv4Errors(t *testing.T) {
	router := ap("10.0.0.254")
	orig := decode(tcp4Frame())
	out, p := build(t, func(d []byte) (int, error) { return BuildICMPv4TimeExceeded(d, orig, router) })
	wantLayers(t, p, DropNone, L3IPv4, L4ICMPv4)
	eq(t, "type", p.ICMPType, ICMPv4TimeExceeded)
	eq(t, "src", p.SrcIP, router)
	eq(t, "dst", p.DstIP, ap(c4))
	eq(t, "eth dst", p.EthDst, macA)
	eq(t, "tos", p.TOS, 0xc0)
	eq(t, "IsICMPError", p.IsICMPError(), true)
	if q := out[p.ICMPInnerOff:]; !bytes.Equal(q, tcp4Frame()[14:]) {
		t.Errorf("quote %x, want the whole original datagram", q)
	}

	big := decode(bigTCP4())
	out, p = build(t, func(d []byte) (int, error) { return BuildICMPv4FragNeeded(d, big, router, 1280) })
	eq(t, "code", p.ICMPCode, ICMPv4FragNeeded)
	eq(t, "mtu", uint16(out[p.L4Off+6])<<8|uint16(out[p.L4Off+7]), 1280)
	eq(t, "576 bytes", p.L3End-p.L3Off, 576)
	if !bytes.Equal(out[p.ICMPInnerOff:], bigTCP4()[14:14+548]) {
		t.Error("quote is not the start of the original datagram")
	}
	// The quoted header is decodable by NAT.
	eq(t, "inner version", out[p.ICMPInnerOff]>>4, 4)

	_, p = build(t, func(d []byte) (int, error) {
		return BuildICMPv4Unreachable(d, orig, router, ICMPv4AdminProhibited)
	})
	eq(t, "unreachable", [2]uint8{p.ICMPType, p.ICMPCode}, [2]uint8{ICMPv4Unreachable, ICMPv4AdminProhibited})

	errFrame, _ := build(t, func(d []byte) (int, error) { return BuildICMPv4TimeExceeded(d, orig, router) })
	bcast := tcp4Frame()
	copy(bcast, BroadcastMAC[:])
	mcast := cat(ethH(macR, macA, EtherTypeIPv4), ip4H(c4, "224.0.0.5", IPProtoUDP, 8), udpH(c4, "224.0.0.5", 1, 2, nil))
	zeroSrc := cat(ethH(macR, macA, EtherTypeIPv4), ip4H("0.0.0.0", s4, IPProtoUDP, 8), udpH("0.0.0.0", s4, 1, 2, nil))
	for name, f := range map[string][]byte{
		"icmp error":      errFrame,
		"l2 broadcast":    bcast,
		"multicast":       mcast,
		"0.0.0.0 source":  zeroSrc,
		"later fragment":  fragment4(tcp4Frame(), false, 100, 28),
		"255.255.255.255": cat(ethH(macR, macA, EtherTypeIPv4), ip4H(c4, "255.255.255.255", IPProtoUDP, 8), udpH(c4, "255.255.255.255", 1, 2, nil)),
	} {
		o := decode(f)
		wantErr(t, name, func(d []byte) (int, error) { return BuildICMPv4TimeExceeded(d, o, router) }, ErrSuppressed)
	}
	wantErr(t, "v6 source", func(d []byte) (int, error) { return BuildICMPv4TimeExceeded(d, orig, ap(c6)) }, ErrBadArgument)
	wantErr(t, "mtu 0", func(d []byte) (int, error) { return BuildICMPv4FragNeeded(d, orig, router, 0) }, ErrBadArgument)
	wantErr(t, "code 4 without mtu", func(d []byte) (int, error) { return BuildICMPv4Unreachable(d, orig, router, 4) }, ErrBadArgument)
	wantErr(t, "about v6", func(d []byte) (int, error) { return BuildICMPv4TimeExceeded(d, decode(tcp6Frame()), router) }, ErrNotAnswerable)
}

func TestBuildICMPv6Errors(t *testing.T) {
	router := ap("2001:db8::fe")
	orig := decode(tcp6Frame())
	out, p := build(t, func(d []byte) (int, error) { return BuildICMPv6TimeExceeded(d, orig, router) })
	wantLayers(t, p, DropNone, L3IPv6, L4ICMPv6)
	eq(t, "type", p.ICMPType, ICMPv6TimeExceeded)
	eq(t, "dst", p.DstIP, ap(c6))
	if !bytes.Equal(out[p.ICMPInnerOff:], tcp6Frame()[14:]) {
		t.Error("quote is not the whole original packet")
	}

	bt := tcpH(c6, s6, 1, 2, 3, 4, TCPAck, bytes.Repeat([]byte{0x5a}, 1400))
	bigFrame := cat(ethH(macR, macA, EtherTypeIPv6), ip6H(c6, s6, IPProtoTCP, len(bt)), bt)
	big := decode(bigFrame)
	out, p = build(t, func(d []byte) (int, error) { return BuildICMPv6PacketTooBig(d, big, router, 1400) })
	eq(t, "type", p.ICMPType, ICMPv6PacketTooBig)
	eq(t, "mtu", uint32(out[p.L4Off+4])<<24|uint32(out[p.L4Off+5])<<16|uint32(out[p.L4Off+6])<<8|uint32(out[p.L4Off+7]), 1400)
	eq(t, "1280 bytes", p.L3End-p.L3Off, 1280)
	if !bytes.Equal(out[p.ICMPInnerOff:], bigFrame[14:14+1232]) {
		t.Error("quote is not the start of the original packet")
	}

	_, p = build(t, func(d []byte) (int, error) { return BuildICMPv6Unreachable(d, orig, router, ICMPv6PortUnreachable) })
	eq(t, "unreachable", [2]uint8{p.ICMPType, p.ICMPCode}, [2]uint8{ICMPv6Unreachable, ICMPv6PortUnreachable})

	u := udpH(c6, "ff0e::1", 1, 2, nil)
	mcast := decode(cat(ethH(MAC{0x33, 0x33, 0, 0, 0, 1}, macA, EtherTypeIPv6), ip6H(c6, "ff0e::1", IPProtoUDP, len(u)), u))
	wantErr(t, "time exceeded about multicast", func(d []byte) (int, error) { return BuildICMPv6TimeExceeded(d, mcast, router) }, ErrSuppressed)
	// Packet too big is the exception: multicast PMTUD needs it.
	_, p = build(t, func(d []byte) (int, error) { return BuildICMPv6PacketTooBig(d, mcast, router, 1280) })
	eq(t, "ptb about multicast", p.ICMPType, ICMPv6PacketTooBig)

	errFrame, _ := build(t, func(d []byte) (int, error) { return BuildICMPv6TimeExceeded(d, orig, router) })
	wantErr(t, "error about error", func(d []byte) (int, error) { return BuildICMPv6TimeExceeded(d, decode(errFrame), router) }, ErrSuppressed)
	dad := decode(ndFrame("::", solicitedNodeRef(s6), ICMPv6NeighborSolicit, 0, ap(s6).AsSlice(), 255))
	wantErr(t, "unspecified source", func(d []byte) (int, error) { return BuildICMPv6Unreachable(d, dad, router, 0) }, ErrSuppressed)
	wantErr(t, "v4 source", func(d []byte) (int, error) { return BuildICMPv6TimeExceeded(d, orig, ap(c4)) }, ErrBadArgument)
	wantErr(t, "mtu below 1280", func(d []byte) (int, error) { return BuildICMPv6PacketTooBig(d, orig, router, 1279) }, ErrBadArgument)
	wantErr(t, "about v4", func(d []byte) (int, error) { return BuildICMPv6TimeExceeded(d, decode(tcp4Frame()), router) }, ErrNotAnswerable)
}

func TestBuildND(t *testing.T) {
	ns := decode(nsFrame())
	_, p := build(t, func(d []byte) (int, error) { return BuildNeighborAdvert(d, ns, macB, true) })
	wantLayers(t, p, DropNone, L3IPv6, L4ICMPv6)
	eq(t, "IsNeighborAdvert", p.IsNeighborAdvert(), true)
	eq(t, "target", p.NDTarget, ap(s6))
	eq(t, "src", p.SrcIP, ap(s6))
	eq(t, "dst", p.DstIP, ap(c6))
	eq(t, "eth dst", p.EthDst, macA)
	eq(t, "eth src", p.EthSrc, macB)
	eq(t, "flags", p.NDFlags, NDRouter|NDSolicited|NDOverride)
	eq(t, "tlla", p.NDLinkAddr, macB)
	eq(t, "hop limit", p.TTL, 255)

	dad := decode(ndFrame("::", solicitedNodeRef(s6), ICMPv6NeighborSolicit, 0, ap(s6).AsSlice(), 255))
	_, p = build(t, func(d []byte) (int, error) { return BuildNeighborAdvert(d, dad, macB, false) })
	eq(t, "dad answer to all-nodes", p.DstIP, ap("ff02::1"))
	eq(t, "dad eth dst", p.EthDst, MAC{0x33, 0x33, 0, 0, 0, 1})
	eq(t, "dad flags", p.NDFlags, NDOverride)
	wantErr(t, "na to echo", func(d []byte) (int, error) { return BuildNeighborAdvert(d, decode(echo6Frame()), macB, false) }, ErrNotAnswerable)

	_, p = build(t, func(d []byte) (int, error) { return BuildNeighborSolicit(d, macA, ap(c6), ap(s6)) })
	eq(t, "IsNeighborSolicit", p.IsNeighborSolicit(), true)
	eq(t, "dst", p.DstIP, ap(solicitedNodeRef(s6)))
	eq(t, "eth dst", p.EthDst, MAC{0x33, 0x33, 0xff, 0, 0, 2})
	eq(t, "slla", p.NDLinkAddr, macA)
	eq(t, "target", p.NDTarget, ap(s6))
	_, p = build(t, func(d []byte) (int, error) { return BuildNeighborSolicit(d, macA, ap("::"), ap(s6)) })
	eq(t, "IsDAD", p.IsDAD(), true)
	eq(t, "no slla in DAD", p.NDHasLinkAddr, false)
	wantErr(t, "multicast target", func(d []byte) (int, error) { return BuildNeighborSolicit(d, macA, ap(c6), ap("ff02::1")) }, ErrBadArgument)
}

func TestBuildTCPReset(t *testing.T) {
	syn := decode(tcp4Frame()) // SYN, seq 1000, 5 bytes of data
	_, p := build(t, func(d []byte) (int, error) { return BuildTCPReset(d, syn) })
	wantLayers(t, p, DropNone, L3IPv4, L4TCP)
	eq(t, "flags", p.TCPFlags, TCPRst|TCPAck)
	eq(t, "seq", p.TCPSeq, 0)
	eq(t, "ack", p.TCPAck, 1000+1+5)
	eq(t, "ports", [2]uint16{p.SrcPort, p.DstPort}, [2]uint16{80, 40000})
	eq(t, "addrs", [2]string{p.SrcIP.String(), p.DstIP.String()}, [2]string{s4, c4})

	ack := decode(tcp6Frame()) // ACK, ack 9
	_, p = build(t, func(d []byte) (int, error) { return BuildTCPReset(d, ack) })
	wantLayers(t, p, DropNone, L3IPv6, L4TCP)
	eq(t, "flags", p.TCPFlags, TCPRst)
	eq(t, "seq", p.TCPSeq, 9)
	eq(t, "ack", p.TCPAck, 0)

	rst, _ := build(t, func(d []byte) (int, error) { return BuildTCPReset(d, syn) })
	wantErr(t, "rst to rst", func(d []byte) (int, error) { return BuildTCPReset(d, decode(rst)) }, ErrSuppressed)
	wantErr(t, "rst to udp", func(d []byte) (int, error) { return BuildTCPReset(d, decode(udp4Frame())) }, ErrNotAnswerable)
	t4 := tcpH(c4, "10.0.0.255", 1, 2, 3, 0, TCPSyn, nil)
	wantErr(t, "rst from 0.0.0.0", func(d []byte) (int, error) {
		return BuildTCPReset(d, decode(cat(ethH(macR, macA, EtherTypeIPv4), ip4H("0.0.0.0", s4, IPProtoTCP, len(t4)), tcpH("0.0.0.0", s4, 1, 2, 3, 0, TCPSyn, nil))))
	}, ErrSuppressed)
	wantErr(t, "rst to 255.255.255.255", func(d []byte) (int, error) {
		return BuildTCPReset(d, decode(cat(ethH(macR, macA, EtherTypeIPv4), ip4H(c4, "255.255.255.255", IPProtoTCP, len(t4)), tcpH(c4, "255.255.255.255", 1, 2, 3, 0, TCPSyn, nil))))
	}, ErrSuppressed)
	fin := tcpH(c4, s4, 1, 2, 50, 0, TCPFin, nil)
	finp := decode(cat(ethH(macR, macA, EtherTypeIPv4), ip4H(c4, s4, IPProtoTCP, len(fin)), fin))
	_, p = build(t, func(d []byte) (int, error) { return BuildTCPReset(d, finp) })
	eq(t, "ack of FIN", p.TCPAck, 51)
}

func TestBuildUDP4(t *testing.T) {
	h := UDP4{EthSrc: macR, EthDst: BroadcastMAC, Src: ap(s4), Dst: ap("255.255.255.255"), SrcPort: 67, DstPort: 68}
	withPayload := func(payload []byte) builder {
		return func(d []byte) (int, error) {
			if len(d) >= UDP4HeaderLen+len(payload) {
				copy(d[UDP4HeaderLen:], payload)
			}
			return BuildUDP4(d, h, len(payload))
		}
	}
	out, p := build(t, withPayload([]byte("odd-length payload")))
	wantLayers(t, p, DropNone, L3IPv4, L4UDP)
	eq(t, "eth", [2]MAC{p.EthSrc, p.EthDst}, [2]MAC{macR, BroadcastMAC})
	eq(t, "vlans", p.VLANs, uint8(0))
	eq(t, "ips", [2]netip.Addr{p.SrcIP, p.DstIP}, [2]netip.Addr{h.Src, h.Dst})
	eq(t, "ports", [2]uint16{p.SrcPort, p.DstPort}, [2]uint16{67, 68})
	eq(t, "ttl", p.TTL, uint8(64))
	eq(t, "atomic", [2]bool{p.DontFrag, p.Frag == FragNone}, [2]bool{true, true})
	eq(t, "payload", string(p.Payload()), "odd-length payload")
	eq(t, "length", len(out), UDP4HeaderLen+len("odd-length payload"))
	_, p = build(t, withPayload(nil))
	eq(t, "empty payload", len(p.Payload()), 0)

	// A payload whose checksum comes out as 0 is sent as 0xffff: 0 would
	// say "no checksum".
	zero := make([]byte, 2)
	buf := make([]byte, 64)
	if _, err := BuildUDP4(buf, h, 2); err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint16(zero, binary.BigEndian.Uint16(buf[UDP4HeaderLen-2:]))
	out, _ = build(t, withPayload(zero))
	eq(t, "checksum of a zero sum", binary.BigEndian.Uint16(out[UDP4HeaderLen-2:]), uint16(0xffff))

	wantErr(t, "v6 source", func(d []byte) (int, error) { h := h; h.Src = ap(c6); return BuildUDP4(d, h, 0) }, ErrBadArgument)
	wantErr(t, "no destination", func(d []byte) (int, error) { h := h; h.Dst = netip.Addr{}; return BuildUDP4(d, h, 0) }, ErrBadArgument)
	wantErr(t, "negative length", func(d []byte) (int, error) { return BuildUDP4(d, h, -1) }, ErrBadArgument)
	wantErr(t, "over 64 KiB", func(d []byte) (int, error) { return BuildUDP4(d, h, 0xffff-27) }, ErrBadArgument)
}
