package packet

// BuildTCPReset writes the RST that refuses the TCP segment decoded into
// seg (a "reject" rule), from seg's destination to its source, with MACs
// swapped and the same VLANs. The sequence numbers follow RFC 9293
// §3.10.7.1 so the sender's stack accepts the reset: if seg carries ACK,
// the RST takes its sequence number from seg's acknowledgment; otherwise
// it has sequence 0 and acknowledges everything seg occupied (data, plus
// one for SYN and one for FIN).
func BuildTCPReset(dst []byte, seg *Parsed) (int, error) {
	if seg.Drop != DropNone || seg.L4 != L4TCP {
		return 0, ErrNotAnswerable
	}
	// Never answer a reset with a reset: two stacks doing so would loop.
	// Nor answer a broadcast or multicast: TCP has no group semantics, so
	// such a segment is forged and a reply would be reflected.
	if seg.TCPFlags&TCPRst != 0 || seg.EthDst.IsMulticast() || seg.DstIP.IsMulticast() || seg.SrcIP.IsMulticast() || seg.SrcIP.IsUnspecified() {
		return 0, ErrSuppressed
	}
	if seg.L3 == L3IPv4 && (!isUnicast4(seg.SrcIP) || !isUnicast4(seg.DstIP)) {
		return 0, ErrSuppressed
	}
	if seg.Frag != FragNone {
		return 0, ErrSuppressed // segment length unknown until reassembled
	}
	ipLen := IPv4MinHeaderLen
	if seg.L3 == L3IPv6 {
		ipLen = ipv6HdrLen
	}
	n := l2Len(seg) + ipLen + tcpMinLen
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	var seq, ack uint32
	flags := TCPRst
	if seg.TCPFlags&TCPAck != 0 {
		seq = seg.TCPAck
	} else {
		segLen := uint32(seg.L3End - seg.PayloadOff)
		if seg.TCPFlags&TCPSyn != 0 {
			segLen++
		}
		if seg.TCPFlags&TCPFin != 0 {
			segLen++
		}
		ack = seg.TCPSeq + segLen
		flags |= TCPAck
	}
	et := EtherTypeIPv4
	if seg.L3 == L3IPv6 {
		et = EtherTypeIPv6
	}
	o := replyL2(dst, seg, seg.EthDst, et)
	if seg.L3 == L3IPv4 {
		putIPv4(dst[o:], 0, ipLen+tcpMinLen, IPProtoTCP, seg.DstIP, seg.SrcIP)
	} else {
		putIPv6(dst[o:], 0, tcpMinLen, IPProtoTCP, defaultTTL, seg.DstIP, seg.SrcIP)
	}
	o += ipLen
	t := dst[o:n]
	put16(t[0:], seg.DstPort)
	put16(t[2:], seg.SrcPort)
	put32(t[4:], seq)
	put32(t[8:], ack)
	t[12] = 5 << 4
	t[13] = flags
	put16(t[14:], 0) // window
	put16(t[16:], 0) // checksum
	put16(t[18:], 0) // urgent pointer
	put16(t[16:], L4Checksum(seg.DstIP, seg.SrcIP, IPProtoTCP, t))
	return n, nil
}
