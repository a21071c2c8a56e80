//go:build linux

package userspace

import (
	"encoding/binary"
	"fmt"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/offload"
	"github.com/nagare/nagare/pkg/packet"
)

// action is a flow.Action resolved for the hit path: the output port found,
// the tunnel header precomputed, and whether the frame must be copied
// before it is queued.
type action struct {
	flow.Action // as installed, for Flows

	out *port     // ActOutput
	dst [4]byte   // ActEncap: underlay IPv4 address
	hdr [8]byte   // ActEncap: VXLAN or GRE header carrying the egress port's key
	cp  bool      // ActOutput, ActEncap: a later action rewrites the frame, so queue a copy
	_   [0]func() // not comparable: actions are used by pointer
}

const (
	ethHdrLen  = 14
	vlanTagLen = 4
)

// compile resolves acts against the ports in ps, appending to dst (reused
// by Execute to avoid allocating). It fails on actions naming ports that
// are not attached, unknown action types and bad tunnel parameters.
func compile(ps *portSet, acts []flow.Action, dst []action) ([]action, error) {
	if dst == nil {
		dst = make([]action, 0, len(acts))
	}
	dst = dst[:0]
	for i := range acts {
		a := action{Action: acts[i]}
		switch a.Type {
		case flow.ActSetEthSrc, flow.ActSetEthDst, flow.ActPopVLAN, flow.ActDecTTL:
		case flow.ActSetL4Src, flow.ActSetL4Dst, flow.ActSetICMPID:
		case flow.ActSetDSCP:
			if a.DSCP > 63 {
				return nil, fmt.Errorf("action %d: set-dscp %d: DSCP out of range", i, a.DSCP)
			}
		case flow.ActMirror:
			if err := compileMirror(i, &a); err != nil {
				return nil, err
			}
		case flow.ActSetIPSrc, flow.ActSetIPDst, flow.ActInnerSrc, flow.ActInnerDst:
			if !a.Addr.IsValid() || a.Addr.Zone() != "" {
				return nil, fmt.Errorf("action %d: %s to %q: not an address", i, a.Type, a.Addr)
			}
		case flow.ActPushVLAN:
			if a.VLAN > 0x0fff {
				return nil, fmt.Errorf("action %d: push-vlan %d: VID out of range", i, a.VLAN)
			}
		case flow.ActOutput:
			a.out = ps.byIndex[a.Port]
			if a.out == nil {
				return nil, fmt.Errorf("action %d: output to port %d (%s): %w", i, a.Port, a.PortID, datapath.ErrUnknownPort)
			}
		case flow.ActEncap:
			if !a.Underlay.Is4() && !a.Underlay.Is4In6() {
				return nil, fmt.Errorf("action %d: encap to %q: only IPv4 underlays are supported", i, a.Underlay)
			}
			if a.TunnelKey > packet.MaxTunnelKey {
				return nil, fmt.Errorf("action %d: encap: tunnel key %d does not fit in 24 bits", i, a.TunnelKey)
			}
			a.dst = a.Underlay.Unmap().As4()
			switch a.Tunnel {
			case packet.TunnelVXLAN:
				// RFC 7348: flags with only I set, VNI in the top 24 bits.
				binary.BigEndian.PutUint32(a.hdr[0:], 0x08<<24)
				binary.BigEndian.PutUint32(a.hdr[4:], a.TunnelKey<<8)
			case packet.TunnelGRE:
				// RFC 2890: K bit, transparent Ethernet bridging, key.
				binary.BigEndian.PutUint16(a.hdr[0:], 0x2000)
				binary.BigEndian.PutUint16(a.hdr[2:], packet.EtherTypeTEB)
				binary.BigEndian.PutUint32(a.hdr[4:], a.TunnelKey)
			default:
				return nil, fmt.Errorf("action %d: encap: unknown tunnel type %s", i, a.Tunnel)
			}
		default:
			return nil, fmt.Errorf("action %d: unknown action type %d", i, a.Type)
		}
		dst = append(dst, a)
	}
	// An output must send the frame as it is at that point. If a later
	// action rewrites it in place, the output gets a copy; otherwise (the
	// common single-output case) it sends the buffer itself, uncopied.
	rewrite := false
	for i := len(dst) - 1; i >= 0; i-- {
		switch dst[i].Type {
		case flow.ActOutput, flow.ActEncap:
			dst[i].cp = rewrite
		case flow.ActMirror: // sent at once, from the buffer as it is
		default:
			rewrite = true
		}
	}
	return dst, nil
}

