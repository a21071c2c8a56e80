package flowstate

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/nagare/nagare/internal/splitmix"
	"github.com/nagare/nagare/pkg/packet"
)

// KeyType says what a Key names. Every entry has two keys, a forward and a
// reverse one, of paired types (MidoNet's FWD_x/REV_x NAT keys; for
// connection tracking both are KeyConn).
type KeyType uint8

const (
	// KeyConn is a tracked connection: the forward key is the tuple of its
	// first packet at the device it entered; the reverse key is the tuple a
	// reply has when it enters the device the first packet left by.
	KeyConn KeyType = iota + 1
	// KeyFwdSNAT is a connection's tuple before source translation on a
	// router; KeyRevSNAT is its replies' tuple before reverse translation.
	KeyFwdSNAT
	KeyRevSNAT
	// KeyFwdDNAT and KeyRevDNAT are the same for destination translation.
	KeyFwdDNAT
	KeyRevDNAT
	numKeyTypes
)

var keyTypeNames = [numKeyTypes]string{0: "none", KeyConn: "conn", KeyFwdSNAT: "fwd-snat", KeyRevSNAT: "rev-snat",
	KeyFwdDNAT: "fwd-dnat", KeyRevDNAT: "rev-dnat"}

func (t KeyType) String() string {
	if t < numKeyTypes {
		return keyTypeNames[t]
	}
	return "invalid"
}

// Echo marks the key of an ICMP echo exchange, whose "ports" are the echo
// identifier on both sides. The orientation tells a request from a reply,
// so that a reply nobody asked for does not pass as one, and an echo
// request in the reverse direction is a connection of its own.
const (
	EchoRequest uint8 = 1
	EchoReply   uint8 = 2
)

// Key is one side of an entry: a zone (the device that tracks the
// connection, or the router that translates it), a type, and a 5-tuple.
// ICMP echo carries the identifier in both port fields and its
// orientation in Echo; protocols without ports have zero ports.
//
// Like flow.Key, the struct holds no pointer and no padding (every
// byte is a named field), so a Key hashes and compares as one block of
// memory and a table of them is never scanned by the garbage collector.
// key_test.go checks both.
type Key struct {
	// Src and Dst are the addresses; IPv4 is stored IPv4-mapped.
	Src, Dst [16]byte
	// Zone is the tag of the device (or, later, port group) that owns the
	// key: stable across topology rebuilds and the same on every host, so
	// a key pushed to a peer means the same thing there.
	Zone             uint64
	SrcPort, DstPort uint16
	Proto            uint8
	Type             KeyType
	Echo             uint8
	// Family is 4 or 6, so that an IPv6 packet carrying IPv4-mapped
	// addresses (never valid on the wire, but forgeable) cannot hit an
	// IPv4 entry.
	Family uint8
}

// SrcAddr returns the source address in its own family.
func (k *Key) SrcAddr() netip.Addr { return k.addr(k.Src) }

// DstAddr returns the destination address in its own family.
func (k *Key) DstAddr() netip.Addr { return k.addr(k.Dst) }

func (k *Key) addr(b [16]byte) netip.Addr {
	a := netip.AddrFrom16(b)
	if k.Family == 4 {
		return a.Unmap()
	}
	return a
}

// Reverse returns the key of the opposite direction in the same zone and
// of the same type: addresses, ports and echo orientation swapped.
func (k Key) Reverse() Key {
	k.Src, k.Dst = k.Dst, k.Src
	k.SrcPort, k.DstPort = k.DstPort, k.SrcPort
	switch k.Echo {
	case EchoRequest:
		k.Echo = EchoReply
	case EchoReply:
		k.Echo = EchoRequest
	}
	return k
}

// Tag is the flow tag of the key: flows whose decision read the key
// (found or missing) carry it, and the agent invalidates it when the entry
// is created, imported, expires or is removed. It is a pure function of the
// key, the same on every host, unlike the table's seeded hash.
func (k Key) Tag() uint64 {
	h := uint64(0x636f6e6e2d6b6579) // "conn-key"
	for i := 0; i < 16; i += 8 {
		h = splitmix.Mix64(h ^ binary.LittleEndian.Uint64(k.Src[i:]))
		h = splitmix.Mix64(h ^ binary.LittleEndian.Uint64(k.Dst[i:]))
	}
	h = splitmix.Mix64(h ^ k.Zone)
	return splitmix.Mix64(h ^ uint64(k.SrcPort)<<48 ^ uint64(k.DstPort)<<32 ^ uint64(k.Proto)<<24 ^ uint64(k.Type)<<16 ^ uint64(k.Echo)<<8 ^ uint64(k.Family))
}

