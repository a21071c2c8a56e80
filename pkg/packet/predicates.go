package packet

import "fmt"

// Frame returns the frame given to Decode. Rewrites change it in place.
func (p *Parsed) Frame() []byte { return p.b }

// Payload returns the L4 payload: the TCP segment data, the UDP datagram
// data, or the ICMP message body after its 8-byte header. Nil unless L4 is
// L4TCP, L4UDP, L4ICMPv4 or L4ICMPv6.
func (p *Parsed) Payload() []byte {
	switch p.L4 {
	case L4TCP, L4UDP, L4ICMPv4, L4ICMPv6:
		return p.b[p.PayloadOff:p.end]
	}
	return nil
}

// Inner returns the encapsulated frame of a tunnel packet, to be decoded
// with a second Parsed. Nil unless Tunnel != TunnelNone.
func (p *Parsed) Inner() []byte {
	if p.Tunnel == TunnelNone {
		return nil
	}
	return p.b[p.InnerOff:p.end]
}

// IsBroadcast reports whether the Ethernet destination is broadcast.
func (p *Parsed) IsBroadcast() bool { return p.L3Off != 0 && p.EthDst.IsBroadcast() }

// IsMulticast reports whether the Ethernet destination is a group address
// (broadcast included, as IEEE 802 defines it).
func (p *Parsed) IsMulticast() bool { return p.L3Off != 0 && p.EthDst.IsMulticast() }

// IsIPMulticast reports whether the IP destination is multicast.
func (p *Parsed) IsIPMulticast() bool { return p.isIP() && p.DstIP.IsMulticast() }

// IsFragment reports whether the packet is an IP fragment, first or later.
func (p *Parsed) IsFragment() bool { return p.isIP() && p.Frag != FragNone }

// IsARPRequest reports an ARP request.
func (p *Parsed) IsARPRequest() bool { return p.L3 == L3ARP && p.ARPOp == ARPRequest }

// IsARPReply reports an ARP reply.
func (p *Parsed) IsARPReply() bool { return p.L3 == L3ARP && p.ARPOp == ARPReply }

// IsGratuitousARP reports an ARP announcing its sender's own binding
// (RFC 5227 §3): sender and target protocol addresses are equal.
func (p *Parsed) IsGratuitousARP() bool {
	return p.L3 == L3ARP && p.ARPSenderIP == p.ARPTargetIP
}

// IsTCPSyn reports a TCP SYN without ACK: the first packet of a new
// connection.
func (p *Parsed) IsTCPSyn() bool {
	return p.L4 == L4TCP && p.TCPFlags&(TCPSyn|TCPAck|TCPRst) == TCPSyn
}

// IsTCPSynAck reports a TCP SYN+ACK, the second packet of a handshake.
func (p *Parsed) IsTCPSynAck() bool {
	return p.L4 == L4TCP && p.TCPFlags&(TCPSyn|TCPAck|TCPRst) == TCPSyn|TCPAck
}

// IsTCPRst reports a TCP segment with RST set.
func (p *Parsed) IsTCPRst() bool { return p.L4 == L4TCP && p.TCPFlags&TCPRst != 0 }

// IsTCPFin reports a TCP segment with FIN set.
func (p *Parsed) IsTCPFin() bool { return p.L4 == L4TCP && p.TCPFlags&TCPFin != 0 }

// IsICMPError reports an ICMP error message (ICMPv4 types 3, 4, 5, 11,
// 12; ICMPv6 types 1-4); ICMPInnerOff then locates the quoted header.
func (p *Parsed) IsICMPError() bool {
	return (p.L4 == L4ICMPv4 || p.L4 == L4ICMPv6) && p.ICMPInnerOff != 0
}

// IsEchoRequest reports an ICMPv4 or ICMPv6 echo request.
func (p *Parsed) IsEchoRequest() bool {
	return p.L4 == L4ICMPv4 && p.ICMPType == ICMPv4EchoRequest ||
		p.L4 == L4ICMPv6 && p.ICMPType == ICMPv6EchoRequest
}

// IsEchoReply reports an ICMPv4 or ICMPv6 echo reply.
func (p *Parsed) IsEchoReply() bool {
	return p.L4 == L4ICMPv4 && p.ICMPType == ICMPv4EchoReply ||
		p.L4 == L4ICMPv6 && p.ICMPType == ICMPv6EchoReply
}

