package datapath

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/offload"
	"github.com/nagare/nagare/pkg/packet"
)

// Drop reasons, the keys of Stats.Drops. They are metrics labels: stable,
// kebab-case, shared by every implementation.
const (
	// DropFlow: a flow without outputs (a drop flow) matched.
	DropFlow = "flow-drop"
	// DropTTLExpired: a dec-ttl action found the TTL too small. The
	// simulation checks the TTL, so this means a flow keyed on TTL class
	// met a packet of a lower TTL it was not computed for.
	DropTTLExpired = "ttl-expired"
	// DropPopUntagged: a pop-vlan action met an untagged frame.
	DropPopUntagged = "pop-vlan-untagged"
	// DropVLANHeadroom: more VLAN tags pushed than the datapath has room
	// for in front of the frame.
	DropVLANHeadroom = "vlan-headroom"
	// DropRewriteRefused: a NAT rewrite (set-ip, set-l4, set-icmp-id,
	// set-inner) met a frame without the field or of the other address
	// family; the flow was computed for another kind of packet.
	DropRewriteRefused = "rewrite-refused"
	// DropPortGone: an output to a port detached after the flow was
	// installed (a race with RemovePort), or a miss of a port detached
	// (or, after a restart, not attached again yet) when the agent read it.
	DropPortGone = "port-gone"
	// DropRxRingFull: the kernel dropped a frame because the port's
	// receive ring was full: the reader (or the miss handler) was too slow.
	DropRxRingFull = "rx-ring-full"
	// DropRxOversize: a frame larger than the port's buffers.
	DropRxOversize = "rx-oversize"
	// DropRxOverMTU: a frame longer than its port's MTU, or a GSO
	// super-frame whose segments would be.
	DropRxOverMTU = "rx-over-mtu"
	// DropTxError: the kernel refused to send a frame out of a port (over
	// the MTU, device queue full, interface down).
	DropTxError = "tx-error"
	// DropTunnelUnknownPeer: a tunnel packet from an address that is not
	// a tunnel-zone peer.
	DropTunnelUnknownPeer = "tunnel-unknown-peer"
	// DropTunnelUnknownKey: a tunnel packet whose key names no local port.
	DropTunnelUnknownKey = "tunnel-unknown-key"
	// DropTunnelMalformed: a tunnel packet whose VXLAN or GRE header, or
	// inner Ethernet header, does not decode.
	DropTunnelMalformed = "tunnel-malformed"
	// DropTunnelOversize: a tunnel datagram larger than the receive buffer.
	DropTunnelOversize = "tunnel-oversize"
	// DropTunnelDisabled: an encap action for an encapsulation that
	// SetTunnels did not enable.
	DropTunnelDisabled = "tunnel-disabled"
	// DropTunnelTxError: the kernel refused to send a tunnel packet.
	DropTunnelTxError = "tunnel-tx-error"
	// DropTunnelStateUnhandled: a flow-state packet (packet.StateTunnelKey)
	// arrived and no StateHandler takes them, or it was empty.
	DropTunnelStateUnhandled = "tunnel-state-unhandled"
	// DropTunnelProbeUnhandled: a probe packet (packet.ProbeTunnelKey)
	// arrived and no ProbeHandler takes them, or it was empty.
	DropTunnelProbeUnhandled = "tunnel-probe-unhandled"
	// DropQoSPoliced: a port's rate limit (SetPortQoS) had no tokens left
	// for the frame.
	DropQoSPoliced = "qos-policed"
	// DropMirrorTxError: the kernel refused to send a mirror's copy.
	DropMirrorTxError = "mirror-tx-error"
)

// MalformedDropPrefix starts the reasons of frames received on a port that
// did not decode: "malformed-" + the packet.Drop name in kebab-case.
const MalformedDropPrefix = "malformed-"

// MalformedDrop returns the Stats.Drops key of a frame that decoded with
// drop d, e.g. "malformed-truncated".
func MalformedDrop(d packet.Drop) string {
	return MalformedDropPrefix + strings.ReplaceAll(d.String(), "_", "-")
}

// OffloadDropPrefix starts the reasons of frames whose offload metadata
// (the virtio_net_hdr of a frame with a partial checksum or of a GSO
// super-frame) contradicts the frame: "offload-" + the offload.Error label.
const OffloadDropPrefix = "offload-"

// OffloadDrop returns the Stats.Drops key of a frame whose offload
// metadata failed offload.Check with e, e.g. "offload-gso-mismatch".
func OffloadDrop(e offload.Error) string { return OffloadDropPrefix + e.String() }

// Stats is a snapshot of a datapath's counters, all totals since it was
// created except Flows.
type Stats struct {
	// Ports holds one entry per attached port, sorted by PortID.
	Ports []PortStats
	// VXLAN and GRE count the tunnel endpoints' traffic.
	VXLAN, GRE TunnelStats
	// Hits counts frames that matched a flow, Misses frames handed to the
	// miss handler.
	Hits, Misses uint64
	// Lost counts frames the kernel dropped before the datapath could read
	// them (receive rings full). With the miss handled inline, this is
	// where a slow handler shows, as a full upcall queue does elsewhere.
	Lost uint64
	// Flows is the number of flows installed now.
	Flows int
	// FlowsInstalled, FlowsExpired (idle), FlowsEvicted (table full),
	// FlowsInvalidated (Invalidate and Flush) and FlowsRemoved (their
	// port detached) count flow lifecycle events.
	FlowsInstalled, FlowsExpired, FlowsEvicted, FlowsInvalidated, FlowsRemoved uint64
	// Drops counts dropped frames by reason (the Drop* constants and
	// MalformedDrop keys); reasons never seen are absent.
	Drops map[string]uint64
}

