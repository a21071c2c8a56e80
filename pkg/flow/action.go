// Package flow is the vocabulary shared by the simulator and every datapath:
// the exact-match flow Key (what a decision may depend on) and the Actions a
// flow applies. It is pure (no I/O) and depends only on pkg/packet, so a
// datapath links neither the simulator nor the topology model.
package flow

import (
	"net/netip"

	"github.com/nagare/nagare/pkg/packet"
)

// ActionType is the kind of a datapath action.
type ActionType uint8

const (
	ActSetEthSrc ActionType = iota + 1 // set the Ethernet source to MAC
	ActSetEthDst                       // set the Ethernet destination to MAC
	ActPushVLAN                        // push an 802.1Q tag with VID VLAN
	ActPopVLAN                         // pop the outermost VLAN tag
	ActDecTTL                          // decrement the TTL / hop limit Count times (the simulation checked it stays >= 1)
	ActOutput                          // send out of a local exterior port
	ActEncap                           // encapsulate to a remote host and send over the underlay
	ActSetIPSrc                        // set the IPv4 or IPv6 source to Addr (NAT), fixing checksums incrementally
	ActSetIPDst                        // set the IP destination to Addr
	ActSetL4Src                        // set the TCP or UDP source port to L4Port
	ActSetL4Dst                        // set the TCP or UDP destination port to L4Port
	ActSetICMPID                       // set the ICMP echo identifier to L4Port
	ActInnerSrc                        // set the source address and port (echo id) an ICMP error quotes to Addr, L4Port: per packet only (Result.SlowPath)
	ActInnerDst                        // the same for the quoted destination
	ActSetDSCP                         // set the DSCP of an IP packet to DSCP (QoS marking), fixing the IPv4 checksum
	ActMirror                          // send a copy, GRE- or ERSPAN-encapsulated (Tunnel) with TunnelKey, to Underlay: a port mirror's remote endpoint
)

var actionNames = [...]string{0: "none", ActSetEthSrc: "set-eth-src", ActSetEthDst: "set-eth-dst", ActPushVLAN: "push-vlan",
	ActPopVLAN: "pop-vlan", ActDecTTL: "dec-ttl", ActOutput: "output", ActEncap: "encap", ActSetIPSrc: "set-ip-src",
	ActSetIPDst: "set-ip-dst", ActSetL4Src: "set-l4-src", ActSetL4Dst: "set-l4-dst", ActSetICMPID: "set-icmp-id",
	ActInnerSrc: "set-inner-src", ActInnerDst: "set-inner-dst", ActSetDSCP: "set-dscp", ActMirror: "mirror"}

func (t ActionType) String() string {
	if int(t) < len(actionNames) {
		return actionNames[t]
	}
	return "invalid"
}

// Action is one datapath action. Actions apply in order, each to the packet
// as the previous ones left it (OpenFlow semantics), so a flood is a
// sequence of header changes and outputs.
type Action struct {
	Type ActionType
	// MAC is the address of ActSetEthSrc and ActSetEthDst.
	MAC packet.MAC
	// VLAN is the VID of ActPushVLAN.
	VLAN uint16
	// Count is the number of decrements of ActDecTTL.
	Count uint8
	// Tunnel is the encapsulation of ActEncap (packet.TunnelVXLAN or
	// packet.TunnelGRE) and of ActMirror (packet.TunnelGRE or
	// packet.TunnelERSPAN).
	Tunnel packet.Tunnel
	// Port is the Topology index of the egress port (ActOutput, ActEncap).
	Port int32
	// PortID is the egress port (ActOutput, ActEncap).
	PortID string
	// Interface is the host interface of ActOutput.
	Interface string
	// HostID is the remote host of ActEncap.
	HostID string
	// Underlay is the remote host's tunnel endpoint for ActEncap, the
	// mirror's remote endpoint for ActMirror.
	Underlay netip.Addr
	// TunnelKey is the tunnel key of the EGRESS port for ActEncap: the
	// remote host delivers by it without simulating again. For ActMirror
	// it is the GRE key (32 bits) or the ERSPAN session ID (its low 10
	// bits).
	TunnelKey uint32
	// DSCP is the value ActSetDSCP writes (0-63).
	DSCP uint8
	// Addr is the address of ActSetIPSrc, ActSetIPDst, ActInnerSrc and
	// ActInnerDst.
	Addr netip.Addr
	// L4Port is the port of ActSetL4Src and ActSetL4Dst, the identifier
	// of ActSetICMPID, the quoted port (or identifier) of ActInnerSrc and ActInnerDst.
	L4Port uint16
}
