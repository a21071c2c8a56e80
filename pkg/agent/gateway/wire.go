package gateway

import (
	"encoding/binary"
	"errors"
)

// The probe packets' payload (datapath.SendProbe, packet.ProbeTunnelKey):
//
//	0  version (1)
//	1  type: 1 request, 2 report (an answer, or news sent unasked); 3 and 4
//	   are the datapaths' echoes (packet.AppendEchoRequest), never seen here
//	2  flags (reports): bit 0, the sender reaches the NSDB
//	3  reserved, 0
//	4  sequence number (big endian): a report echoes its request's, 0 when unasked
//	8  count of uplinks (reports; big endian uint16), then per uplink:
//	   4 bytes: bit 31 up, bits 0-23 the port's tunnel key
//
// A request is 8 bytes. Everything else the sender knows stays home: the
// receiver only learns which of the sender's uplinks carry traffic.
const (
	wireVersion = 1
	msgRequest  = 1
	msgReport   = 2
	headerLen   = 8
	flagNSDB    = 1
	// maxUplinks bounds a report (a gateway with more uplinks reports the
	// first ones; their order is the tunnel keys').
	maxUplinks = 256
)

// message is a decoded probe packet.
type message struct {
	typ     uint8
	nsdb    bool
	seq     uint32
	uplinks []uplinkState
}

// uplinkState is one uplink in a report.
type uplinkState struct {
	key uint32
	up  bool
}

var errMalformed = errors.New("malformed probe packet")

// decode reads a probe packet; uplinks are appended to buf's storage.
func decode(b []byte, buf []uplinkState) (message, error) {
	if len(b) < headerLen || b[0] != wireVersion || b[2]&^flagNSDB != 0 || b[3] != 0 {
		return message{}, errMalformed
	}
	m := message{typ: b[1], nsdb: b[2]&flagNSDB != 0, seq: binary.BigEndian.Uint32(b[4:])}
	switch m.typ {
	case msgRequest:
		if len(b) != headerLen || m.nsdb {
			return message{}, errMalformed
		}
	case msgReport:
		if len(b) < headerLen+2 {
			return message{}, errMalformed
		}
		n := int(binary.BigEndian.Uint16(b[headerLen:]))
		if n > maxUplinks || len(b) != headerLen+2+4*n {
			return message{}, errMalformed
		}
		m.uplinks = buf[:0]
		for i := range n {
			v := binary.BigEndian.Uint32(b[headerLen+2+4*i:])
			if v&0x7f000000 != 0 || v&0xffffff == 0 {
				return message{}, errMalformed
			}
			m.uplinks = append(m.uplinks, uplinkState{key: v & 0xffffff, up: v&(1<<31) != 0})
		}
	default:
		return message{}, errMalformed
	}
	return m, nil
}

// appendRequest appends a request.
func appendRequest(b []byte, seq uint32) []byte {
	b = append(b, wireVersion, msgRequest, 0, 0)
	return binary.BigEndian.AppendUint32(b, seq)
}

// appendReport appends a report of uplinks (at most maxUplinks).
func appendReport(b []byte, seq uint32, nsdb bool, uplinks []uplinkState) []byte {
	var flags byte
	if nsdb {
		flags |= flagNSDB
	}
	b = append(b, wireVersion, msgReport, flags, 0)
	b = binary.BigEndian.AppendUint32(b, seq)
	n := min(len(uplinks), maxUplinks)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	for _, u := range uplinks[:n] {
		v := u.key & 0xffffff
		if u.up {
			v |= 1 << 31
		}
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}
