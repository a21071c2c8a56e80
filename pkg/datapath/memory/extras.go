package memory

import (
	"fmt"
	"sync/atomic"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// Port rate limits (SetPortQoS) and port mirrors' remote copies
// (flow.ActMirror), as the userspace datapath does them.

// portQoS is a bound port's rate limits.
type portQoS struct {
	cfg                   datapath.PortQoS // guarded by Datapath.mu
	egressPol, ingressPol atomic.Pointer[datapath.Policer]
}

// SetPortQoS implements datapath.Datapath.
func (dp *Datapath) SetPortQoS(portID string, q datapath.PortQoS) error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed.Load() {
		return datapath.ErrClosed
	}
	for _, p := range dp.ports.Load().list {
		if p.cfg.PortID != portID {
			continue
		}
		if p.qos.cfg != q {
			p.qos.cfg = q
			p.qos.egressPol.Store(datapath.NewPolicer(q.EgressKbps, q.EgressBurstKbit))
			p.qos.ingressPol.Store(datapath.NewPolicer(q.IngressKbps, q.IngressBurstKbit))
		}
		return nil
	}
	return fmt.Errorf("datapath: set port QoS: port %s: %w", portID, datapath.ErrUnknownPort)
}

// policed reports a frame a port's bucket has no tokens for, counting it.
func (dp *Datapath) policed(pol *datapath.Policer, size int) bool {
	if pol == nil || pol.Allow(dp.now(), size) {
		return false
	}
	dp.drop(datapath.DropQoSPoliced, 1)
	return true
}

// mirrorSeq numbers ERSPAN copies.
var mirrorSeq atomic.Uint32

// mirror puts a GRE or ERSPAN copy of b on the underlay, to the mirror's
// remote endpoint, from this host's tunnel address.
func (dp *Datapath) mirror(a *flow.Action, b []byte) {
	buf := make([]byte, packet.MirrorHdrMax+len(b))
	n, err := packet.EncapMirror(buf, b, a.Tunnel, a.TunnelKey, mirrorSeq.Add(1))
	if err != nil {
		dp.drop(datapath.DropMirrorTxError, 1)
		return
	}
	// On the wire a copy is GRE, whatever it carries.
	dp.host.hub.send(dp.tun.Load().cfg.LocalIP, a.Underlay.Unmap(), packet.TunnelGRE, 0, buf[:n], nil)
}
