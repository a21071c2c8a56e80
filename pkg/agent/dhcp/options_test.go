package dhcp

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

func route(dst, gw string) model.Opt121Route {
	return model.Opt121Route{Destination: netip.MustParsePrefix(dst), Gateway: netip.MustParseAddr(gw)}
}

// TestClasslessRoutesRFC3442 checks the destination descriptors of RFC 3442
// §3, byte for byte, each followed by its router.
func TestClasslessRoutesRFC3442(t *testing.T) {
	gw := []byte{192, 0, 2, 1}
	for _, tc := range []struct {
		dst  string
		want []byte
	}{
		{"0.0.0.0/0", []byte{0}},
		{"10.0.0.0/8", []byte{8, 10}},
		{"10.0.0.0/24", []byte{24, 10, 0, 0}},
		{"10.17.0.0/16", []byte{16, 10, 17}},
		{"10.27.129.0/24", []byte{24, 10, 27, 129}},
		{"10.229.0.128/25", []byte{25, 10, 229, 0, 128}},
		{"10.198.122.47/32", []byte{32, 10, 198, 122, 47}},
	} {
		got, err := classlessRoutes([]model.Opt121Route{route(tc.dst, "192.0.2.1")}, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		if want := append(tc.want, gw...); !bytes.Equal(got, want) {
			t.Errorf("%s: %v, want %v", tc.dst, got, want)
		}
	}
}

func TestClasslessRoutesDefault(t *testing.T) {
	gw := netip.MustParseAddr("10.0.0.1")
	got, _ := classlessRoutes([]model.Opt121Route{route("10.1.0.0/16", "10.0.0.254")}, gw)
	if want := []byte{16, 10, 1, 10, 0, 0, 254, 0, 10, 0, 0, 1}; !bytes.Equal(got, want) {
		t.Errorf("with gateway: %v, want the default route appended %v", got, want)
	}
	got, _ = classlessRoutes([]model.Opt121Route{route("0.0.0.0/0", "10.0.0.9"), route("10.1.0.0/16", "10.0.0.254")}, gw)
	if want := []byte{0, 10, 0, 0, 9, 16, 10, 1, 10, 0, 0, 254}; !bytes.Equal(got, want) {
		t.Errorf("explicit default: %v, want it kept and no second default %v", got, want)
	}
	got, _ = classlessRoutes([]model.Opt121Route{route("10.1.0.0/16", "0.0.0.0")}, netip.Addr{})
	if want := []byte{16, 10, 1, 0, 0, 0, 0}; !bytes.Equal(got, want) {
		t.Errorf("on-link route, no gateway: %v, want %v", got, want)
	}
}

// TestClasslessRoutesDecoded reads option 121 of a real reply back with
// dhcpv4's decoder and checks that option 3 is still sent for clients that
// predate RFC 3442.
func TestClasslessRoutesDecoded(t *testing.T) {
	d := testDHCPSubnet()
	d.Opt121Routes = []model.Opt121Route{route("10.229.0.128/25", "10.0.0.253"), route("172.16.0.0/12", "10.0.0.254")}
	srv := NewServer(Config{}, mustSubnet(t, d, nil, overlayMTU))
	r := mustRun(t, srv, t0, msg(t, dhcpv4.MessageTypeDiscover, poolMAC))
	var got []string
	for _, rt := range r.m.ClasslessStaticRoute() {
		got = append(got, rt.Dest.String()+"="+rt.Router.String())
	}
	want := "10.229.0.128/25=10.0.0.253 172.16.0.0/12=10.0.0.254 0.0.0.0/0=10.0.0.1"
	if strings.Join(got, " ") != want {
		t.Errorf("routes %v, want %s", got, want)
	}
	if rs := r.m.Router(); len(rs) != 1 || rs[0].String() != "10.0.0.1" {
		t.Errorf("router option %v", rs)
	}

	// No routes configured: no option 121 at all, so that clients keep
	// using option 3.
	d.Opt121Routes = nil
	srv = NewServer(Config{}, mustSubnet(t, d, nil, overlayMTU))
	r = mustRun(t, srv, t0, msg(t, dhcpv4.MessageTypeDiscover, poolMAC))
	if _, ok := r.m.Options[121]; ok {
		t.Error("option 121 sent without routes")
	}
}

func TestMTU(t *testing.T) {
	for _, tc := range []struct {
		name            string
		subnet, overlay uint16
		want            []byte // nil: option absent
	}{
		{"overlay default", 0, 1450, []byte{0x05, 0xaa}},
		{"subnet overrides", 9000, 1450, []byte{0x23, 0x28}},
		{"subnet without overlay", 1400, 0, []byte{0x05, 0x78}},
		{"neither", 0, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := testDHCPSubnet()
			d.MTU = tc.subnet
			srv := NewServer(Config{}, mustSubnet(t, d, testHosts(), tc.overlay))
			r := mustRun(t, srv, t0, msg(t, dhcpv4.MessageTypeDiscover, hostMAC))
			got, ok := r.m.Options[26]
			if ok != (tc.want != nil) || !bytes.Equal(got, tc.want) {
				t.Errorf("option 26 = %v (present %v), want %v", got, ok, tc.want)
			}
		})
	}
}

