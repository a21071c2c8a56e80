//go:build linux

package userspace

import (
	"sync/atomic"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/offload"
	"github.com/nagare/nagare/pkg/packet"
)

// reason indexes dropCounters; its labels are the datapath.Drop* names.
type reason uint8

const (
	rFlow reason = iota
	rTTLExpired
	rPopUntagged
	rVLANHeadroom
	rRewrite
	rPortGone
	rTunUnknownPeer
	rTunUnknownKey
	rTunMalformed
	rTunOversize
	rTunDisabled
	rTunTxError
	rTunState
	rTunProbe
	rQoS
	rMirrorTx
	rOverMTU
	numReasons
)

var reasonLabels = [numReasons]string{
	rFlow:           datapath.DropFlow,
	rTTLExpired:     datapath.DropTTLExpired,
	rPopUntagged:    datapath.DropPopUntagged,
	rVLANHeadroom:   datapath.DropVLANHeadroom,
	rRewrite:        datapath.DropRewriteRefused,
	rPortGone:       datapath.DropPortGone,
	rTunUnknownPeer: datapath.DropTunnelUnknownPeer,
	rTunUnknownKey:  datapath.DropTunnelUnknownKey,
	rTunMalformed:   datapath.DropTunnelMalformed,
	rTunOversize:    datapath.DropTunnelOversize,
	rTunDisabled:    datapath.DropTunnelDisabled,
	rTunTxError:     datapath.DropTunnelTxError,
	rTunState:       datapath.DropTunnelStateUnhandled,
	rTunProbe:       datapath.DropTunnelProbeUnhandled,
	rQoS:            datapath.DropQoSPoliced,
	rMirrorTx:       datapath.DropMirrorTxError,
	rOverMTU:        datapath.DropRxOverMTU,
}

// maxParseDrops bounds the packet.Drop values counted separately; larger
// ones (a newer packet package) share the last slot.
const maxParseDrops = 64

// dropCounters counts drops by reason. Each port's reader has its own, so
// the per-packet path never writes a cache line another core writes.
type dropCounters struct {
	r         [numReasons]atomic.Uint64
	malformed [maxParseDrops]atomic.Uint64
	offload   [maxOffloadDrops]atomic.Uint64
}

// maxOffloadDrops bounds the offload.Error values counted separately, as
// maxParseDrops does for packet.Drop.
const maxOffloadDrops = 16

func (d *dropCounters) add(r reason, n uint64) { d.r[r].Add(n) }

func (d *dropCounters) addOffload(e offload.Error) {
	d.offload[min(int(e), maxOffloadDrops-1)].Add(1)
}

func (d *dropCounters) addMalformed(pd packet.Drop) {
	d.malformed[min(int(pd), maxParseDrops-1)].Add(1)
}

// addTo adds the non-zero counters to m, keyed by label.
func (d *dropCounters) addTo(m map[string]uint64) {
	for i := range d.r {
		if n := d.r[i].Load(); n > 0 {
			m[reasonLabels[i]] += n
		}
	}
	for i := range d.malformed {
		if n := d.malformed[i].Load(); n > 0 {
			m[datapath.MalformedDrop(packet.Drop(i))] += n
		}
	}
	for i := range d.offload {
		if n := d.offload[i].Load(); n > 0 {
			m[datapath.OffloadDrop(offload.Error(i))] += n
		}
	}
}

// addFrom adds o's counters to d (a detached port's into the totals).
func (d *dropCounters) addFrom(o *dropCounters) {
	for i := range d.r {
		d.r[i].Add(o.r[i].Load())
	}
	for i := range d.malformed {
		d.malformed[i].Add(o.malformed[i].Load())
	}
	for i := range d.offload {
		d.offload[i].Add(o.offload[i].Load())
	}
}

// tunnelCounters counts one encapsulation's traffic.
type tunnelCounters struct {
	rxPackets, rxBytes, txPackets, txBytes, txErrors atomic.Uint64
	stateRx, stateTx                                 atomic.Uint64
	probeRx, probeTx                                 atomic.Uint64
	echoes                                           atomic.Uint64 // echo requests answered
}

func (c *tunnelCounters) snapshot() datapath.TunnelStats {
	return datapath.TunnelStats{
		RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(),
		TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(),
		TxErrors: c.txErrors.Load(),
		StateRx:  c.stateRx.Load(), StateTx: c.stateTx.Load(),
		ProbeRx: c.probeRx.Load(), ProbeTx: c.probeTx.Load(),
		Echoes: c.echoes.Load(),
	}
}
