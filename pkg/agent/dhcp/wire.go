package dhcp

import (
	"encoding/binary"

	"github.com/nagare/nagare/pkg/packet"
)

// Header sizes and limits of the frames Handle reads and writes.
const (
	ethLen     = 14
	ipv4Len    = 20 // replies carry no IP options
	udpLen     = 8
	dhcpFixed  = 236           // op through file
	dhcpHdrLen = dhcpFixed + 4 // plus the magic cookie
	bootpMin   = 300           // RFC 951: some clients and relays drop shorter messages
	maxIPLen   = 576           // every DHCP client accepts a datagram this long (RFC 2131 §2)
	maxDHCPLen = maxIPLen - ipv4Len - udpLen
	maxOptLen  = maxDHCPLen - dhcpHdrLen // 308: room for options, END included

	// MaxReplyLen is the longest frame Handle writes: an out buffer this
	// long always holds the reply.
	MaxReplyLen = ethLen + maxIPLen

	portServer = 67
	portClient = 68
)

// DHCP message types (RFC 2132 §9.6).
const (
	msgDiscover = 1
	msgOffer    = 2
	msgRequest  = 3
	msgDecline  = 4
	msgAck      = 5
	msgNak      = 6
	msgRelease  = 7
	msgInform   = 8
)

// Option codes Handle reads or writes.
const (
	optPad         = 0
	optSubnetMask  = 1
	optRouter      = 3
	optDNS         = 6
	optHostName    = 12
	optMTU         = 26
	optBroadcast   = 28
	optRequestedIP = 50
	optLeaseTime   = 51
	optMsgType     = 53
	optServerID    = 54
	optMessage     = 56
	optRenewal     = 58
	optRebinding   = 59
	optClassless   = 121
	optEnd         = 255
)

var magicCookie = [4]byte{99, 130, 83, 99}

const flagBroadcast = 0x8000

// request is what Handle needs from a client's frame. It is filled by parse
// and valid only when parse returns ok.
type request struct {
	mac       packet.MAC // chaddr, equal to the Ethernet source
	msgType   uint8
	xid       [4]byte
	flags     uint16
	ciaddr    uint32
	chaddr    [16]byte // echoed whole, as RFC 2131 asks
	requested uint32   // option 50; valid iff hasRequested
	serverID  uint32   // option 54; valid iff hasServerID

	hasRequested, hasServerID bool
}

// parse checks a client frame from the Ethernet header down to the DHCP
// options and extracts the request. It reads only inside frame, whatever
// the lengths inside frame claim.
func parse(frame []byte, r *request) (DropReason, bool) {
	if len(frame) < ethLen {
		return DropTruncated, false
	}
	if binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
		return DropNotDHCP, false
	}
	ip := frame[ethLen:]
	if len(ip) < ipv4Len {
		return DropTruncated, false
	}
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < ipv4Len {
		return DropBadIPv4, false
	}
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if total < ihl {
		return DropBadIPv4, false
	}
	if total > len(ip) || ihl > len(ip) {
		return DropTruncated, false
	}
	ip = ip[:total] // drop Ethernet padding
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return DropFragment, false
	}
	if ip[9] != 17 {
		return DropNotDHCP, false
	}
	if checksum(ip[:ihl], 0) != 0 {
		return DropBadChecksum, false
	}
	udp := ip[ihl:]
	if len(udp) < udpLen {
		return DropTruncated, false
	}
	if binary.BigEndian.Uint16(udp[2:]) != portServer {
		return DropNotDHCP, false
	}
	ulen := int(binary.BigEndian.Uint16(udp[4:]))
	if ulen < udpLen {
		return DropBadUDP, false
	}
	if ulen > len(udp) {
		return DropTruncated, false
	}
	d := udp[udpLen:ulen]
	if len(d) < dhcpHdrLen {
		return DropTruncated, false
	}
	if d[0] != 1 {
		return DropBadOp, false
	}
	if d[1] != 1 || d[2] != 6 {
		return DropBadHardware, false
	}
	if [4]byte(d[236:240]) != magicCookie {
		return DropBadCookie, false
	}
	if binary.BigEndian.Uint32(d[24:]) != 0 {
		return DropRelayed, false
	}
	copy(r.mac[:], d[28:34])
	if r.mac == (packet.MAC{}) || r.mac[0]&1 != 0 {
		return DropBadHardware, false
	}
	if [6]byte(frame[6:12]) != [6]byte(r.mac) {
		return DropChaddrMismatch, false
	}
	copy(r.xid[:], d[4:8])
	r.flags = binary.BigEndian.Uint16(d[10:])
	r.ciaddr = binary.BigEndian.Uint32(d[12:])
	copy(r.chaddr[:], d[28:44])
	r.msgType, r.hasRequested, r.hasServerID = 0, false, false
	if !parseOptions(d[dhcpHdrLen:], r) {
		return DropBadOptions, false
	}
	if r.msgType == 0 {
		return DropNoMessageType, false
	}
	return 0, true
}