// String renders the key for traces: "conn 10.0.0.5:40000>192.0.2.9:80/6 zone 3f2a...".
func (k Key) String() string {
	ports := func(a netip.Addr, p uint16) string {
		if k.Proto == packet.IPProtoTCP || k.Proto == packet.IPProtoUDP || k.Echo != 0 {
			return netip.AddrPortFrom(a, p).String()
		}
		return a.String()
	}
	s := fmt.Sprintf("%s %s>%s proto %d", k.Type, ports(k.SrcAddr(), k.SrcPort), ports(k.DstAddr(), k.DstPort), k.Proto)
	switch k.Echo {
	case EchoRequest:
		s += " echo-request"
	case EchoReply:
		s += " echo-reply"
	}
	return s + fmt.Sprintf(" zone %016x", k.Zone)
}

// KeyOf returns the tuple of a decoded packet as a Key with zone and type
// unset. ok is false for packets that cannot be tracked: not IP, later
// fragments (no ports to key on), ICMP errors (they belong to the
// connection they quote: see InnerKeyOf) and ICMP messages that are neither
// echo nor error (neighbor discovery, router advertisements, ...), which
// have no connection to belong to.
func KeyOf(p *packet.Parsed) (k Key, ok bool) {
	if p.Drop != packet.DropNone || !setAddrs(&k, p.L3, p.SrcIP, p.DstIP) {
		return Key{}, false
	}
	if p.Frag == packet.FragLater {
		return Key{}, false
	}
	k.Proto = p.IPProto
	switch p.L4 {
	case packet.L4TCP, packet.L4UDP:
		k.SrcPort, k.DstPort = p.SrcPort, p.DstPort
	case packet.L4ICMPv4, packet.L4ICMPv6:
		switch {
		case p.IsEchoRequest():
			k.Echo = EchoRequest
		case p.IsEchoReply():
			k.Echo = EchoReply
		default:
			return Key{}, false
		}
		k.SrcPort, k.DstPort = p.ICMPEchoID, p.ICMPEchoID
	case packet.L4None:
		// IPv6 no-next-header, or a protocol whose header failed to
		// decode (the packet would have been dropped): keyed without ports.
	}
	return k, true
}

func setAddrs(k *Key, l3 packet.L3, src, dst netip.Addr) bool {
	switch l3 {
	case packet.L3IPv4:
		k.Family = 4
	case packet.L3IPv6:
		k.Family = 6
	default:
		return false
	}
	k.Src, k.Dst = src.As16(), dst.As16()
	return true
}

// InnerKeyOf returns the tuple of the packet an ICMP error quotes, as that
// packet's own Key (zone and type unset). The quoted header is what the
// sender of the error received, so its tuple is that of a packet that went
// the other way: conntrack and NAT look up its Reverse. ok is false when p
// is not an ICMP error, or the quote is too short for the ports (RFC 792
// guarantees the IP header and 8 bytes, which is enough for TCP, UDP and
// ICMP echo) or is of a protocol without an IPv4 or plain IPv6 header.
func InnerKeyOf(p *packet.Parsed) (k Key, ok bool) {
	if p.Drop != packet.DropNone || !p.IsICMPError() {
		return Key{}, false
	}
	b := p.Frame()[p.ICMPInnerOff:p.L3End]
	var l4 []byte
	switch p.L3 {
	case packet.L3IPv4:
		ihl := int(b[0]&0x0f) * 4 // the decoder checked 20 <= ihl <= len(b)
		if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
			return Key{}, false // a later fragment was quoted: no ports
		}
		k.Family, k.Proto = 4, b[9]
		k.Src = netip.AddrFrom4([4]byte(b[12:16])).As16()
		k.Dst = netip.AddrFrom4([4]byte(b[16:20])).As16()
		l4 = b[ihl:]
	case packet.L3IPv6:
		// Extension headers in a quote are not walked: the overlay's own
		// packets never carry them, and a quote is not trusted enough to
		// justify a second header walker.
		k.Family, k.Proto = 6, b[6]
		k.Src, k.Dst = [16]byte(b[8:24]), [16]byte(b[24:40])
		l4 = b[40:]
	default:
		return Key{}, false
	}
	switch k.Proto {
	case packet.IPProtoTCP, packet.IPProtoUDP:
		if len(l4) < 4 {
			return Key{}, false
		}
		k.SrcPort, k.DstPort = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	case packet.IPProtoICMPv4, packet.IPProtoICMPv6:
		if len(l4) < 8 || (k.Proto == packet.IPProtoICMPv4) != (k.Family == 4) {
			return Key{}, false
		}
		req, rep := packet.ICMPv4EchoRequest, packet.ICMPv4EchoReply
		if k.Family == 6 {
			req, rep = packet.ICMPv6EchoRequest, packet.ICMPv6EchoReply
		}
		switch l4[0] {
		case req:
			k.Echo = EchoRequest
		case rep:
			k.Echo = EchoReply
		default:
			return Key{}, false // an error about an error is never sent (RFC 1122)
		}
		id := binary.BigEndian.Uint16(l4[4:])
		k.SrcPort, k.DstPort = id, id
	}
	return k, true
}
