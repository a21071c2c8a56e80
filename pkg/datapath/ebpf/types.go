//go:build linux

package ebpf

import (
	"fmt"
	"unsafe"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// Constants shared with bpf/nagare.h; layout_test.go checks the C side.
const (
	layoutVersion = 6
	maxActs       = 16
	ctRefs        = 8
	maxPorts      = 1024
	execSlots     = 4096
	noOutput      = 0xff

	flowStateful = 1
	flowSlow     = 2
	flowCT       = 4

	outPeer  = 1
	portPeer = 1

	policeEgress  = 0
	policeIngress = 1

	tunVXLAN = 1
	tunGRE   = 2

	upcallMiss    = 1
	upcallSlow    = 2
	upcallPunt    = 3
	upcallState   = 4
	upcallRecheck = 5
	upcallProbe   = 6
)

// Counter indexes of the "counters" map (enum in nagare.h).
const (
	cHits = iota
	cMisses
	cLost
	cVXLANRxPackets
	cVXLANRxBytes
	cVXLANTxPackets
	cVXLANTxBytes
	cGRERxPackets
	cGRERxBytes
	cGRETxPackets
	cGRETxBytes
	cVXLANTxErrors
	cGRETxErrors
	cExec
	cCtMissing
	cCtExpired
	cVXLANEchoes
	cGREEchoes
	numCounters
)

// Drop reasons of the "drops" map: below dropFlow the packet.Drop values,
// then the datapath's own.
const (
	dropFlow = 32 + iota
	dropTTLExpired
	dropPopUntagged
	dropVLANHeadroom
	dropRewriteRefused
	dropPortGone
	dropTunnelUnknownPeer
	dropTunnelUnknownKey
	dropTunnelMalformed
	dropTunnelDisabled
	dropTunnelTxError
	dropTunnelStateUnhandled
	dropExecStale
	dropUpcallLost
	dropRxOversize
	dropTunnelProbeUnhandled
	dropQoSPoliced
	numDrops
)

// DropExecStale counts frames of the agent's Execute that reached the
// kernel after their output slot had been reused (more than 4096 outputs
// in flight). Specific to this datapath.
const DropExecStale = "exec-stale"

// DropKeyMismatch counts misses whose key, computed by the kernel parser,
// differs from flow.KeyOf's: a bug in one of the parsers (the flow would
// never hit). The miss is still handed to the agent.
const DropKeyMismatch = "key-mismatch"

// dropName returns the Stats.Drops key of a kernel drop reason.
func dropName(r int) string {
	if r > 0 && r < 32 {
		return datapath.MalformedDrop(packet.Drop(r))
	}
	switch r {
	case dropFlow:
		return datapath.DropFlow
	case dropTTLExpired:
		return datapath.DropTTLExpired
	case dropPopUntagged:
		return datapath.DropPopUntagged
	case dropVLANHeadroom:
		return datapath.DropVLANHeadroom
	case dropRewriteRefused:
		return datapath.DropRewriteRefused
	case dropPortGone:
		return datapath.DropPortGone
	case dropTunnelUnknownPeer:
		return datapath.DropTunnelUnknownPeer
	case dropTunnelUnknownKey:
		return datapath.DropTunnelUnknownKey
	case dropTunnelMalformed:
		return datapath.DropTunnelMalformed
	case dropTunnelDisabled:
		return datapath.DropTunnelDisabled
	case dropTunnelTxError:
		return datapath.DropTunnelTxError
	case dropTunnelStateUnhandled:
		return datapath.DropTunnelStateUnhandled
	case dropExecStale:
		return DropExecStale
	case dropUpcallLost:
		return datapath.DropRxRingFull
	case dropRxOversize: // longer than the port's MTU allows
		return datapath.DropRxOverMTU
	case dropTunnelProbeUnhandled:
		return datapath.DropTunnelProbeUnhandled
	case dropQoSPoliced:
		return datapath.DropQoSPoliced
	}
	return fmt.Sprintf("kernel-reason-%d", r)
}

// The generated types are the C structs as the object's BTF describes
// them; these aliases name the ones the Go side builds.
type (
	kernelKey    = datapathFlowKey
	flowValue    = datapathFlowVal
	actionList   = datapathActionList
	kernelAction = datapathAction
	portInfo     = datapathPortInfo
	portCounters = datapathPortStats
	kernelConfig = datapathConfig
	execSlot     = datapathExecSlot
	policer      = datapathPolicer
	upcallHeader = datapathUpcall
)

// flow.Key is the kernel's flow_key byte for byte (layout_test.go), so a
// key converts without copying field by field.
var _ [unsafe.Sizeof(flow.Key{}) - unsafe.Sizeof(kernelKey{})]struct{}
var _ [unsafe.Sizeof(kernelKey{}) - unsafe.Sizeof(flow.Key{})]struct{}

func toKernelKey(k *flow.Key) *kernelKey { return (*kernelKey)(unsafe.Pointer(k)) }

func fromKernelKey(k *kernelKey) flow.Key { return *(*flow.Key)(unsafe.Pointer(k)) }

// compileAction converts one resolved action for the kernel. ports
// resolves output ports; it is called with the datapath lock held.
func compileAction(a *flow.Action, out *port) (kernelAction, error) {
	var k kernelAction
	k.Type = uint8(a.Type)
	switch a.Type {
	case flow.ActSetEthSrc, flow.ActSetEthDst:
		copy(k.Data[:], a.MAC[:])
	case flow.ActPushVLAN:
		if a.VLAN > 0x0fff {
			return k, fmt.Errorf("push-vlan %d: VID out of range", a.VLAN)
		}
		k.H = a.VLAN
	case flow.ActPopVLAN:
	case flow.ActDecTTL:
		k.B = a.Count
	case flow.ActOutput:
		k.W = uint32(out.ifindex)
		k.H = uint16(out.slot)
		if out.peer {
			k.B = outPeer
		}
	case flow.ActEncap:
		if !a.Underlay.Unmap().Is4() {
			return k, fmt.Errorf("encap to %q: only IPv4 underlays are supported", a.Underlay)
		}
		if a.TunnelKey > packet.MaxTunnelKey {
			return k, fmt.Errorf("encap: tunnel key %d does not fit in 24 bits", a.TunnelKey)
		}
		switch a.Tunnel {
		case packet.TunnelVXLAN:
			k.B = tunVXLAN
		case packet.TunnelGRE:
			k.B = tunGRE
		default:
			return k, fmt.Errorf("encap: unknown tunnel type %s", a.Tunnel)
		}
		k.W = a.TunnelKey
		ip := a.Underlay.Unmap().As4()
		copy(k.Data[:], ip[:])
	case flow.ActSetIPSrc, flow.ActSetIPDst:
		if !a.Addr.IsValid() || a.Addr.Zone() != "" {
			return k, fmt.Errorf("%s to %q: not an address", a.Type, a.Addr)
		}
		switch {
		case a.Addr.Is4In6():
			// Neither family's rewrite accepts a mapped address
			// (packet.canSetIP): family 0 is refused by the kernel too.
		case a.Addr.Is4():
			k.B = 4
			ip := a.Addr.As4()
			copy(k.Data[:], ip[:])
		default:
			k.B = 6
			ip := a.Addr.As16()
			copy(k.Data[:], ip[:])
		}
	case flow.ActSetL4Src, flow.ActSetL4Dst, flow.ActSetICMPID:
		k.H = a.L4Port
	default:
		return k, fmt.Errorf("unknown action type %d", a.Type)
	}
	return k, nil
}

func unsafePointer[T any](p *T) unsafe.Pointer { return unsafe.Pointer(p) }