func TestNewSubnetErrors(t *testing.T) {
	mac2 := packet.MAC{2, 0, 0, 0, 0, 2}
	host := func(mac packet.MAC, a, name string) model.DHCPHost {
		return model.DHCPHost{MAC: mac, Address: netip.MustParseAddr(a), Name: name}
	}
	var manyDNS []netip.Addr
	for i := range 40 {
		manyDNS = append(manyDNS, netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}))
	}
	var longRoutes []model.Opt121Route
	for i := range 30 {
		longRoutes = append(longRoutes, route(netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}).String()+"/32", "10.0.0.254"))
	}
	for _, tc := range []struct {
		name  string
		edit  func(*model.DHCPSubnet)
		hosts []model.DHCPHost
		mtu   uint16
		want  string
	}{
		{"IPv6", func(d *model.DHCPSubnet) { d.Subnet = netip.MustParsePrefix("fd00::/64"); d.Gateway = netip.Addr{} }, nil, 0, "IPv4"},
		{"gateway outside", func(d *model.DHCPSubnet) { d.Gateway = netip.MustParseAddr("10.9.9.9") }, nil, 0, "gateway"},
		{"no server identifier", func(d *model.DHCPSubnet) { d.Gateway = netip.Addr{} }, nil, 0, "server_address"},
		{"IPv6 server", func(d *model.DHCPSubnet) { d.ServerAddress = netip.MustParseAddr("fd00::1") }, nil, 0, "server address"},
		{"host outside", nil, []model.DHCPHost{host(hostMAC, "10.1.0.5", "")}, 0, "outside"},
		{"host on network address", nil, []model.DHCPHost{host(hostMAC, "10.0.0.0", "")}, 0, "network or broadcast"},
		{"host on gateway", nil, []model.DHCPHost{host(hostMAC, "10.0.0.1", "")}, 0, "gateway"},
		{"duplicate MAC", nil, []model.DHCPHost{host(hostMAC, "10.0.0.5", ""), host(hostMAC, "10.0.0.6", "")}, 0, "twice"},
		{"duplicate address", nil, []model.DHCPHost{host(hostMAC, "10.0.0.5", ""), host(mac2, "10.0.0.5", "")}, 0, "share"},
		{"multicast MAC", nil, []model.DHCPHost{host(packet.MAC{1, 0, 0x5e, 0, 0, 1}, "10.0.0.5", "")}, 0, "unicast"},
		{"host of another subnet", nil, []model.DHCPHost{{DHCPSubnetID: "sub-2", MAC: hostMAC, Address: netip.MustParseAddr("10.0.0.5")}}, 0, "belongs to"},
		{"IPv6 DNS", func(d *model.DHCPSubnet) { d.DNSServers = []netip.Addr{netip.MustParseAddr("fd00::53")} }, nil, 0, "DNS"},
		{"MTU below 68", nil, nil, 60, "MTU"},
		{"option 121 too long", func(d *model.DHCPSubnet) { d.Opt121Routes = longRoutes }, nil, 0, "255"},
		{"options over 576 bytes", func(d *model.DHCPSubnet) { d.DNSServers = manyDNS }, []model.DHCPHost{host(hostMAC, "10.0.0.5", strings.Repeat("h", 150))}, 0, "576"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := testDHCPSubnet()
			if tc.edit != nil {
				tc.edit(&d)
			}
			_, err := NewSubnet(d, tc.hosts, tc.mtu)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	// The largest configuration that fits fills the 576-byte datagram
	// exactly (checkReply enforces the limit); one byte more is refused.
	d := testDHCPSubnet()
	d.DNSServers = manyDNS
	if _, err := NewSubnet(d, []model.DHCPHost{host(hostMAC, "10.0.0.5", strings.Repeat("h", 81))}, 1450); err == nil {
		t.Error("options one byte over the limit accepted")
	}
	s, err := NewSubnet(d, []model.DHCPHost{host(hostMAC, "10.0.0.5", strings.Repeat("h", 80))}, 1450)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, MaxReplyLen)
	n, _ := handle(NewServer(Config{}, s), clientFrame(msg(t, dhcpv4.MessageTypeDiscover, hostMAC)), t0, out)
	if n != MaxReplyLen {
		t.Errorf("largest reply is %d bytes, want exactly MaxReplyLen (%d)", n, MaxReplyLen)
	}
	r := mustRun(t, NewServer(Config{}, s), t0, msg(t, dhcpv4.MessageTypeDiscover, hostMAC))
	if len(r.m.DNS()) != 40 || len(r.m.HostName()) != 80 {
		t.Errorf("big reply: %d DNS servers, host name of %d", len(r.m.DNS()), len(r.m.HostName()))
	}
}
