package packet

import "encoding/binary"

// DecFrameTTL decrements the IPv4 TTL (fixing the header checksum
// incrementally, RFC 1624) or the IPv6 hop limit of the Ethernet frame b
// by n, looking past VLAN tags. It returns false, changing nothing, if the
// TTL would drop below 1. Frames that are not IP, or too short to be, are
// left alone and reported true: the simulation only decrements IP packets,
// and a datapath applying a flow's actions must not drop what it cannot
// read. Unlike Parsed.DecTTL it needs no decoded frame, so it also applies
// after a VLAN push or pop moved the headers.
func DecFrameTTL(b []byte, n uint8) bool {
	if len(b) < EthHeaderLen {
		return true
	}
	l3 := 12
	et := binary.BigEndian.Uint16(b[l3:])
	for (et == EtherTypeVLAN || et == EtherTypeQinQ) && len(b) >= l3+vlanTagLen+2 {
		l3 += vlanTagLen
		et = binary.BigEndian.Uint16(b[l3:])
	}
	l3 += 2
	switch et {
	case EtherTypeIPv4:
		if len(b) < l3+IPv4MinHeaderLen || b[l3]>>4 != 4 {
			return true
		}
		ttl := b[l3+8]
		if ttl <= n {
			return false
		}
		old := binary.BigEndian.Uint16(b[l3+8:])
		b[l3+8] = ttl - n
		sum := UpdateChecksum16(binary.BigEndian.Uint16(b[l3+10:]), old, binary.BigEndian.Uint16(b[l3+8:]))
		binary.BigEndian.PutUint16(b[l3+10:], sum)
	case EtherTypeIPv6:
		if len(b) < l3+ipv6HdrLen || b[l3]>>4 != 6 {
			return true
		}
		if b[l3+7] <= n {
			return false
		}
		b[l3+7] -= n
	}
	return true
}
