package dhcp

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/nagare/nagare/pkg/packet"
)

// BenchmarkHandle measures the per-packet path as the agent pays for it:
// parse the DHCP message of a frame the datapath has decoded already,
// decide, build the reply frame with checksums. "+decode" adds decoding
// the frame (pkg/packet), which the datapath does for every frame anyway.
func BenchmarkHandle(b *testing.B) {
	for _, bc := range []struct {
		name  string
		frame func(b *testing.B) []byte
	}{
		{"discover-fixed-host", func(b *testing.B) []byte { return clientFrame(msg(b, dhcpv4.MessageTypeDiscover, hostMAC)) }},
		{"renew-pool-lease", func(b *testing.B) []byte {
			return clientFrame(msg(b, dhcpv4.MessageTypeRequest, poolMAC, dhcpv4.WithClientIP(ip4("10.0.0.77"))))
		}},
	} {
		for _, decode := range []bool{false, true} {
			name := bc.name
			if decode {
				name += "+decode"
			}
			b.Run(name, func(b *testing.B) {
				srv := testServer(b)
				frame, out := bc.frame(b), make([]byte, MaxReplyLen)
				var p packet.Parsed
				p.Decode(frame)
				if _, ok := srv.Handle(&p, t0, out); !ok { // binds the pool lease once
					b.Fatalf("no reply: %+v", srv.Stats())
				}
				b.ReportAllocs()
				b.SetBytes(int64(len(frame)))
				for b.Loop() {
					if decode {
						p.Decode(frame)
					}
					if _, ok := srv.Handle(&p, t0, out); !ok {
						b.Fatal("no reply")
					}
				}
			})
		}
	}
}

// BenchmarkDHCPv4Library is the same DISCOVER → OFFER done the way
// go-libraries.md §8 shows with insomniacslk/dhcp: FromBytes, a reply built
// with modifiers, ToBytes. It covers the DHCP payload only (no Ethernet, IP
// or UDP, no lease logic) and is here to show what Handle's own codec saves.
func BenchmarkDHCPv4Library(b *testing.B) {
	payload := msg(b, dhcpv4.MessageTypeDiscover, hostMAC).ToBytes()
	mask := net.CIDRMask(24, 32)
	gw, dns := ip4("10.0.0.1"), []net.IP{ip4("10.0.0.2"), ip4("8.8.8.8")}
	_, dst, _ := net.ParseCIDR("10.1.0.0/16")
	_, def, _ := net.ParseCIDR("0.0.0.0/0")
	routes := []*dhcpv4.Route{{Dest: dst, Router: ip4("10.0.0.254")}, {Dest: def, Router: gw}}
	b.ReportAllocs()
	for b.Loop() {
		req, err := dhcpv4.FromBytes(payload)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := dhcpv4.NewReplyFromRequest(req,
			dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), dhcpv4.WithYourIP(ip4("10.0.0.5")),
			dhcpv4.WithNetmask(mask), dhcpv4.WithLeaseTime(86400),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(gw)), dhcpv4.WithOption(dhcpv4.OptRouter(gw)),
			dhcpv4.WithOption(dhcpv4.OptDNS(dns...)), dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(routes...)),
			dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, []byte{0x05, 0xaa}),
			dhcpv4.WithOption(dhcpv4.OptHostName("vm5")))
		if err != nil {
			b.Fatal(err)
		}
		_ = resp.ToBytes()
	}
}