// IsNeighborSolicit reports a valid ICMPv6 Neighbor Solicitation.
func (p *Parsed) IsNeighborSolicit() bool {
	return p.L4 == L4ICMPv6 && p.ICMPType == ICMPv6NeighborSolicit
}

// IsNeighborAdvert reports a valid ICMPv6 Neighbor Advertisement.
func (p *Parsed) IsNeighborAdvert() bool {
	return p.L4 == L4ICMPv6 && p.ICMPType == ICMPv6NeighborAdvert
}

// IsRouterSolicit reports a valid ICMPv6 Router Solicitation.
func (p *Parsed) IsRouterSolicit() bool {
	return p.L4 == L4ICMPv6 && p.ICMPType == ICMPv6RouterSolicit
}

// IsDAD reports a Neighbor Solicitation for duplicate address detection
// (RFC 4862 §5.4): sent from the unspecified address.
func (p *Parsed) IsDAD() bool { return p.IsNeighborSolicit() && p.SrcIP.IsUnspecified() }

// HasPorts reports whether SrcPort and DstPort are valid.
func (p *Parsed) HasPorts() bool { return p.L4 == L4TCP || p.L4 == L4UDP }

// DSCP returns the differentiated services code point (TOS >> 2).
func (p *Parsed) DSCP() uint8 { return p.TOS >> 2 }

// ECN returns the explicit congestion notification bits (TOS & 3).
func (p *Parsed) ECN() uint8 { return p.TOS & 3 }

func (p *Parsed) isIP() bool { return p.L3 == L3IPv4 || p.L3 == L3IPv6 }

// String describes the frame for logs and traces; unlike the rest of the
// package it allocates, so keep it off the per-packet path.
func (p *Parsed) String() string {
	s := ""
	if p.L3Off != 0 {
		s = fmt.Sprintf("%v > %v", p.EthSrc, p.EthDst)
		for i := 0; i < int(p.VLANs); i++ {
			s += fmt.Sprintf(" vlan %d", p.VLAN[i].VID)
		}
	}
	switch p.L3 {
	case L3Unknown:
		s += fmt.Sprintf(" ethertype %#04x", p.EtherType)
	case L3ARP:
		s += fmt.Sprintf(" arp op %d %v (%v) > %v (%v)", p.ARPOp, p.ARPSenderIP, p.ARPSenderMAC, p.ARPTargetIP, p.ARPTargetMAC)
	case L3IPv4, L3IPv6:
		s += fmt.Sprintf(" %v %v > %v proto %d ttl %d", p.L3, p.SrcIP, p.DstIP, p.IPProto, p.TTL)
		if p.Frag != FragNone {
			s += fmt.Sprintf(" frag %v off %d", p.Frag, p.FragOff)
		}
	}
	switch p.L4 {
	case L4TCP:
		s += fmt.Sprintf(" tcp %d > %d flags %#02x", p.SrcPort, p.DstPort, p.TCPFlags)
	case L4UDP:
		s += fmt.Sprintf(" udp %d > %d", p.SrcPort, p.DstPort)
	case L4ICMPv4, L4ICMPv6:
		s += fmt.Sprintf(" %v type %d code %d", p.L4, p.ICMPType, p.ICMPCode)
	}
	if p.Tunnel != TunnelNone {
		s += fmt.Sprintf(" %v id %d", p.Tunnel, p.TunnelID)
	}
	if p.Drop != DropNone {
		s += " drop " + p.Drop.String()
	}
	return s
}

// HasEchoID reports whether the ICMP message carries an echo identifier
// (echo and timestamp requests and replies), which ICMP NAT and conntrack
// key on like a port.
func (p *Parsed) HasEchoID() bool {
	switch p.L4 {
	case L4ICMPv4:
		switch p.ICMPType {
		case ICMPv4EchoRequest, ICMPv4EchoReply, ICMPv4Timestamp, ICMPv4TimestampReply:
			return true
		}
	case L4ICMPv6:
		return p.ICMPType == ICMPv6EchoRequest || p.ICMPType == ICMPv6EchoReply
	}
	return false
}
