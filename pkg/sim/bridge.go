package sim

import (
	"fmt"

	"github.com/nagare/nagare/pkg/packet"
)

// Bridge behaviour.
//
// VLANs: a port with VLAN N is an access port for N. Frames enter it
// untagged and are switched on VLAN N; they leave it untagged, and only
// frames of VLAN N leave by it. A port with VLAN 0 is a trunk: a tagged
// frame entering it is switched on its tag, an untagged one on VLAN 0, and
// frames leave it tagged with their VLAN (untagged for VLAN 0). MAC tables,
// ARP suppression and static router MACs are per VLAN. A router port linked
// to an access port therefore sits on that VLAN; routers never see tags.
// Frames with two tags (QinQ) are not switched.

// bridgeIngress switches a frame that entered bridge bi by port in.
func (w *walk) bridgeIngress(bi, in int32, depth int) {
	t := w.t
	b := t.bridges[bi]
	w.res.addTag(b.tag)
	name := t.devName(devBridge, bi)
	if !b.up {
		w.drop(DropDeviceDown, name, "bridge is down")
		return
	}
	p := t.ports.At(in)
	var vlan uint16
	switch {
	case w.cur.tagged && w.pkt.VLANs > 1:
		w.drop(DropVLANMismatch, name, "double-tagged (QinQ) frames are not switched")
		return
	case w.cur.tagged && p.vlan != 0:
		w.drop(DropVLANMismatch, name, fmt.Sprintf("tagged frame (vlan %d) on access port for vlan %d", w.cur.vlan, p.vlan))
		return
	case w.cur.tagged:
		vlan = w.cur.vlan
	default:
		vlan = p.vlan
	}
	if b.inChain != none && !w.chainPasses(w.runChain(&t.chains[b.inChain], in, none), name) {
		return
	}
	w.learn(b, bi, vlan, in)

	if (w.pkt.IsARPRequest() || w.pkt.IsNeighborSolicit()) && !w.isGen && w.suppressARP(bi, vlan, in) {
		return
	}

	dst := w.cur.dst
	if dst.IsMulticast() {
		if w.tr != nil {
			w.tr.add(StepBridge, name, fmt.Sprintf("dst %s is multicast/broadcast: flood on vlan %d", dst, vlan))
		}
		w.flood(bi, in, vlan, depth)
		return
	}
	if q := t.staticMACPort(bi, vlan, dst); q != none {
		w.res.addTag(t.ports.At(t.ports.At(q).peer).tag)
		if w.tr != nil {
			w.tr.add(StepBridge, name, fmt.Sprintf("dst %s is router port %s behind port %s: unicast", dst, t.portName(t.ports.At(q).peer), t.portName(q)))
		}
		w.unicast(bi, in, q, vlan, depth)
		return
	}
	if macs := w.s.cfg.MACs; macs != nil {
		w.res.addTag(macEntryTag(b.tag, vlan, dst))
		if id, ok := macs.Lookup(b.id, vlan, dst); ok {
			if q, ok := t.portByID.Get(id); ok && t.ports.At(q).kind == devBridge && t.ports.At(q).dev == bi {
				if w.tr != nil {
					w.tr.add(StepBridge, name, fmt.Sprintf("dst %s learned on port %s (vlan %d): unicast", dst, t.portName(q), vlan))
				}
				w.unicast(bi, in, q, vlan, depth)
				return
			}
		}
	}
	if w.tr != nil {
		w.tr.add(StepBridge, name, fmt.Sprintf("dst %s unknown on vlan %d: flood", dst, vlan))
	}
	w.flood(bi, in, vlan, depth)
}

// learn records the frame's source MAC on the ingress port, or its move
// there. A router port's MAC is static: a frame claiming it from another
// port is not learned (it would hijack the subnet's gateway).
func (w *walk) learn(b *bridge, bi int32, vlan uint16, in int32) {
	t := w.t
	src := w.cur.src
	if src.IsMulticast() || src.IsZero() {
		return
	}
	if q := t.staticMACPort(bi, vlan, src); q != none {
		if q != in && w.tr != nil {
			w.tr.add(StepBridge, t.devName(devBridge, bi), fmt.Sprintf("src %s belongs to router port %s: not learned on %s", src, t.portName(t.ports.At(q).peer), t.portName(in)))
		}
		return
	}
	macs := w.s.cfg.MACs
	if macs == nil {
		return
	}
	// The flow reads the entry: if the MAC moves away, the flows from its
	// old port must come back to the simulation to move it back.
	w.res.addTag(macEntryTag(b.tag, vlan, src))
	inID := t.ports.At(in).id
	old, ok := macs.Lookup(b.id, vlan, src)
	if ok && old == inID {
		return
	}
	macs.Learn(b.id, vlan, src, inID, w.now)
	if w.tr != nil {
		if ok {
			w.tr.add(StepBridge, t.devName(devBridge, bi), fmt.Sprintf("src %s moved from port %s to %s (vlan %d)", src, old, t.portName(in), vlan))
		} else {
			w.tr.add(StepBridge, t.devName(devBridge, bi), fmt.Sprintf("src %s learned on port %s (vlan %d)", src, t.portName(in), vlan))
		}
	}
}