// parseOptions walks the options area. Overloaded sname/file fields (option
// 52) are not read: the options Handle needs (53, 50, 54) are short and no
// client puts them there. A missing END is accepted when the options end on
// an option boundary, as most servers do.
func parseOptions(o []byte, r *request) bool {
	for i := 0; i < len(o); {
		code := o[i]
		if code == optPad {
			i++
			continue
		}
		if code == optEnd {
			return true
		}
		if i+2 > len(o) {
			return false
		}
		n := int(o[i+1])
		if i+2+n > len(o) {
			return false
		}
		v := o[i+2 : i+2+n]
		switch code {
		case optMsgType:
			if n != 1 || r.msgType != 0 || v[0] == 0 {
				return false
			}
			r.msgType = v[0]
		case optRequestedIP:
			if n != 4 || r.hasRequested {
				return false
			}
			r.requested, r.hasRequested = binary.BigEndian.Uint32(v), true
		case optServerID:
			if n != 4 || r.hasServerID {
				return false
			}
			r.serverID, r.hasServerID = binary.BigEndian.Uint32(v), true
		}
		i += 2 + n
	}
	return true
}

// checksum is the Internet checksum (RFC 1071) of b, starting from the
// partial sum initial. Verifying a header that carries its checksum yields 0.
// It adds 32-bit words into 64 bits and folds once at the end: the sum is
// the same (RFC 1071 §2(B)), with a quarter of the loop iterations of the
// 16-bit textbook loop, which was two thirds of Handle's time.
func checksum(b []byte, initial uint32) uint16 {
	s := uint64(initial)
	for len(b) >= 8 {
		s += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
		s += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// frameHeaders writes Ethernet, IPv4 and UDP headers in front of a DHCP
// payload of dlen bytes already at out[ethLen+ipv4Len+udpLen:], and the
// checksums over it.
func frameHeaders(out []byte, src, dst packet.MAC, srcIP, dstIP uint32, dlen int) {
	copy(out[0:6], dst[:])
	copy(out[6:12], src[:])
	binary.BigEndian.PutUint16(out[12:], 0x0800)

	ip := out[ethLen:]
	ip[0] = 0x45
	ip[1] = 0
	binary.BigEndian.PutUint16(ip[2:], uint16(ipv4Len+udpLen+dlen))
	binary.BigEndian.PutUint32(ip[4:], 0) // id 0, no flags: never fragmented
	ip[8] = 64
	ip[9] = 17
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint32(ip[12:], srcIP)
	binary.BigEndian.PutUint32(ip[16:], dstIP)
	binary.BigEndian.PutUint16(ip[10:], checksum(ip[:ipv4Len], 0))

	udp := ip[ipv4Len:]
	ulen := udpLen + dlen
	binary.BigEndian.PutUint16(udp[0:], portServer)
	binary.BigEndian.PutUint16(udp[2:], portClient)
	binary.BigEndian.PutUint16(udp[4:], uint16(ulen))
	binary.BigEndian.PutUint16(udp[6:], 0)
	pseudo := srcIP>>16 + srcIP&0xffff + dstIP>>16 + dstIP&0xffff + 17 + uint32(ulen)
	c := checksum(udp[:ulen], pseudo)
	if c == 0 {
		c = 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(udp[6:], c)
}

func put4(b []byte, v uint32) { binary.BigEndian.PutUint32(b, v) }

// optWriter appends options to a slice whose capacity the caller sized.
type optWriter struct {
	b []byte
}

func (w *optWriter) byte1(code, v uint8) { w.b = append(w.b, code, 1, v) }

func (w *optWriter) u32(code uint8, v uint32) {
	w.b = append(w.b, code, 4, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func (w *optWriter) bytes(code uint8, v []byte) {
	w.b = append(w.b, code, byte(len(v)))
	w.b = append(w.b, v...)
}

func (w *optWriter) str(code uint8, v string) {
	w.b = append(w.b, code, byte(len(v)))
	w.b = append(w.b, v...)
}
