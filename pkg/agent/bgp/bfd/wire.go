// Package bfd is Bidirectional Forwarding Detection for the uplinks' BGP
// peers: RFC 5880 asynchronous mode over single-hop UDP (RFC 5881),
// without authentication, echo or demand mode. This file is the control
// packet; session.go the state machine, pure and clock-free (the caller
// passes the time), so that it is tested with tables.
//
// Why not GoBGP's BFD: GoBGP v4.8 resets the BGP session whenever its
// detection time expires, also in the Init state of a session that was
// never up, and when its peer's BFD session is replaced after the BGP
// session comes up (FRR re-creates it once it learns the session's
// source address). Against an FRR that restarts, the two keep resetting
// each other and the session never returns. Here only a session that was
// Up going Down resets BGP (the controller decides), and a session
// answers a Poll at once, so the peer's fast timers apply as soon as it
// is Up.
package bfd

import (
	"encoding/binary"
	"errors"
	"time"
)

// State is a session's state (RFC 5880 §4.1).
type State uint8

const (
	AdminDown State = iota
	Down
	Init
	Up
)

func (s State) String() string {
	switch s {
	case AdminDown:
		return "admin-down"
	case Down:
		return "down"
	case Init:
		return "init"
	case Up:
		return "up"
	}
	return "invalid"
}

// Diagnostic codes (RFC 5880 §4.1) this implementation sends.
const (
	DiagNone           = 0
	DiagTimeExpired    = 1
	DiagNeighborDown   = 3
	DiagAdministrative = 7
)

// Packet is a BFD control packet.
type Packet struct {
	Diag        uint8
	State       State
	Poll, Final bool
	DetectMult  uint8
	MyDisc      uint32
	YourDisc    uint32
	// Intervals are on the wire in microseconds.
	DesiredMinTx  time.Duration
	RequiredMinRx time.Duration
}

// PacketLen is the length of a control packet without authentication.
const PacketLen = 24

// Ports of single-hop BFD (RFC 5881): control packets go to ControlPort
// from a source port in [SourcePortMin, 65535].
const (
	ControlPort   = 3784
	SourcePortMin = 49152
)

var errMalformed = errors.New("malformed BFD control packet")

// Decode reads a control packet and applies the reception checks of RFC
// 5880 §6.8.6 that need no session: version 1, a length that fits, no
// authentication (not supported: such packets are dropped), a non-zero
// detect multiplier and discriminator, no multipoint, and a zero Your
// Discriminator only in Down or AdminDown.
func Decode(b []byte) (Packet, error) {
	if len(b) < PacketLen || b[0]>>5 != 1 || int(b[3]) < PacketLen || int(b[3]) > len(b) {
		return Packet{}, errMalformed
	}
	flags := b[1]
	p := Packet{Diag: b[0] & 0x1f, State: State(flags >> 6), Poll: flags&0x20 != 0, Final: flags&0x10 != 0,
		DetectMult: b[2], MyDisc: binary.BigEndian.Uint32(b[4:]), YourDisc: binary.BigEndian.Uint32(b[8:]),
		DesiredMinTx:  time.Duration(binary.BigEndian.Uint32(b[12:])) * time.Microsecond,
		RequiredMinRx: time.Duration(binary.BigEndian.Uint32(b[16:])) * time.Microsecond}
	switch {
	case flags&0x04 != 0: // A: authentication
		return Packet{}, errMalformed
	case flags&0x01 != 0: // M: multipoint, reserved
		return Packet{}, errMalformed
	case p.Poll && p.Final:
		return Packet{}, errMalformed
	case p.DetectMult == 0 || p.MyDisc == 0:
		return Packet{}, errMalformed
	case p.YourDisc == 0 && p.State != Down && p.State != AdminDown:
		return Packet{}, errMalformed
	}
	return p, nil
}

// Append appends the packet's 24 bytes to b.
func Append(b []byte, p Packet) []byte {
	flags := byte(p.State) << 6
	if p.Poll {
		flags |= 0x20
	}
	if p.Final {
		flags |= 0x10
	}
	b = append(b, 1<<5|p.Diag&0x1f, flags, p.DetectMult, PacketLen)
	b = binary.BigEndian.AppendUint32(b, p.MyDisc)
	b = binary.BigEndian.AppendUint32(b, p.YourDisc)
	b = binary.BigEndian.AppendUint32(b, uint32(p.DesiredMinTx/time.Microsecond))
	b = binary.BigEndian.AppendUint32(b, uint32(p.RequiredMinRx/time.Microsecond))
	return binary.BigEndian.AppendUint32(b, 0) // no echo
}
