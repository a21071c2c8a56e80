package flow

import "github.com/nagare/nagare/pkg/packet"

// Key is the exact-match key of a flow: what the simulation's decision
// may depend on, and nothing that varies packet by packet within a flow
// (TCP flags, sequence numbers, lengths, IP ID, echo sequence).
//
// Layout choices, all for the per-packet map lookup:
//   - Addresses are [16]byte (IPv4 as IPv4-mapped IPv6, ::ffff:a.b.c.d), not
//     netip.Addr: netip.Addr holds a pointer (its zone handle), which the
//     garbage collector must scan in every map bucket and which could not be
//     shared with a BPF map.
//   - Fields are ordered so the struct has no padding, and the one spare
//     slot is a named zero field. A pointer-free, padding-free struct is
//     "regular memory" to the Go runtime, so map hashing and == are a single
//     memhash/memequal over 68 bytes instead of a field-by-field walk.
//     key_test.go checks the size and the absence of padding.
type Key struct {
	// SrcIP and DstIP are the IP addresses, or ARP's sender and target
	// protocol addresses; zero for other frames.
	SrcIP, DstIP [16]byte
	// InPort is the datapath port the frame arrived on, set by the caller.
	InPort uint32
	// TunnelID is zero from FlowKey. A caller keying a decapsulated frame
	// by the tunnel it came through sets it from the outer Parsed's
	// TunnelID, so equal inner frames of two tenants stay distinct.
	TunnelID uint32
	// EthSrc and EthDst are the Ethernet addresses.
	EthSrc, EthDst packet.MAC
	// EtherType is the EtherType after the VLAN tags.
	EtherType uint16
	// VLAN holds each tag as VID | PCP<<13 | VLANPresent, outermost first;
	// zero when absent. The DEI bit's slot marks presence (as OVS's
	// vlan_tci does), so VID 0 tagged and untagged differ; DEI itself is
	// not keyed: drop eligibility does not change forwarding.
	VLAN [2]uint16
	// SrcPort and DstPort are the TCP/UDP ports. For ICMP, SrcPort is
	// type<<8 | code and DstPort the echo identifier (for echo and
	// timestamp messages; zero otherwise), which is what ICMP NAT and
	// conntrack key on.
	SrcPort, DstPort uint16
	// Proto is the IP protocol, or the low byte of the ARP operation.
	Proto uint8
	// TOS is the IPv4 TOS byte or IPv6 traffic class.
	TOS uint8
	// TTLClass is min(TTL, MaxTTLClass). The flow's actions decrement the
	// TTL by however many virtual routers the simulation crossed, and drop
	// or answer with time-exceeded when it runs out; that decision is the
	// same for every TTL of at least MaxTTLClass, so keying the exact TTL
	// would only multiply flows.
	TTLClass uint8
	// Frag is the packet.Frag class. Later fragments have no ports, so they
	// cannot share a flow with the first one.
	Frag packet.Frag
	// pad fills the struct to its alignment with a named field (a blank
	// _ field would make the runtime compare field by field). Always zero.
	pad [2]byte
}

// VLANPresent marks a Key.VLAN entry as a present tag.
const VLANPresent = 0x1000

// MaxTTLClass is the TTL at and above which TTLs share a flow: more than
// the longest chain of virtual routers a simulation crosses.
const MaxTTLClass = 32

// KeyOf returns the flow key of the decoded frame p, arriving on inPort.
// It is meaningful when Drop == DropNone; for other frames it is still
// deterministic, keyed on whatever decoded.
func KeyOf(p *packet.Parsed, inPort uint32) Key {
	k := Key{InPort: inPort}
	if p.L3Off == 0 {
		return k
	}
	k.EthSrc, k.EthDst, k.EtherType = p.EthSrc, p.EthDst, p.EtherType
	for i := 0; i < int(p.VLANs) && i < len(p.VLAN); i++ {
		t := &p.VLAN[i]
		k.VLAN[i] = t.VID&0x0fff | uint16(t.PCP&7)<<13 | VLANPresent
	}
	switch p.L3 {
	case packet.L3ARP:
		k.SrcIP, k.DstIP = p.ARPSenderIP.As16(), p.ARPTargetIP.As16()
		k.Proto = uint8(p.ARPOp)
		return k
	case packet.L3IPv4, packet.L3IPv6:
	default:
		return k
	}
	k.SrcIP, k.DstIP = p.SrcIP.As16(), p.DstIP.As16()
	k.Proto, k.TOS, k.Frag = p.IPProto, p.TOS, p.Frag
	k.TTLClass = min(p.TTL, MaxTTLClass)
	switch p.L4 {
	case packet.L4TCP, packet.L4UDP:
		k.SrcPort, k.DstPort = p.SrcPort, p.DstPort
	case packet.L4ICMPv4, packet.L4ICMPv6:
		k.SrcPort = uint16(p.ICMPType)<<8 | uint16(p.ICMPCode)
		if p.HasEchoID() {
			k.DstPort = p.ICMPEchoID
		}
	}
	return k
}
