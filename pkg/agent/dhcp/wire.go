package dhcp

import (
	"encoding/binary"

	"github.com/nagare/nagare/pkg/packet"
)

// Sizes and limits of the messages Handle reads and writes.
const (
	dhcpFixed  = 236           // op through file
	dhcpHdrLen = dhcpFixed + 4 // plus the magic cookie
	bootpMin   = 300           // RFC 951: some clients and relays drop shorter messages
	maxIPLen   = 576           // every DHCP client accepts a datagram this long (RFC 2131 §2)
	// Replies carry no IP options.
	maxDHCPLen = maxIPLen - packet.IPv4MinHeaderLen - packet.UDPHeaderLen
	maxOptLen  = maxDHCPLen - dhcpHdrLen // 308: room for options, END included

	// MaxReplyLen is the longest frame Handle writes: an out buffer this
	// long always holds the reply.
	MaxReplyLen = packet.UDP4HeaderLen + maxDHCPLen

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

// parse checks a client frame, decoded by pkg/packet, from its Ethernet
// header down to the DHCP options and extracts the request. It reads only
// inside the frame, whatever the lengths inside the frame claim.
func parse(p *packet.Parsed, r *request) (DropReason, bool) {
	if len(p.Frame()) < packet.EthHeaderLen {
		return DropTruncated, false
	}
	// Untagged IPv4 only: L3Off is past the Ethernet header and its tags.
	if p.L3Off != packet.EthHeaderLen || p.EtherType != packet.EtherTypeIPv4 {
		return DropNotDHCP, false
	}
	if p.L3 != packet.L3IPv4 { // the IPv4 header did not decode
		switch p.Drop {
		case packet.DropTruncated, packet.DropBadIPLength:
			return DropTruncated, false
		}
		return DropBadIPv4, false
	}
	if p.Frag != packet.FragNone {
		return DropFragment, false
	}
	if p.IPProto != packet.IPProtoUDP {
		return DropNotDHCP, false
	}
	if !p.IPChecksumOK {
		return DropBadChecksum, false
	}
	if p.L4 != packet.L4UDP { // the UDP header did not decode
		if p.L3End-p.L4Off < packet.UDPHeaderLen {
			return DropTruncated, false
		}
		return DropBadUDP, false
	}
	if p.DstPort != portServer {
		return DropNotDHCP, false
	}
	d := p.Payload()
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
	if p.EthSrc != r.mac {
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
