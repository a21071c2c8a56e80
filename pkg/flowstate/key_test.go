package flowstate

import (
	"net/netip"
	"reflect"
	"testing"
	"unsafe"

	"github.com/nagare/nagare/pkg/packet"
)

// The Key must stay pointer-free and padding-free: the index compares keys
// as one block, and slabs of entries must not be scanned by the GC.
func TestKeyLayout(t *testing.T) {
	typ := reflect.TypeFor[Key]()
	sum := uintptr(0)
	for i := range typ.NumField() {
		f := typ.Field(i)
		sum += f.Type.Size()
		if f.Type.Kind() == reflect.Pointer || f.Type.Kind() == reflect.String || f.Type.Kind() == reflect.Slice {
			t.Errorf("field %s holds a pointer", f.Name)
		}
	}
	if sum != typ.Size() || typ.Size() != 48 {
		t.Errorf("Key: %d bytes of fields in %d bytes (want 48, no padding)", sum, typ.Size())
	}
	if s := unsafe.Sizeof(entry{}); s != 120 {
		t.Errorf("entry is %d bytes, documented as 120", s)
	}
}

func frame(t testing.TB, p packet.Probe) *packet.Parsed {
	t.Helper()
	b := make([]byte, 256)
	n, err := packet.BuildProbe(b, &p)
	if err != nil {
		t.Fatal(err)
	}
	var pp packet.Parsed
	pp.Decode(b[:n])
	if pp.Drop != packet.DropNone {
		t.Fatalf("probe does not decode: %v", pp.Drop)
	}
	return &pp
}

var (
	a4, b4 = netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("192.0.2.9")
	a6, b6 = netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("2001:db8:1::9")
)

func TestKeyOf(t *testing.T) {
	cases := []struct {
		name string
		p    packet.Probe
		ok   bool
		want Key
	}{
		{"tcp4", packet.Probe{Src: a4, Dst: b4, Proto: packet.IPProtoTCP, SrcPort: 1000, DstPort: 80}, true,
			Key{Src: a4.As16(), Dst: b4.As16(), SrcPort: 1000, DstPort: 80, Proto: 6, Family: 4}},
		{"udp6", packet.Probe{Src: a6, Dst: b6, Proto: packet.IPProtoUDP, SrcPort: 1000, DstPort: 53}, true,
			Key{Src: a6.As16(), Dst: b6.As16(), SrcPort: 1000, DstPort: 53, Proto: 17, Family: 6}},
		{"echo4", packet.Probe{Src: a4, Dst: b4, SrcPort: 0x1234}, true,
			Key{Src: a4.As16(), Dst: b4.As16(), SrcPort: 0x1234, DstPort: 0x1234, Proto: 1, Echo: EchoRequest, Family: 4}},
		{"echo6", packet.Probe{Src: a6, Dst: b6, SrcPort: 7}, true,
			Key{Src: a6.As16(), Dst: b6.As16(), SrcPort: 7, DstPort: 7, Proto: 58, Echo: EchoRequest, Family: 6}},
	}
	for _, c := range cases {
		got, ok := KeyOf(frame(t, c.p))
		if ok != c.ok || got != c.want {
			t.Errorf("%s: %v %v, want %v %v", c.name, got, ok, c.want, c.ok)
		}
	}
	// An echo reply is the other orientation: the reverse of its request.
	req := frame(t, packet.Probe{Src: a4, Dst: b4, SrcPort: 9})
	buf := make([]byte, 256)
	n, err := packet.BuildICMPv4EchoReply(buf, req)
	if err != nil {
		t.Fatal(err)
	}
	var rep packet.Parsed
	rep.Decode(buf[:n])
	rk, _ := KeyOf(&rep)
	qk, _ := KeyOf(req)
	if rk != qk.Reverse() || rk.Echo != EchoReply {
		t.Errorf("echo reply key %v is not the reverse of %v", rk, qk)
	}
	// Neighbor discovery and errors are not connections of their own.
	ns := make([]byte, 128)
	n, _ = packet.BuildNeighborSolicit(ns, packet.MAC{2}, a6, b6)
	var p packet.Parsed
	p.Decode(ns[:n])
	if _, ok := KeyOf(&p); ok {
		t.Error("neighbor solicitation keyed")
	}
}

func TestInnerKeyOf(t *testing.T) {
	for _, c := range []struct {
		name string
		p    packet.Probe
	}{
		{"tcp4", packet.Probe{Src: a4, Dst: b4, Proto: packet.IPProtoTCP, SrcPort: 1000, DstPort: 80}},
		{"udp4", packet.Probe{Src: a4, Dst: b4, Proto: packet.IPProtoUDP, SrcPort: 1000, DstPort: 53}},
		{"echo4", packet.Probe{Src: a4, Dst: b4, SrcPort: 55}},
		{"tcp6", packet.Probe{Src: a6, Dst: b6, Proto: packet.IPProtoTCP, SrcPort: 1000, DstPort: 80}},
		{"echo6", packet.Probe{Src: a6, Dst: b6, SrcPort: 55}},
	} {
		orig := frame(t, c.p)
		want, _ := KeyOf(orig)
		buf := make([]byte, 512)
		var n int
		var err error
		router := netip.MustParseAddr("198.51.100.1")
		if c.p.Src.Is4() {
			n, err = packet.BuildICMPv4Unreachable(buf, orig, router, packet.ICMPv4PortUnreachable)
		} else {
			n, err = packet.BuildICMPv6Unreachable(buf, orig, netip.MustParseAddr("2001:db8:ff::1"), packet.ICMPv6PortUnreachable)
		}
		if err != nil {
			t.Fatal(err)
		}
		var e packet.Parsed
		e.Decode(buf[:n])
		got, ok := InnerKeyOf(&e)
		if !ok || got != want {
			t.Errorf("%s: inner key %v %v, want %v", c.name, got, ok, want)
		}
		if _, ok := KeyOf(&e); ok {
			t.Errorf("%s: an ICMP error keyed as a connection of its own", c.name)
		}
	}
}

func TestReverseAndTag(t *testing.T) {
	k := tcp(zoneA, "10.0.0.5", 1, "192.0.2.9", 2)
	k.Type = KeyConn
	if k.Reverse().Reverse() != k {
		t.Error("Reverse is not an involution")
	}
	if k.Tag() == k.Reverse().Tag() {
		t.Error("a key and its reverse share a tag")
	}
	other := k
	other.Zone = zoneB
	if k.Tag() == other.Tag() {
		t.Error("zones do not change the tag")
	}
	if k.Tag() != tcp(zoneA, "10.0.0.5", 1, "192.0.2.9", 2).withType(KeyConn).Tag() {
		t.Error("tag is not a pure function of the key")
	}
}

func (k Key) withType(t KeyType) Key { k.Type = t; return k }
