package packet

import (
	"net/netip"
	"testing"
)

func TestBuildProbeDecodes(t *testing.T) {
	src4, dst4 := netip.MustParseAddr("10.0.1.11"), netip.MustParseAddr("10.0.2.12")
	src6, dst6 := netip.MustParseAddr("2001:db8:1::11"), netip.MustParseAddr("2001:db8:2::12")
	mac := MAC{2, 0, 0, 0, 0, 1}
	cases := []struct {
		name string
		p    Probe
		l4   L4
	}{
		{"tcp4", Probe{EthSrc: mac, Src: src4, Dst: dst4, Proto: IPProtoTCP, SrcPort: 1234, DstPort: 80, DF: true}, L4TCP},
		{"udp4 vlan", Probe{EthSrc: mac, VLAN: 7, Src: src4, Dst: dst4, Proto: IPProtoUDP, SrcPort: 5, DstPort: 53, Length: 1000}, L4UDP},
		{"icmp4", Probe{EthSrc: mac, Src: src4, Dst: dst4}, L4ICMPv4},
		{"icmp6", Probe{EthSrc: mac, Src: src6, Dst: dst6, TTL: 3}, L4ICMPv6},
		{"tcp6", Probe{EthSrc: mac, Src: src6, Dst: dst6, Proto: IPProtoTCP, DstPort: 22}, L4TCP},
	}
	buf := make([]byte, 2048)
	for _, c := range cases {
		n, err := BuildProbe(buf, &c.p)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var p Parsed
		p.Decode(buf[:n])
		if p.Drop != DropNone || p.L4 != c.l4 || p.SrcIP != c.p.Src || p.DstIP != c.p.Dst {
			t.Errorf("%s: decoded %s", c.name, p.String())
		}
		if c.p.Src.Is4() && !p.IPChecksumOK {
			t.Errorf("%s: bad IPv4 header checksum", c.name)
		}
		if c.l4 != L4ICMPv4 && c.l4 != L4ICMPv6 && (p.SrcPort != c.p.SrcPort || p.DstPort != c.p.DstPort) {
			t.Errorf("%s: ports %d>%d", c.name, p.SrcPort, p.DstPort)
		}
		if c.p.VLAN != 0 && (p.VLANs != 1 || p.VLAN[0].VID != c.p.VLAN) {
			t.Errorf("%s: vlan %+v", c.name, p.VLAN)
		}
		if c.p.DF != p.DontFrag {
			t.Errorf("%s: DF %v", c.name, p.DontFrag)
		}
	}
	n, err := BuildProbe(buf, &Probe{ARP: true, EthSrc: mac, Src: src4, Dst: dst4})
	var p Parsed
	p.Decode(buf[:n])
	if err != nil || !p.IsARPRequest() || p.ARPTargetIP != dst4 {
		t.Errorf("arp probe: %v %s", err, p.String())
	}
	if _, err := BuildProbe(buf, &Probe{Src: src4, Dst: dst6}); err == nil {
		t.Error("mixed families accepted")
	}
	if _, err := BuildProbe(buf[:20], &Probe{Src: src4, Dst: dst4}); err == nil {
		t.Error("short buffer accepted")
	}
}
