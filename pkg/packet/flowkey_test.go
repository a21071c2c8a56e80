package packet

import (
	"bytes"
	"reflect"
	"testing"
	"unsafe"
)

// TestFlowKeyLayout holds FlowKey to what its doc promises: no pointers, no
// compiler padding, 68 bytes. Adding a field that breaks this makes map
// lookups hash field by field; this test says so before a benchmark does.
func TestFlowKeyLayout(t *testing.T) {
	typ := reflect.TypeOf(FlowKey{})
	var sum uintptr
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		if f.Offset != sum {
			t.Errorf("padding before FlowKey.%s (offset %d, expected %d)", f.Name, f.Offset, sum)
		}
		sum = f.Offset + f.Type.Size()
		if f.Name == "_" {
			t.Errorf("blank field in FlowKey: the runtime would compare it field by field")
		}
		switch f.Type.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map, reflect.String, reflect.Interface, reflect.Struct, reflect.Float32, reflect.Float64:
			t.Errorf("FlowKey.%s is a %v: not plain memory", f.Name, f.Type.Kind())
		}
	}
	if sum != typ.Size() || unsafe.Sizeof(FlowKey{}) != 68 {
		t.Errorf("FlowKey is %d bytes with %d of fields, want 68 and 68", typ.Size(), sum)
	}
	if !typ.Comparable() {
		t.Error("FlowKey is not comparable")
	}
}

func TestFlowKey(t *testing.T) {
	p := decode(tcp4Frame())
	k := p.FlowKey(7)
	want := FlowKey{
		SrcIP: ap(c4).As16(), DstIP: ap(s4).As16(), InPort: 7,
		EthSrc: macA, EthDst: macR, EtherType: EtherTypeIPv4,
		SrcPort: 40000, DstPort: 80, Proto: IPProtoTCP, TOS: 0x10, TTLClass: MaxTTLClass,
	}
	eq(t, "tcp4 key", k, want)

	// TCP flags, sequence numbers and payload are not in the key.
	f := tcp4Frame()
	other := tcpH(c4, s4, 40000, 80, 99999, 5, TCPAck|TCPPsh, []byte("other payload"))
	f = cat(f[:34], other)
	f[16], f[17] = 0, byte(20+len(other))
	ip4Fix(f[14:34])
	eq(t, "same flow, other segment", decode(f).FlowKey(7), k)

	m := map[FlowKey]int{k: 1}
	if m[decode(tcp4Frame()).FlowKey(7)] != 1 {
		t.Error("equal frames gave keys that do not find each other in a map")
	}
	for name, g := range map[string]FlowKey{
		"in port": p.FlowKey(8),
		"vlan":    decode(cat(ethH(macR, macA, EtherTypeIPv4, 0x81000000), tcp4Frame()[14:])).FlowKey(7),
		"port":    func() FlowKey { q := decode(tcp4Frame()); q.SetSrcPort(1); return q.FlowKey(7) }(),
		"ttl 1":   func() FlowKey { f := tcp4Frame(); f[22] = 1; return decode(f).FlowKey(7) }(),
		"frag":    decode(fragment4(tcp4Frame(), true, 0, 20+24)).FlowKey(7),
	} {
		if _, ok := m[g]; ok {
			t.Errorf("%s: different flow, same key", name)
		}
	}

	// VLAN 0 tagged differs from untagged; PCP is keyed.
	q := decode(cat(ethH(macR, macA, EtherTypeIPv4, 0x81000000|6<<13|0x1000|42), tcp4Frame()[14:]))
	eq(t, "vlan key", q.FlowKey(0).VLAN, [2]uint16{42 | 6<<13 | VLANPresent, 0})

	e := decode(echo4Frame()).FlowKey(0)
	eq(t, "icmp type/code", e.SrcPort, uint16(ICMPv4EchoRequest)<<8)
	eq(t, "icmp echo id", e.DstPort, 0x1234)
	e6 := decode(echo6Frame()).FlowKey(0)
	eq(t, "icmp6 type/code", e6.SrcPort, uint16(ICMPv6EchoRequest)<<8)
	eq(t, "icmp6 echo id", e6.DstPort, 0x4321)
	eq(t, "v6 addr", e6.SrcIP, ap(c6).As16())

	a := decode(arpReqFrame()).FlowKey(0)
	eq(t, "arp spa", a.SrcIP, ap(c4).As16())
	eq(t, "arp tpa", a.DstIP, ap(s4).As16())
	eq(t, "arp op", a.Proto, 1)

	eq(t, "empty frame", decode(nil).FlowKey(5), FlowKey{InPort: 5})
	lldp := decode(cat(ethH(macR, macA, 0x88cc), make([]byte, 46))).FlowKey(5)
	eq(t, "L2-only frame", lldp, FlowKey{InPort: 5, EthSrc: macA, EthDst: macR, EtherType: 0x88cc})
	later := decode(fragment4(tcp4Frame(), false, 100, 28)).FlowKey(0)
	eq(t, "later fragment has no ports", [2]uint16{later.SrcPort, later.DstPort}, [2]uint16{})
	eq(t, "later fragment class", later.Frag, FragLater)
}

func TestFlowKeyDeterministic(t *testing.T) {
	for _, f := range [][]byte{tcp4Frame(), tcp6Frame(), nsFrame(), vxlanFrame(1, tcp4Frame()), arpReqFrame()} {
		var p, q Parsed
		p.Decode(f)
		q.Decode(make([]byte, 100)) // leave stale state behind
		q.Decode(bytes.Clone(f))
		if p.FlowKey(1) != q.FlowKey(1) {
			t.Errorf("Decode left state from a previous frame in the key")
		}
	}
}
