package packet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// fullChecksums recomputes, from scratch with the reference checksum, the
// IPv4 header and L4 checksums of a decoded frame, and reports mismatches
// with what the frame carries. Bit-for-bit: the incremental update must
// produce exactly what a full recomputation does.
func fullChecksums(t *testing.T, f []byte) {
	t.Helper()
	p := decode(bytes.Clone(f))
	if p.Drop != DropNone {
		t.Fatalf("rewritten frame no longer decodes: %v", p)
	}
	if p.L3 == L3IPv4 {
		h := bytes.Clone(f[p.L3Off:p.L4Off])
		got := binary.BigEndian.Uint16(h[10:])
		h[10], h[11] = 0, 0
		if want := refChecksum(h); got != want {
			t.Errorf("IPv4 header checksum %#04x, full recomputation %#04x", got, want)
		}
	}
	if p.Frag != FragNone {
		return
	}
	var off int
	switch p.L4 {
	case L4TCP:
		off = 16
	case L4UDP:
		off = 6
	case L4ICMPv4, L4ICMPv6:
		off = 2
	default:
		return
	}
	seg := bytes.Clone(f[p.L4Off:p.L3End])
	got := binary.BigEndian.Uint16(seg[off:])
	if p.L4 == L4UDP && p.L3 == L3IPv4 && got == 0 {
		return // no checksum, and none was invented
	}
	seg[off], seg[off+1] = 0, 0
	var want uint16
	if p.L4 == L4ICMPv4 {
		want = refChecksum(seg)
	} else {
		want = refChecksum(refPseudo(p.SrcIP, p.DstIP, p.IPProto, len(seg)), seg)
	}
	if want == 0 && p.L4 == L4UDP {
		want = 0xffff
	}
	if got != want {
		t.Errorf("%v checksum %#04x, full recomputation %#04x", p.L4, got, want)
	}
}

func TestRewrites(t *testing.T) {
	udpNoCsum := udp4Frame()
	udpNoCsum[34+6], udpNoCsum[34+7] = 0, 0
	frames := map[string][]byte{
		"tcp4":        tcp4Frame(),
		"udp4":        udp4Frame(),
		"udp4 nocsum": udpNoCsum,
		"tcp6":        tcp6Frame(),
		"udp6":        udp6Frame(),
		"echo4":       echo4Frame(),
		"echo6":       echo6Frame(),
		"first frag":  fragment4(tcp4Frame(), true, 0, 20+24),
		"later frag":  fragment4(tcp4Frame(), false, 100, 20+24),
		"vlan":        cat(ethH(macR, macA, EtherTypeIPv4, 0x81000064), tcp4Frame()[14:]),
	}
	for name, orig := range frames {
		t.Run(name, func(t *testing.T) {
			fullChecksums(t, orig)
			f := bytes.Clone(orig)
			var p Parsed
			p.Decode(f)
			v6 := p.L3 == L3IPv6
			newSrc, newDst := ap("192.168.7.9"), ap("172.16.0.77")
			if v6 {
				newSrc, newDst = ap("fd00::1234:5678"), ap("2001:db8:ffff::1")
			}
			ttl := p.TTL
			mustTrue(t, "SetSrcIP", p.SetSrcIP(newSrc))
			fullChecksums(t, f)
			mustTrue(t, "SetDstIP", p.SetDstIP(newDst))
			fullChecksums(t, f)
			mustTrue(t, "DecTTL", p.DecTTL())
			fullChecksums(t, f)
			mustTrue(t, "SetEthSrc", p.SetEthSrc(macB))
			mustTrue(t, "SetEthDst", p.SetEthDst(macA))
			if p.HasPorts() {
				mustTrue(t, "SetSrcPort", p.SetSrcPort(0xfffe))
				fullChecksums(t, f)
				mustTrue(t, "SetDstPort", p.SetDstPort(1))
				fullChecksums(t, f)
			} else if p.L4 == L4ICMPv4 || p.L4 == L4ICMPv6 {
				mustTrue(t, "SetICMPEchoID", p.SetICMPEchoID(0xbeef))
				fullChecksums(t, f)
			}
			// What Parsed says must be what a fresh decode says.
			q := decode(f)
			eq(t, "SrcIP", q.SrcIP, newSrc)
			eq(t, "DstIP", q.DstIP, newDst)
			eq(t, "TTL", q.TTL, ttl-1)
			eq(t, "EthSrc", q.EthSrc, macB)
			eq(t, "EthDst", q.EthDst, macA)
			if keyFields(&p) != keyFields(q) {
				t.Errorf("Parsed out of step with its frame:\n%+v\n%+v", keyFields(&p), keyFields(q))
			}
			if p.HasPorts() {
				eq(t, "ports", [2]uint16{q.SrcPort, q.DstPort}, [2]uint16{0xfffe, 1})
			}
			if q.IsEchoRequest() {
				eq(t, "echo id", q.ICMPEchoID, 0xbeef)
			}
			if name == "udp4 nocsum" {
				eq(t, "UDP checksum stays absent", binary.BigEndian.Uint16(f[34+6:]), 0)
			}
			// Payload untouched.
			if !bytes.Equal(p.Payload(), decode(orig).Payload()) {
				t.Errorf("payload changed")
			}
		})
	}
}

