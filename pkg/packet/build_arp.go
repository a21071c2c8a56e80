package packet

import "net/netip"

// BuildARPReply writes the reply to the ARP request decoded into req,
// announcing that req's target IP is at mac (the agent answers for the
// virtual ports it knows, so requests never flood the overlay). The reply
// is unicast to the requester, on its VLANs.
func BuildARPReply(dst []byte, req *Parsed, mac MAC) (int, error) {
	if req.Drop != DropNone || !req.IsARPRequest() {
		return 0, ErrNotAnswerable
	}
	n := l2Len(req) + arpLen
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	o := replyL2(dst, req, mac, EtherTypeARP)
	putARP(dst[o:], ARPReply, mac, req.ARPTargetIP, req.ARPSenderMAC, req.ARPSenderIP)
	return n, nil
}

// BuildARPRequest writes a broadcast, untagged ARP request from srcMAC and
// srcIP asking for target. srcIP may be 0.0.0.0 for an RFC 5227 probe.
func BuildARPRequest(dst []byte, srcMAC MAC, srcIP, target netip.Addr) (int, error) {
	if !srcIP.Is4() || !target.Is4() {
		return 0, ErrBadArgument
	}
	n := EthHeaderLen + arpLen
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	copy(dst[0:6], BroadcastMAC[:])
	copy(dst[6:12], srcMAC[:])
	put16(dst[12:], EtherTypeARP)
	// The target hardware address is unknown; RFC 826 leaves it
	// unspecified and zero is what every stack sends.
	putARP(dst[EthHeaderLen:], ARPRequest, srcMAC, srcIP, MAC{}, target)
	return n, nil
}

func putARP(b []byte, op uint16, sha MAC, spa netip.Addr, tha MAC, tpa netip.Addr) {
	put16(b[0:], 1) // Ethernet
	put16(b[2:], EtherTypeIPv4)
	b[4], b[5] = 6, 4
	put16(b[6:], op)
	copy(b[8:14], sha[:])
	s := spa.As4()
	copy(b[14:18], s[:])
	copy(b[18:24], tha[:])
	t := tpa.As4()
	copy(b[24:28], t[:])
}
