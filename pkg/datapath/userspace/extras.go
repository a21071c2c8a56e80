//go:build linux

package userspace

import (
	"fmt"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/packet"
)

// Port rate limits (SetPortQoS) and port mirrors' remote copies
// (flow.ActMirror).

// SetPortQoS implements datapath.Datapath: the egress bucket polices
// what the port's reader receives, the ingress bucket what any worker
// queues to the port.
func (dp *Datapath) SetPortQoS(portID string, q datapath.PortQoS) error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return datapath.ErrClosed
	}
	p := dp.ports.Load().byID[portID]
	if p == nil {
		return fmt.Errorf("datapath: set port QoS: port %s: %w", portID, datapath.ErrUnknownPort)
	}
	if p.qos == q {
		return nil // unchanged: keep the buckets' tokens
	}
	p.qos = q
	p.egressPol.Store(datapath.NewPolicer(q.EgressKbps, q.EgressBurstKbit))
	p.ingressPol.Store(datapath.NewPolicer(q.IngressKbps, q.IngressBurstKbit))
	return nil
}

// sendMirror sends a copy of frame to a mirror's remote endpoint.
func (w *worker) sendMirror(a *action, frame []byte) {
	dp := w.dp
	if err := dp.mirror.Send(dp.tun.Load().cfg.LocalIP, a.Underlay, a.Tunnel, a.TunnelKey, frame); err != nil {
		w.drops.add(rMirrorTx, 1)
	}
}

// compileMirror checks an ActMirror and resolves its destination.
func compileMirror(i int, a *action) error {
	if a.Tunnel != packet.TunnelGRE && a.Tunnel != packet.TunnelERSPAN {
		return fmt.Errorf("action %d: mirror: unknown encapsulation %s", i, a.Tunnel)
	}
	if !a.Underlay.Is4() && !a.Underlay.Is4In6() {
		return fmt.Errorf("action %d: mirror to %q: only IPv4 endpoints are supported", i, a.Underlay)
	}
	a.dst = a.Underlay.Unmap().As4()
	return nil
}
