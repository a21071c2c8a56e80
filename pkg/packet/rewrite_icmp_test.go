package packet

import (
	"bytes"
	"net/netip"
	"testing"
)

// errorAbout builds the ICMP error router sends about the probe p.
func errorAbout(t *testing.T, p Probe, router netip.Addr) []byte {
	t.Helper()
	b := make([]byte, 1500)
	n, err := BuildProbe(b, &p)
	if err != nil {
		t.Fatal(err)
	}
	var orig Parsed
	orig.Decode(b[:n])
	out := make([]byte, 1024)
	if p.Src.Is4() {
		n, err = BuildICMPv4Unreachable(out, &orig, router, ICMPv4PortUnreachable)
	} else {
		n, err = BuildICMPv6Unreachable(out, &orig, router, ICMPv6PortUnreachable)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out[:n]
}

// Reverse NAT of an ICMP error, rewritten in place, must give the frame a
// router would have built about the untranslated packet: every checksum
// (outer IP, error, quoted IP, quoted L4) byte for byte the same as one
// computed from scratch.
func TestSetInnerMatchesFreshlyBuiltError(t *testing.T) {
	r4, r6 := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8:ff::1")
	pub4, priv4 := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("10.0.0.5")
	pub6, priv6 := netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("fd00::5")
	dst4, dst6 := netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("2001:db8:2::9")
	cases := []struct {
		name        string
		proto       uint8
		pub, priv   netip.Addr
		dst, router netip.Addr
		pubP, privP uint16
		tcpFlags    uint8
		length      int
	}{
		{"udp4", IPProtoUDP, pub4, priv4, dst4, r4, 40001, 5353, 0, 0},
		{"udp4-long", IPProtoUDP, pub4, priv4, dst4, r4, 40001, 5353, 0, 300},
		{"tcp4", IPProtoTCP, pub4, priv4, dst4, r4, 1025, 33000, TCPSyn, 0},
		{"echo4", IPProtoICMPv4, pub4, priv4, dst4, r4, 7, 0x4242, 0, 0},
		{"udp6", IPProtoUDP, pub6, priv6, dst6, r6, 40001, 5353, 0, 0},
		{"tcp6", IPProtoTCP, pub6, priv6, dst6, r6, 1025, 33000, TCPSyn, 0},
		{"echo6", IPProtoICMPv6, pub6, priv6, dst6, r6, 7, 0x4242, 0, 0},
	}
	for _, c := range cases {
		// The translated packet went out as pub:pubP > dst; the error
		// comes back to pub. Reversing the source NAT must give the error
		// about priv:privP > dst, sent to priv.
		got := errorAbout(t, Probe{Src: c.pub, Dst: c.dst, Proto: c.proto, SrcPort: c.pubP, DstPort: 53, TCPFlags: c.tcpFlags, Length: c.length}, c.router)
		want := errorAbout(t, Probe{Src: c.priv, Dst: c.dst, Proto: c.proto, SrcPort: c.privP, DstPort: 53, TCPFlags: c.tcpFlags, Length: c.length}, c.router)
		var p Parsed
		p.Decode(got)
		if !p.SetDstIP(c.priv) || !p.SetInnerSrc(c.priv, c.privP) {
			t.Fatalf("%s: rewrite refused", c.name)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: rewritten error\n got %x\nwant %x", c.name, got, want)
		}
		// And the destination side (reverse DNAT of an error coming back
		// through the translator the other way) round-trips.
		// For a quoted echo the identifier is both "ports".
		dport := uint16(53)
		if c.proto == IPProtoICMPv4 || c.proto == IPProtoICMPv6 {
			dport = c.privP
		}
		var q Parsed
		q.Decode(got)
		if !q.SetInnerDst(c.router, 9) || !q.SetInnerDst(c.dst, dport) || !bytes.Equal(got, want) {
			t.Errorf("%s: inner destination round trip changed the frame", c.name)
		}
	}
}

func TestSetInnerRefuses(t *testing.T) {
	b := make([]byte, 128)
	n, _ := BuildProbe(b, &Probe{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: IPProtoUDP})
	var p Parsed
	p.Decode(b[:n])
	if p.SetInnerSrc(netip.MustParseAddr("10.0.0.3"), 1) {
		t.Error("rewrote the quote of a packet that is not an ICMP error")
	}
	e := errorAbout(t, Probe{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: IPProtoUDP}, netip.MustParseAddr("10.0.0.254"))
	p.Decode(e)
	if p.SetInnerSrc(netip.MustParseAddr("2001:db8::1"), 1) {
		t.Error("wrote an IPv6 address into an IPv4 quote")
	}
}
