package flowstate

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The wire form of entries: what an agent pushes to its peers in flow-state
// packets (MidoNet's model, tunnel key packet.StateTunnelKey) and what it saves
// across restarts. It is compact and explicit, never a Go encoding: peers
// may run different builds, and a packet from the network is untrusted.
//
// A state packet is a version byte, a count byte, and count entries. An
// entry is its family, protocol and state (one byte each), then its
// forward and its reverse key, each as type, echo, zone (8 bytes, big
// endian), source and destination port (2 each) and the two addresses (4
// bytes each for IPv4, 16 for IPv6): 47 bytes for an IPv4 entry, 95 for
// IPv6.
const (
	// WireVersion is the version byte of a state packet.
	WireVersion = 1
	// MaxWireEntries is the most entries one state packet carries.
	MaxWireEntries = 255
	// WireHeaderLen is the length of a state packet's header.
	WireHeaderLen = 2
	// MaxEntryWireLen is the length of the longest entry (IPv6).
	MaxEntryWireLen = 3 + 2*(14+32)
)

// Errors of the decoder. They are sentinels: decoding untrusted packets
// does not allocate to fail.
var (
	ErrWireVersion   = errors.New("flowstate: state packet of an unknown version")
	ErrWireTruncated = errors.New("flowstate: state packet truncated")
	ErrWireMalformed = errors.New("flowstate: malformed entry in state packet")
)

// EntryWireLen returns the length of e's wire form.
func EntryWireLen(e *Entry) int { return EntryWireLenOf(e.Fwd.Family) }

// EntryWireLenOf returns the length of an entry whose wire form starts
// with family (its first byte): what a reader of a stream of entries must
// read before DecodeEntry. Unknown families get the longest length
// (DecodeEntry rejects them).
func EntryWireLenOf(family uint8) int {
	if family == 4 {
		return 3 + 2*(14+8)
	}
	return MaxEntryWireLen
}

// AppendEntry appends the wire form of e to b. e must be a valid entry
// (one the table holds or a simulation made).
func AppendEntry(b []byte, e *Entry) []byte {
	b = append(b, e.Fwd.Family, e.Fwd.Proto, byte(e.State))
	b = appendKey(b, &e.Fwd)
	return appendKey(b, &e.Rev)
}

func appendKey(b []byte, k *Key) []byte {
	b = append(b, byte(k.Type), k.Echo)
	b = binary.BigEndian.AppendUint64(b, k.Zone)
	b = binary.BigEndian.AppendUint16(b, k.SrcPort)
	b = binary.BigEndian.AppendUint16(b, k.DstPort)
	if k.Family == 4 {
		return append(append(b, k.Src[12:]...), k.Dst[12:]...)
	}
	return append(append(b, k.Src[:]...), k.Dst[:]...)
}

// DecodeEntry decodes the entry at the start of b and returns it and its
// length. Every field is checked: a decoded entry is one Import accepts
// as well-formed (paired key types, one family and protocol on both sides,
// a known state).
func DecodeEntry(b []byte) (Entry, int, error) {
	var e Entry
	if len(b) < 3 {
		return e, 0, ErrWireTruncated
	}
	fam, proto, st := b[0], b[1], State(b[2])
	alen := 16
	switch fam {
	case 4:
		alen = 4
	case 6:
	default:
		return e, 0, ErrWireMalformed
	}
	if st.Phase() >= numPhases || st&^(phaseMask|finFwd|finRev|replied) != 0 {
		return e, 0, ErrWireMalformed
	}
	n := 3 + 2*(14+2*alen)
	if len(b) < n {
		return e, 0, ErrWireTruncated
	}
	e.State = st
	off := 3
	for side := range 2 {
		k := &e.Fwd
		if side == 1 {
			k = &e.Rev
		}
		k.Family, k.Proto = fam, proto
		k.Type, k.Echo = KeyType(b[off]), b[off+1]
		k.Zone = binary.BigEndian.Uint64(b[off+2:])
		k.SrcPort = binary.BigEndian.Uint16(b[off+10:])
		k.DstPort = binary.BigEndian.Uint16(b[off+12:])
		off += 14
		if alen == 4 {
			k.Src = [16]byte{10: 0xff, 11: 0xff, 12: b[off], 13: b[off+1], 14: b[off+2], 15: b[off+3]}
			k.Dst = [16]byte{10: 0xff, 11: 0xff, 12: b[off+4], 13: b[off+5], 14: b[off+6], 15: b[off+7]}
		} else {
			k.Src, k.Dst = [16]byte(b[off:]), [16]byte(b[off+16:])
		}
		off += 2 * alen
		if k.Echo > EchoReply || (k.Echo != 0 && proto != protoICMPOf(fam)) {
			return e, 0, ErrWireMalformed
		}
	}
	switch {
	case e.Fwd.Type == KeyConn && e.Rev.Type == KeyConn,
		e.Fwd.Type == KeyFwdSNAT && e.Rev.Type == KeyRevSNAT,
		e.Fwd.Type == KeyFwdDNAT && e.Rev.Type == KeyRevDNAT:
	default:
		return e, 0, ErrWireMalformed
	}
	if e.Fwd == e.Rev {
		return e, 0, ErrWireMalformed
	}
	return e, n, nil
}

func protoICMPOf(family uint8) uint8 {
	if family == 4 {
		return 1
	}
	return 58
}

// AppendStatePacket appends a state packet holding entries (at most
// MaxWireEntries of them) to b.
func AppendStatePacket(b []byte, entries []Entry) ([]byte, error) {
	if len(entries) > MaxWireEntries {
		return b, fmt.Errorf("flowstate: %d entries in one state packet, at most %d", len(entries), MaxWireEntries)
	}
	b = append(b, WireVersion, byte(len(entries)))
	for i := range entries {
		b = AppendEntry(b, &entries[i])
	}
	return b, nil
}

// DecodeStatePacket appends the entries of the state packet b to out,
// in order. A malformed packet (trailing bytes included) appends nothing.
// With room in out it does not allocate.
func DecodeStatePacket(b []byte, out []Entry) ([]Entry, error) {
	if len(b) < WireHeaderLen {
		return out, ErrWireTruncated
	}
	if b[0] != WireVersion {
		return out, ErrWireVersion
	}
	n0 := len(out)
	off := WireHeaderLen
	for range int(b[1]) {
		e, n, err := DecodeEntry(b[off:])
		if err != nil {
			return out[:n0], err
		}
		off += n
		out = append(out, e)
	}
	if off != len(b) {
		return out[:n0], ErrWireMalformed
	}
	return out, nil
}