// Drop returns the count for a reason, zero if absent.
func (s *Stats) Drop(reason string) uint64 { return s.Drops[reason] }

// Port returns the stats of the port with the given ID, and whether it is
// attached.
func (s *Stats) Port(portID string) (PortStats, bool) {
	for _, p := range s.Ports {
		if p.PortID == portID {
			return p, true
		}
	}
	return PortStats{}, false
}

// PortStats counts one port's traffic.
type PortStats struct {
	PortID    string
	Index     int32
	Interface string
	// RxPackets and RxBytes count frames received from the interface.
	RxPackets, RxBytes uint64
	// TxPackets and TxBytes count frames the kernel accepted for sending
	// (bytes are prorated in the rare batch where it refused some).
	TxPackets, TxBytes uint64
	// RxDropped counts frames lost on receive (ring full, oversize);
	// TxDropped frames the kernel refused to send.
	RxDropped, TxDropped uint64
}

// TunnelStats counts one tunnel endpoint's traffic. Bytes are those of the
// inner frames.
type TunnelStats struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	// TxErrors counts packets the kernel refused to send.
	TxErrors uint64
	// StateRx and StateTx count flow-state packets (packet.StateTunnelKey),
	// which are not in the counts above.
	StateRx, StateTx uint64
	// ProbeRx and ProbeTx count probe packets (packet.ProbeTunnelKey),
	// which are not in the counts above either.
	ProbeRx, ProbeTx uint64
	// Echoes counts the echo requests (packet.IsEchoRequest) this
	// datapath answered itself, in neither ProbeRx nor ProbeTx.
	Echoes uint64
}

// FlowInfo describes one installed flow, for dumps and metrics.
type FlowInfo struct {
	Key flow.Key
	// InPortID is the PortID of the port Key.InPort names.
	InPortID string
	// Actions and Tags are as installed; read-only.
	Actions []flow.Action
	Tags    []uint64
	Class   FlowClass
	MTU     int
	// State are the flow-state keys of FlowSpec.State; read-only.
	State []flowstate.Key
	// Packets and Bytes count the hits (frames and their bytes as
	// received).
	Packets, Bytes uint64
	// Installed is when the flow was installed, LastUsed when it last hit
	// (or Installed).
	Installed, LastUsed time.Time
}

// String formats the flow on one line, in the spirit of `mm-dpctl --dump`:
// the match, then counters, then actions.
func (f *FlowInfo) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "in_port(%d:%s) %s, class %s, packets %d, bytes %d, used %s ago, actions %s",
		f.Key.InPort, f.InPortID, FormatKey(&f.Key), f.Class, f.Packets, f.Bytes,
		time.Since(f.LastUsed).Truncate(time.Millisecond), FormatActions(f.Actions))
	return b.String()
}

// FormatKey formats the fields of a flow key an operator reads.
func FormatKey(k *flow.Key) string {
	var b strings.Builder
	fmt.Fprintf(&b, "eth(%s>%s", k.EthSrc, k.EthDst)
	for _, v := range k.VLAN {
		if v&flow.VLANPresent != 0 {
			fmt.Fprintf(&b, " vlan %d", v&0x0fff)
		}
	}
	fmt.Fprintf(&b, " type 0x%04x)", k.EtherType)
	src, dst := netip.AddrFrom16(k.SrcIP).Unmap(), netip.AddrFrom16(k.DstIP).Unmap()
	if !src.IsUnspecified() || !dst.IsUnspecified() {
		fmt.Fprintf(&b, " ip(%s>%s proto %d tos %d ttl-class %d frag %s)", src, dst, k.Proto, k.TOS, k.TTLClass, k.Frag)
	}
	if k.SrcPort != 0 || k.DstPort != 0 {
		fmt.Fprintf(&b, " l4(%d>%d)", k.SrcPort, k.DstPort)
	}
	return b.String()
}

// FormatActions formats an action list as "set-eth-dst(...),output(3:tap1)";
// an empty list is "drop".
func FormatActions(acts []flow.Action) string {
	if len(acts) == 0 {
		return "drop"
	}
	var b strings.Builder
	for i := range acts {
		a := &acts[i]
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(a.Type.String())
		switch a.Type {
		case flow.ActSetEthSrc, flow.ActSetEthDst:
			fmt.Fprintf(&b, "(%s)", a.MAC)
		case flow.ActPushVLAN:
			fmt.Fprintf(&b, "(%d)", a.VLAN)
		case flow.ActDecTTL:
			fmt.Fprintf(&b, "(%d)", a.Count)
		case flow.ActOutput:
			fmt.Fprintf(&b, "(%d:%s)", a.Port, a.Interface)
		case flow.ActEncap:
			fmt.Fprintf(&b, "(%s %s key %d)", a.Tunnel, a.Underlay, a.TunnelKey)
		case flow.ActSetIPSrc, flow.ActSetIPDst:
			fmt.Fprintf(&b, "(%s)", a.Addr)
		case flow.ActSetL4Src, flow.ActSetL4Dst, flow.ActSetICMPID:
			fmt.Fprintf(&b, "(%d)", a.L4Port)
		case flow.ActInnerSrc, flow.ActInnerDst:
			fmt.Fprintf(&b, "(%s)", netip.AddrPortFrom(a.Addr, a.L4Port))
		}
	}
	return b.String()
}
