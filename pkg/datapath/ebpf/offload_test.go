//go:build linux

package ebpf

import (
	"testing"

	"github.com/nagare/nagare/pkg/datapath/dptest"
	"github.com/nagare/nagare/pkg/offload"
	"github.com/nagare/nagare/pkg/packet"
)

// TestImpliedGSO: on a kernel that cannot tell the program a super-frame's
// GSO type, the type its headers imply passes offload.Check, and a frame
// that cannot be segmented gets one Check refuses.
func TestImpliedGSO(t *testing.T) {
	tcp4, _ := dptest.SuperFrame(false, 3000, 1000)
	tcp6, _ := dptest.SuperFrame(true, 3000, 1000)
	arp := append(append(make([]byte, 12), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1), make([]byte, 20)...)
	for _, c := range []struct {
		name  string
		frame []byte
		gso   uint8
		check offload.Error
	}{
		{"TCP over IPv4", tcp4, offload.GSOTCPv4, offload.OK},
		{"TCP over IPv6", tcp6, offload.GSOTCPv6, offload.OK},
		{"ARP", arp, 0x7f, offload.ErrGSOType},
	} {
		var dec packet.Decoder
		var p packet.Parsed
		dec.Decode(&p, c.frame)
		if p.Drop != packet.DropNone {
			t.Fatalf("%s: decode: %v", c.name, p.Drop)
		}
		g := impliedGSO(&p)
		h := offload.Hdr{GSOType: g, GSOSize: 1000}
		if g != c.gso || offload.Check(&h, &p) != c.check {
			t.Errorf("%s: implied GSO type %#x (Check: %v), want %#x (%v)", c.name, g, offload.Check(&h, &p), c.gso, c.check)
		}
	}
}