// apply runs acts on the frame buf[start:end], queueing outputs on w. buf
// has headroom before start for pushed VLAN tags. oh is the frame's
// offload state, passed on to local outputs (nil or zero: a complete
// frame); a frame with offload state must not meet an encapsulation
// (applyReceived completes or segments it first). It reports whether the
// actions ended in at least one output, counting the drop reason when they
// did not because an action failed.
func (w *worker) apply(buf []byte, start, end int, acts []action, oh *offload.Hdr) bool {
	sent := false
	decoded := false // w.rw holds the frame's offsets: valid until a VLAN push or pop moves it
	var out offload.Hdr
	if oh != nil {
		out = *oh
	}
	for i := range acts {
		a := &acts[i]
		switch a.Type {
		case flow.ActSetIPSrc, flow.ActSetIPDst, flow.ActSetL4Src, flow.ActSetL4Dst, flow.ActSetICMPID, flow.ActInnerSrc, flow.ActInnerDst, flow.ActSetDSCP:
			if !decoded {
				rewriteDecoder.Decode(&w.rw, buf[start:end])
				w.rw.L4CsumPartial = w.partialL4 && !out.IsZero()
				decoded = true
			}
			if a.Action.Rewrite(&w.rw) != nil {
				w.drops.add(rRewrite, 1)
				return false
			}
		case flow.ActSetEthSrc:
			copy(buf[start+6:start+12], a.MAC[:])
		case flow.ActSetEthDst:
			copy(buf[start:start+6], a.MAC[:])
		case flow.ActPushVLAN:
			// OpenFlow push_vlan: the new tag becomes the outermost, right
			// after the MAC addresses.
			if start < vlanTagLen {
				w.drops.add(rVLANHeadroom, 1)
				return false
			}
			copy(buf[start-vlanTagLen:], buf[start:start+12])
			start -= vlanTagLen
			decoded = false
			out.Shift(vlanTagLen)
			binary.BigEndian.PutUint16(buf[start+12:], packet.EtherTypeVLAN)
			binary.BigEndian.PutUint16(buf[start+14:], a.VLAN&0x0fff)
		case flow.ActPopVLAN:
			if end-start < ethHdrLen+vlanTagLen || !isTPID(binary.BigEndian.Uint16(buf[start+12:])) {
				w.drops.add(rPopUntagged, 1)
				return false
			}
			copy(buf[start+vlanTagLen:start+vlanTagLen+12], buf[start:start+12])
			start += vlanTagLen
			decoded = false
			out.Shift(-vlanTagLen)
		case flow.ActDecTTL:
			if !packet.DecFrameTTL(buf[start:end], a.Count) {
				w.drops.add(rTTLExpired, 1)
				return false
			}
		case flow.ActOutput:
			frame := buf[start:end]
			if a.cp {
				frame = w.snapshot(frame)
			}
			w.queueLocal(a.out, frame, out)
			sent = true
		case flow.ActEncap:
			frame := buf[start:end]
			if a.cp {
				frame = w.snapshot(frame)
			}
			w.queueTunnel(a, frame)
			sent = true
		case flow.ActMirror:
			w.sendMirror(a, buf[start:end])
		}
	}
	return sent
}

func isTPID(t uint16) bool { return t == packet.EtherTypeVLAN || t == packet.EtherTypeQinQ }

// rewriteDecoder finds the headers NAT rewrites. VXLAN decoding is off: a
// flow's frame is the overlay's inner frame, never a tunnel to look into.
var rewriteDecoder packet.Decoder