func mustTrue(t *testing.T, what string, ok bool) {
	t.Helper()
	if !ok {
		t.Fatalf("%s refused", what)
	}
}

func TestRewriteRefusals(t *testing.T) {
	f := tcp4Frame()
	var p Parsed
	p.Decode(f)
	if p.SetSrcIP(ap(c6)) || p.SetDstIP(netip.Addr{}) {
		t.Error("IPv4 frame accepted an IPv6 address")
	}
	p.Decode(tcp6Frame())
	if p.SetSrcIP(ap(c4)) || p.SetSrcIP(ap("::ffff:10.0.0.1")) {
		t.Error("IPv6 frame accepted an IPv4 address")
	}
	if p.SetICMPEchoID(1) {
		t.Error("TCP frame accepted an echo id")
	}
	p.Decode(arpReqFrame())
	if p.DecTTL() || p.SetSrcPort(1) || p.SetSrcIP(ap(c4)) {
		t.Error("ARP frame accepted an IP rewrite")
	}
	if !p.SetEthSrc(macB) {
		t.Error("ARP frame refused a MAC rewrite")
	}
	for _, ttl := range []byte{0, 1} {
		f := tcp4Frame()
		f[14+8] = ttl
		ip4Fix(f[14:34])
		before := bytes.Clone(f)
		p.Decode(f)
		if p.DecTTL() {
			t.Errorf("DecTTL accepted TTL %d", ttl)
		}
		if !bytes.Equal(f, before) {
			t.Errorf("refused DecTTL changed the frame")
		}
	}
	bad := tcp4Frame()
	bad[34+12] = 0x40 // data offset 4
	before := bytes.Clone(bad)
	p.Decode(bad)
	if p.SetSrcIP(ap(s4)) || p.DecTTL() || p.SetDstPort(1) {
		t.Error("dropped frame accepted a rewrite")
	}
	if !bytes.Equal(bad, before) {
		t.Error("refused rewrite changed a dropped frame")
	}
	p.Decode(nil)
	if p.SetEthSrc(macA) || p.SetEthDst(macA) {
		t.Error("empty frame accepted a MAC rewrite")
	}
}

// TestRewriteLaterFragmentReassembles checks the claim in SetSrcIP: NAT of
// a first and a later fragment yields a datagram whose L4 checksum, fixed
// only in the first fragment, verifies after reassembly.
func TestRewriteLaterFragmentReassembles(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4)
	seg := tcpH(c4, s4, 1, 2, 3, 4, TCPAck, payload) // 84 bytes
	whole := cat(ethH(macR, macA, EtherTypeIPv4), ip4H(c4, s4, IPProtoTCP, len(seg)), seg)
	first := fragment4(whole, true, 0, 20+64)
	later := cat(whole[:34], seg[64:])
	later = fragment4(later, false, 8, 20+len(seg)-64)
	nat := ap("203.0.113.5")
	var p Parsed
	for _, f := range [][]byte{first, later} {
		p.Decode(f)
		mustTrue(t, "SetSrcIP", p.SetSrcIP(nat))
		fullChecksums(t, f)
	}
	re := cat(first[34:], later[34:])
	if c := refChecksum(refPseudo(nat, ap(s4), IPProtoTCP, len(re)), re); c != 0 {
		t.Errorf("reassembled segment checksum does not verify: %#04x", c)
	}
}

