package dhcp

import (
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/nagare/nagare/pkg/model"
)

// TestHostOptions: a fixed host's extra options (Neutron's extra_dhcp_opts)
// are in its OFFER and ACK, replace the subnet's of the same code, and
// leave other clients' replies alone.
func TestHostOptions(t *testing.T) {
	hosts := testHosts()
	hosts[0].Options = []model.DHCPOption{{Code: 66, Value: "tftp.example.com"}, {Code: 67, Value: "pxelinux.0"},
		{Code: 6, Value: "192.0.2.53"}, {Code: 42, Value: "192.0.2.1,192.0.2.2"}, {Code: 26, Value: "9000"}}
	srv := NewServer(Config{}, mustSubnet(t, testDHCPSubnet(), hosts, overlayMTU))
	want := fullOptions(dhcpv4.MessageTypeAck, "vm5")
	want[66], want[67] = []byte("tftp.example.com"), []byte("pxelinux.0")
	want[6], want[42], want[26] = []byte{192, 0, 2, 53}, []byte{192, 0, 2, 1, 192, 0, 2, 2}, []byte{0x23, 0x28}
	checkOptions(t, dora(t, srv, t0, hostMAC).m, want)
	checkOptions(t, dora(t, srv, t0, poolMAC).m, fullOptions(dhcpv4.MessageTypeAck, ""))

	for _, tc := range []struct {
		opt  model.DHCPOption
		want string
	}{
		{model.DHCPOption{Code: 6, Value: "not-an-address"}, "not a list of IPv4 addresses"},
		{model.DHCPOption{Code: 1, Value: "10.0.0.1,10.0.0.2"}, "not one IPv4 address"},
		{model.DHCPOption{Code: 26, Value: "70000"}, "not an unsigned 16-bit number"},
		{model.DHCPOption{Code: 53, Value: "1"}, "cannot be set per host"},
		{model.DHCPOption{Code: 67, Value: strings.Repeat("x", 300)}, "not a text of 1 to 255 bytes"},
	} {
		hosts[0].Options = []model.DHCPOption{tc.opt}
		if _, err := NewSubnet(testDHCPSubnet(), hosts, overlayMTU); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("option %s: %v, want an error saying %q", tc.opt, err, tc.want)
		}
	}
	var o model.DHCPOption
	if err := o.UnmarshalText([]byte("42=10.0.0.1")); err != nil || o != (model.DHCPOption{Code: 42, Value: "10.0.0.1"}) {
		t.Errorf("parse 42=10.0.0.1: %v %v", o, err)
	}
	if err := o.UnmarshalText([]byte("300=x")); err == nil {
		t.Error("option 300 parsed")
	}
}