// suppressARP answers an ARP request or IPv6 neighbor solicitation for an
// address the bridge knows statically (a router port's, a DHCP host's)
// instead of flooding it across the overlay. Gratuitous ARP and duplicate
// address detection are announcements and are flooded; a request coming
// from the address's own port is left alone.
func (w *walk) suppressARP(bi int32, vlan uint16, in int32) bool {
	p := w.pkt
	target := p.ARPTargetIP
	if p.L3 == packet.L3IPv6 {
		target = p.NDTarget
		if p.IsDAD() {
			return false
		}
	} else if p.IsGratuitousARP() {
		return false
	}
	t := w.t
	e, ok := t.staticIPEntry(bi, vlan, target)
	if !ok || e.port == in || !w.canGenerate() {
		return false
	}
	w.res.addTag(e.tag)
	if w.tr != nil {
		w.tr.add(StepBridge, t.devName(devBridge, bi), fmt.Sprintf("ARP/ND suppression: %s is at %s, answered locally", target, e.mac))
	}
	var n int
	var err error
	why := GenARPReply
	if p.L3 == packet.L3IPv6 {
		why = GenNeighborAdvert
		n, err = packet.BuildNeighborAdvert(w.genSpace(), p, e.mac, e.port != none)
	} else {
		n, err = packet.BuildARPReply(w.genSpace(), p, e.mac)
	}
	w.commitReply(n, err, why)
	if err != nil {
		w.drop(DropMalformed, t.devName(devBridge, bi), "request could not be answered")
		return true
	}
	w.consumed = true
	return true
}

// carries reports whether port q carries vlan. A trunk linked to a router
// does not carry tagged VLANs: routers take untagged frames only.
func (w *walk) carries(q int32, vlan uint16) bool {
	p := w.t.ports.At(q)
	if p.vlan != 0 {
		return p.vlan == vlan
	}
	return vlan == 0 || p.peer == none || w.t.ports.At(p.peer).kind == devBridge
}

func (w *walk) unicast(bi, in, q int32, vlan uint16, depth int) {
	if q == in {
		w.drop(DropSamePort, w.t.portName(q), "destination is behind the ingress port")
		return
	}
	if !w.carries(q, vlan) {
		w.drop(DropVLANMismatch, w.t.portName(q), fmt.Sprintf("port does not carry vlan %d", vlan))
		return
	}
	w.bridgeEgress(bi, in, q, vlan, depth)
}

// bridgeEgress sends the frame out of port q: the bridge's outbound
// filter, then the tag the port wants, then the port.
func (w *walk) bridgeEgress(bi, in, q int32, vlan uint16, depth int) {
	t := w.t
	b := t.bridges[bi]
	if b.outChain != none && !w.chainPasses(w.runChain(&t.chains[b.outChain], in, q), t.devName(devBridge, bi)) {
		return
	}
	w.cur.tagged, w.cur.vlan = t.ports.At(q).vlan == 0 && vlan != 0, 0
	if w.cur.tagged {
		w.cur.vlan = vlan
	}
	w.egressPort(q, in, depth)
}

// flood sends the frame to every other port of the bridge that carries its
// VLAN, local and remote, interior ones included (a router behind one
// simulates its copy). Each branch starts from the frame as it reached the
// bridge. The walk reads the bridge's FloodTag rather than every port's.
func (w *walk) flood(bi, in int32, vlan uint16, depth int) {
	t := w.t
	w.res.addTag(t.bridges[bi].floodTag)
	save := w.cur
	w.flooding++
	if w.tr != nil {
		w.tr.depth++
	}
	for _, q := range t.bridges[bi].ports {
		if q == in || !w.carries(q, vlan) {
			continue
		}
		w.cur = save
		w.bridgeEgress(bi, in, q, vlan, depth)
		if w.overflow {
			break
		}
	}
	if w.tr != nil {
		w.tr.depth--
	}
	w.flooding--
	w.cur = save
}