// TestRewriteUDPNeverZero finds a port rewrite whose checksum comes out +0
// and checks that UDP sends -0 instead: +0 would mean "no checksum".
func TestRewriteUDPNeverZero(t *testing.T) {
	for _, frame := range [][]byte{udp4Frame(), udp6Frame()} {
		found := false
		for port := 0; port < 1<<16 && !found; port++ {
			f := bytes.Clone(frame)
			var p Parsed
			p.Decode(f)
			p.SetDstPort(uint16(port))
			seg := bytes.Clone(f[p.L4Off:p.L3End])
			seg[6], seg[7] = 0, 0
			if refChecksum(refPseudo(p.SrcIP, p.DstIP, IPProtoUDP, len(seg)), seg) != 0 {
				continue
			}
			found = true
			eq(t, "UDP checksum that computes to 0", binary.BigEndian.Uint16(f[p.L4Off+6:]), 0xffff)
			fullChecksums(t, f)
		}
		if !found {
			t.Fatal("no port gives a zero checksum: the test proves nothing")
		}
	}
}

// parsedKeyFields are the fields of Parsed that a flow key reads.
type parsedKeyFields struct {
	EthSrc, EthDst    MAC
	EtherType         uint16
	SrcIP, DstIP      [16]byte
	SrcPort, DstPort  uint16
	ICMPEchoID        uint16
	IPProto, TOS, TTL uint8
	Frag              Frag
}

func keyFields(p *Parsed) parsedKeyFields {
	return parsedKeyFields{p.EthSrc, p.EthDst, p.EtherType, p.SrcIP.As16(), p.DstIP.As16(), p.SrcPort, p.DstPort,
		p.ICMPEchoID, p.IPProto, p.TOS, p.TTL, p.Frag}
}

// TestRewritesPartialChecksum: on a frame whose TCP/UDP checksum is left
// for the device (checksum offload: the field holds the pseudo-header
// sum), NAT rewrites keep the field the seed of the rewritten packet, so
// that the device's completion gives exactly the checksum a full
// recomputation of the rewritten packet does.
func TestRewritesPartialChecksum(t *testing.T) {
	for name, orig := range map[string][]byte{"tcp4": tcp4Frame(), "udp4": udp4Frame(), "tcp6": tcp6Frame(), "udp6": udp6Frame()} {
		t.Run(name, func(t *testing.T) {
			f := bytes.Clone(orig)
			var p Parsed
			p.Decode(f)
			off := p.L4Off + 16
			if p.L4 == L4UDP {
				off = p.L4Off + 6
			}
			seed := func() uint16 {
				return ^Checksum(nil, PseudoHeaderSum(p.SrcIP, p.DstIP, p.IPProto, p.L3End-p.L4Off))
			}
			binary.BigEndian.PutUint16(f[off:], seed())
			p.L4CsumPartial = true
			newSrc, newDst := ap("192.168.7.9"), ap("172.16.0.77")
			if p.L3 == L3IPv6 {
				newSrc, newDst = ap("fd00::1234:5678"), ap("2001:db8:ffff::1")
			}
			mustTrue(t, "SetSrcIP", p.SetSrcIP(newSrc))
			mustTrue(t, "SetDstPort", p.SetDstPort(4242))
			mustTrue(t, "SetDstIP", p.SetDstIP(newDst))
			mustTrue(t, "SetSrcPort", p.SetSrcPort(1))
			if got, want := binary.BigEndian.Uint16(f[off:]), seed(); got != want {
				t.Fatalf("partial checksum field %#04x after rewrites, want the rewritten packet's seed %#04x", got, want)
			}
			// Complete it as a NIC would, then it must verify.
			sum := Checksum(f[p.L4Off:p.L3End], 0)
			if sum == 0 {
				sum = 0xffff
			}
			binary.BigEndian.PutUint16(f[off:], sum)
			fullChecksums(t, f)
		})
	}
	// Decode clears the mark: a later frame is not taken for partial.
	var p Parsed
	p.L4CsumPartial = true
	p.Decode(tcp4Frame())
	if p.L4CsumPartial {
		t.Error("Decode kept L4CsumPartial")
	}
}
