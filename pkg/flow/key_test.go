package flow

import (
	"net"
	"reflect"
	"testing"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/nagare/nagare/pkg/packet"
)

// TestKeyLayout holds Key to what its doc promises: no pointers, no
// compiler padding, 68 bytes. Adding a field that breaks this makes map
// lookups hash field by field (and breaks the BPF map's key layout); this
// test says so before a benchmark does.
func TestKeyLayout(t *testing.T) {
	typ := reflect.TypeOf(Key{})
	var sum uintptr
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		if f.Offset != sum {
			t.Errorf("padding before Key.%s (offset %d, expected %d)", f.Name, f.Offset, sum)
		}
		sum = f.Offset + f.Type.Size()
		if f.Name == "_" {
			t.Errorf("blank field in Key: the runtime would compare it field by field")
		}
		switch f.Type.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map, reflect.String, reflect.Interface, reflect.Struct, reflect.Float32, reflect.Float64:
			t.Errorf("Key.%s is a %v: not plain memory", f.Name, f.Type.Kind())
		}
	}
	if sum != typ.Size() || unsafe.Sizeof(Key{}) != 68 {
		t.Errorf("Key is %d bytes with %d of fields, want 68 and 68", typ.Size(), sum)
	}
	if !typ.Comparable() {
		t.Error("Key is not comparable")
	}
}

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 0xa}
	macR = net.HardwareAddr{2, 0, 0, 0, 0, 0x1}
	c4   = net.IP{10, 0, 0, 5}
	s4   = net.IP{10, 0, 1, 9}
	c6   = net.ParseIP("2001:db8::5")
	s6   = net.ParseIP("2001:db8:1::9")
)

// frame serialises layers with gopacket (an independent encoder), fixing
// lengths and checksums.
func frame(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	for _, l := range ls {
		switch l4 := l.(type) {
		case *layers.TCP:
			for _, n := range ls {
				if nl, ok := n.(gopacket.NetworkLayer); ok {
					_ = l4.SetNetworkLayerForChecksum(nl)
				}
			}
		case *layers.ICMPv6:
			for _, n := range ls {
				if nl, ok := n.(gopacket.NetworkLayer); ok {
					_ = l4.SetNetworkLayerForChecksum(nl)
				}
			}
		case *layers.UDP:
			for _, n := range ls {
				if nl, ok := n.(gopacket.NetworkLayer); ok {
					_ = l4.SetNetworkLayerForChecksum(nl)
				}
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func eth(typ layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macR, EthernetType: typ}
}

func ip4(proto layers.IPProtocol, ttl uint8) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TOS: 0x10, TTL: ttl, Protocol: proto, SrcIP: c4, DstIP: s4, Flags: layers.IPv4DontFragment}
}

func tcp4(t *testing.T, sport uint16, flags func(*layers.TCP), payload string) []byte {
	tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 80, Seq: 1, Window: 1000, ACK: true}
	if flags != nil {
		flags(tc)
	}
	return frame(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP, 64), tc, gopacket.Payload(payload))
}

func keyOf(b []byte, in uint32) Key {
	var p packet.Parsed
	p.Decode(b)
	return KeyOf(&p, in)
}

func TestKeyOf(t *testing.T) {
	k := keyOf(tcp4(t, 40000, nil, "hello"), 7)
	want := Key{
		SrcIP: [16]byte{10: 0xff, 11: 0xff, 12: 10, 15: 5}, DstIP: [16]byte{10: 0xff, 11: 0xff, 12: 10, 14: 1, 15: 9}, InPort: 7,
		EthSrc: packet.MAC(macA), EthDst: packet.MAC(macR), EtherType: packet.EtherTypeIPv4,
		SrcPort: 40000, DstPort: 80, Proto: packet.IPProtoTCP, TOS: 0x10, TTLClass: MaxTTLClass,
	}
	if k != want {
		t.Fatalf("tcp4 key:\n got %+v\nwant %+v", k, want)
	}

	// TCP flags, sequence numbers and payload are not in the key.
	other := tcp4(t, 40000, func(tc *layers.TCP) { tc.Seq, tc.PSH = 99999, true }, "other payload")
	if keyOf(other, 7) != k {
		t.Error("another segment of the same flow has another key")
	}

	ttl1 := frame(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP, 1), &layers.TCP{SrcPort: 40000, DstPort: 80}, gopacket.Payload("x"))
	tagged := frame(t, eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 0, Type: layers.EthernetTypeIPv4},
		ip4(layers.IPProtocolTCP, 64), &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1, Window: 1000, ACK: true}, gopacket.Payload("hello"))
	m := map[Key]int{k: 1}
	for name, g := range map[string]Key{
		"in port":      keyOf(tcp4(t, 40000, nil, "hello"), 8),
		"source port":  keyOf(tcp4(t, 40001, nil, "hello"), 7),
		"ttl 1":        keyOf(ttl1, 7),
		"vlan 0 tag":   keyOf(tagged, 7),
		"empty":        keyOf(nil, 7),
		"another host": keyOf(frame(t, eth(layers.EthernetTypeIPv4), &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: c4, DstIP: net.IP{10, 0, 1, 10}}, &layers.TCP{SrcPort: 40000, DstPort: 80}), 7),
	} {
		if _, ok := m[g]; ok {
			t.Errorf("%s: different flow, same key", name)
		}
	}

	// VLAN tags: VID, PCP and presence are keyed (VID 0 tagged differs from untagged).
	q := keyOf(frame(t, eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 42, Priority: 6, Type: layers.EthernetTypeIPv4},
		ip4(layers.IPProtocolTCP, 64), &layers.TCP{SrcPort: 1, DstPort: 2}), 0)
	if got, want := q.VLAN, [2]uint16{42 | 6<<13 | VLANPresent, 0}; got != want {
		t.Errorf("vlan key %x, want %x", got, want)
	}

	e := keyOf(frame(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4, 64),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 0x1234, Seq: 1}), 0)
	if e.SrcPort != uint16(packet.ICMPv4EchoRequest)<<8 || e.DstPort != 0x1234 {
		t.Errorf("icmp echo key ports %#x/%#x, want type<<8 and the identifier", e.SrcPort, e.DstPort)
	}
	quoted := frame(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP, 64), &layers.UDP{SrcPort: 5000, DstPort: 53})[14:]
	unreach := keyOf(frame(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4, 64),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(quoted)), 0)
	if unreach.SrcPort != 3<<8|3 || unreach.DstPort != 0 {
		t.Errorf("icmp unreachable key ports %#x/%#x, want type<<8|code and no identifier", unreach.SrcPort, unreach.DstPort)
	}

	e6 := keyOf(frame(t, eth(layers.EthernetTypeIPv6), &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: c6, DstIP: s6},
		&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}, &layers.ICMPv6Echo{Identifier: 0x4321, SeqNumber: 1}), 0)
	if e6.SrcPort != uint16(packet.ICMPv6EchoRequest)<<8 || e6.DstPort != 0x4321 || e6.SrcIP != [16]byte(c6.To16()) {
		t.Errorf("icmp6 echo key %+v", e6)
	}

	a := keyOf(frame(t, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: 1, SourceHwAddress: macA, SourceProtAddress: c4,
		DstHwAddress: make([]byte, 6), DstProtAddress: s4}), 0)
	if a.SrcIP != [16]byte(c4.To16()) || a.DstIP != [16]byte(s4.To16()) || a.Proto != 1 {
		t.Errorf("arp key %+v: want sender/target protocol addresses and the operation", a)
	}

	if got := keyOf(nil, 5); got != (Key{InPort: 5}) {
		t.Errorf("empty frame key %+v", got)
	}
	lldp := keyOf(frame(t, eth(0x88cc), gopacket.Payload(make([]byte, 46))), 5)
	if lldp != (Key{InPort: 5, EthSrc: packet.MAC(macA), EthDst: packet.MAC(macR), EtherType: 0x88cc}) {
		t.Errorf("L2-only frame key %+v", lldp)
	}
	later := keyOf(frame(t, eth(layers.EthernetTypeIPv4), &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: c4, DstIP: s4, FragOffset: 100}, gopacket.Payload(make([]byte, 24))), 0)
	if later.SrcPort != 0 || later.DstPort != 0 || later.Frag != packet.FragLater {
		t.Errorf("later fragment key %+v: want no ports and FragLater", later)
	}
}

// TestKeyOfDeterministic: a Parsed reused for another frame leaves nothing
// of the previous one in the key.
func TestKeyOfDeterministic(t *testing.T) {
	f := tcp4(t, 40000, nil, "hello")
	var p, q packet.Parsed
	p.Decode(f)
	q.Decode(make([]byte, 100))
	q.Decode(append([]byte(nil), f...))
	if KeyOf(&p, 1) != KeyOf(&q, 1) {
		t.Errorf("Decode left state from a previous frame in the key")
	}
}

// FuzzKeyOf: any frame, however malformed, gives a key without panicking,
// the same key every time, and the key of a frame the parser refused
// carries nothing but the port and what decoded before the refusal.
func FuzzKeyOf(f *testing.F) {
	t := &testing.T{}
	f.Add(tcp4(t, 40000, nil, "hello"))
	f.Add([]byte{})
	f.Add(make([]byte, 14))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p, q packet.Parsed
		p.Decode(b)
		q.Decode(make([]byte, 64))
		q.Decode(b)
		k := KeyOf(&p, 3)
		if k != KeyOf(&q, 3) {
			t.Fatal("KeyOf depends on a previous frame")
		}
		if k.InPort != 3 || k.pad != [2]byte{} {
			t.Fatalf("key %+v: wrong port or non-zero padding", k)
		}
	})
}
