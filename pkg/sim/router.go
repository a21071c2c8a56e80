package sim

import (
	"fmt"
	"net/netip"

	"github.com/nagare/nagare/pkg/packet"
)

// routerIngress routes a frame that entered router ri by port in:
// L2 admission, ARP/ND, pre-routing chain, local delivery, route lookup,
// TTL, post-routing chain, MTU, next-hop resolution, L2 rewrite, emit.
func (w *walk) routerIngress(ri, in int32, depth int) {
	t := w.t
	r := &t.routers[ri]
	w.res.addTag(r.tag)
	name := t.devName(devRouter, ri)
	if !r.up {
		w.drop(DropDeviceDown, name, "router is down")
		return
	}
	if w.cur.tagged {
		w.drop(DropVLANMismatch, name, fmt.Sprintf("routers take untagged frames; got vlan %d", w.cur.vlan))
		return
	}
	p := t.ports.At(in)
	pkt := w.pkt
	dst := w.cur.dst
	if dst != p.mac && !dst.IsMulticast() {
		w.drop(DropNotForRouter, name, fmt.Sprintf("dst %s is not port %s's MAC %s", dst, t.portName(in), p.mac))
		return
	}
	switch pkt.L3 {
	case packet.L3ARP:
		w.routerARP(ri, in)
		return
	case packet.L3IPv4, packet.L3IPv6:
	default:
		w.drop(DropUnsupported, name, fmt.Sprintf("ethertype %#04x is not routed", pkt.EtherType))
		return
	}
	if pkt.L4 == packet.L4ICMPv6 {
		switch pkt.ICMPType {
		case packet.ICMPv6NeighborSolicit, packet.ICMPv6NeighborAdvert:
			w.routerND(ri, in)
			return
		case packet.ICMPv6RouterSolicit, packet.ICMPv6RouterAdvert, packet.ICMPv6Redirect:
			w.drop(DropUnsupported, name, "router discovery is not implemented")
			return
		}
	}
	if dst.IsMulticast() || pkt.DstIP.IsMulticast() || pkt.DstIP == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || w.directedBroadcast(ri, pkt.DstIP) {
		// Directed broadcasts are not forwarded (RFC 2644): they are the
		// smurf amplifier. Checked before routing so no ICMP error is
		// sent about them either (RFC 1812 §4.3.2.7).
		w.drop(DropUnsupported, name, "multicast and broadcast are not routed")
		return
	}
	if r.lb != none && !w.lbInbound(r) {
		return
	}
	if r.inChain != none && !w.chainPasses(w.runChain(&w.t.chains[r.inChain], in, none), name) {
		return
	}
	pkt = w.pkt // pre-routing NAT may have translated it: route the translated packet
	if lp := w.routerOwns(ri, pkt.DstIP); lp != none {
		w.routerLocal(ri, in, lp)
		return
	}

	rt := &r.routes
	lr, ok := rt.lookup(pkt, w.s.cfg.Liveness, w.res)
	failOpen := false
	if !ok && lr.dead > 0 {
		// Every route that would do goes through an uplink said to be
		// down: use them as if they were up (as OVN's chassis do when
		// BFD finds no gateway alive). If they are dead, the packet is
		// lost either way; if this host is wrong about them (its own
		// stall, its underlay, a probe storm), it keeps the outside. The
		// first lookup read every skipped uplink's liveness, so the
		// first to come back re-simulates the flow.
		dead := lr.dead
		if lr, ok = rt.lookup(pkt, nil, w.res); ok {
			lr.dead, failOpen = dead, true
		} else {
			lr.dead = dead
		}
	}
	if !ok {
		w.res.addTag(r.noRoute)
		if w.tr != nil {
			w.tr.add(StepRouter, name, fmt.Sprintf("no route to %s%s", pkt.DstIP, skippedDead(lr.dead)))
		}
		w.icmpError(ri, in, icmpNetUnreachable, 0)
		w.drop(DropNoRoute, name, "no route")
		return
	}
	// Only the chosen route is read: a route added to (or changed in) its
	// group or a more specific one invalidates this flow through the
	// covering tags (ChangeTags), and a route of the group that goes away
	// changes nothing for the flows that did not choose it.
	e := &rt.entries[lr.chosen]
	w.res.addTag(e.tag)
	if w.tr != nil {
		note := skippedDead(lr.dead)
		if failOpen {
			note = fmt.Sprintf("; every usable route is through an uplink that is down (%d): used as if up", lr.dead)
		}
		w.tr.add(StepRouter, name, describeRoute(t, e, lr.group)+note)
	}
	switch e.typ {
	case routeBlackhole:
		w.drop(DropBlackhole, name, "blackhole route")
		return
	case routeReject:
		w.icmpError(ri, in, icmpAdminProhibited, 0)
		w.drop(DropRejectRoute, name, "reject route")
		return
	}
	if ttl := int(pkt.TTL) - int(w.cur.ttlDec); ttl <= 1 {
		if w.tr != nil {
			w.tr.add(StepRouter, name, fmt.Sprintf("TTL %d expires here", ttl))
		}
		w.icmpError(ri, in, icmpTimeExceeded, 0)
		w.drop(DropTTLExpired, name, "TTL expired")
		return
	}
	out := e.port
	w.cur.ttlDec++
	if r.lb != none {
		w.lbOutbound(r)
	}
	if r.outChain != none && !w.chainPasses(w.runChain(&w.t.chains[r.outChain], in, out), name) {
		return
	}
	if mtu := w.s.mtu[out]; w.ipLen > mtu {
		w.tooBig(ri, in, mtu)
		return
	}
	if w.res.MTU == 0 || w.s.mtu[out] < w.res.MTU {
		w.res.MTU = w.s.mtu[out]
	}
	nh := pkt.DstIP
	if e.gw.IsValid() {
		nh = e.gw
	}
	mac, ok := w.resolve(ri, out, nh)
	if !ok {
		w.needNeighbor(ri, out, nh, depth)
		return
	}
	op := t.ports.At(out)
	w.cur.src, w.cur.dst, w.cur.tagged = op.mac, mac, false
	w.lastRouter, w.lastRtrIn = ri, in
	if w.tr != nil {
		w.tr.add(StepRouter, name, fmt.Sprintf("next hop %s is at %s; ttl-1, src mac %s, dst mac %s", nh, mac, op.mac, mac))
	}
	w.egressPort(out, in, depth)
}

// skippedDead tells the trace about routes through dead uplinks.
func skippedDead(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return "; 1 route through an uplink that is down skipped"
	}
	return fmt.Sprintf("; %d routes through uplinks that are down skipped", n)
}

func describeRoute(t *Topology, e *routeEntry, group int) string {
	s := "route " + e.dst.String()
	if e.src.IsValid() {
		s += " from " + e.src.String()
	}
	switch e.typ {
	case routeBlackhole:
		return s + " blackhole"
	case routeReject:
		return s + " reject"
	}
	if e.gw.IsValid() {
		s += " via " + e.gw.String()
	}
	s += fmt.Sprintf(" port %s (weight %d)", t.portName(e.port), e.weight)
	if group > 1 {
		s += fmt.Sprintf(", ECMP 1 of %d", group)
	}
	return s
}

// directedBroadcast reports whether a is the broadcast address of one of
// the router's IPv4 subnets (/31 and /32 have none, RFC 3021).
func (w *walk) directedBroadcast(ri int32, a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	v := a.As4()
	x := uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
	for _, pi := range w.t.routers[ri].ports {
		n := w.t.ports.At(pi).network
		if !n.Addr().Is4() || n.Bits() > 30 {
			continue
		}
		host := uint32(1)<<(32-n.Bits()) - 1
		if x&host == host && n.Contains(a) {
			return true
		}
	}
	return false
}

// routerOwns returns the router port whose address is a, or none.
func (w *walk) routerOwns(ri int32, a netip.Addr) int32 {
	if w.t.routers[ri].addrBloom&ipBloomBit(a) == 0 {
		return none
	}
	for _, pi := range w.t.routers[ri].ports {
		p := w.t.ports.At(pi)
		if p.addr == a || p.linkLocal == a {
			return pi
		}
	}
	return none
}

// routerLocal handles a packet for one of the router's own addresses: echo
// requests are answered, anything else is dropped (the router runs no
// services).
func (w *walk) routerLocal(ri, in, lp int32) {
	pkt := w.pkt
	name := w.t.devName(devRouter, ri)
	w.res.addTag(w.t.ports.At(lp).tag)
	if !pkt.IsEchoRequest() {
		w.drop(DropRouterLocal, name, fmt.Sprintf("%s is the router's own address; only echo requests are answered", pkt.DstIP))
		return
	}
	if !w.canGenerate() {
		w.drop(DropRouterLocal, name, "echo request not answered from here")
		return
	}
	if w.tr != nil {
		w.tr.add(StepRouter, name, fmt.Sprintf("echo request to own address %s: reply", pkt.DstIP))
	}
	var n int
	var err error
	if req := w.origPkt(); req.L3 == packet.L3IPv4 {
		n, err = packet.BuildICMPv4EchoReply(w.genSpace(), req)
	} else {
		n, err = packet.BuildICMPv6EchoReply(w.genSpace(), req)
	}
	w.commitReply(n, err, GenEchoReply)
	if err != nil {
		w.drop(DropRouterLocal, name, "echo request could not be answered")
		return
	}
	w.consumed = true
}

// routerARP answers ARP requests for the ingress port's address and learns
// from requests and replies addressed to it. ARP is per link: a router
// answers only for the port the request arrived on.
func (w *walk) routerARP(ri, in int32) {
	t := w.t
	p := t.ports.At(in)
	pkt := w.pkt
	name := t.devName(devRouter, ri)
	nat := false
	if !p.addr.Is4() || pkt.ARPTargetIP != p.addr {
		tag, ok := p.natAddrTag(pkt.ARPTargetIP)
		if !ok || !pkt.ARPTargetIP.Is4() {
			w.drop(DropNotForRouter, name, fmt.Sprintf("ARP for %s, not port %s's address", pkt.ARPTargetIP, t.portName(in)))
			return
		}
		w.res.addTag(tag)
		nat = true
	}
	if p.network.Contains(pkt.ARPSenderIP) && !pkt.ARPSenderMAC.IsMulticast() && !pkt.ARPSenderMAC.IsZero() {
		w.res.Learned = Neighbor{RouterID: t.routers[ri].id, IP: pkt.ARPSenderIP, MAC: pkt.ARPSenderMAC}
		if w.tr != nil {
			w.tr.add(StepRouter, name, fmt.Sprintf("learned %s is at %s", pkt.ARPSenderIP, pkt.ARPSenderMAC))
		}
	}
	w.consumed = true
	if pkt.ARPOp != packet.ARPRequest || !w.canGenerate() {
		return
	}
	if w.tr != nil {
		if nat {
			w.tr.add(StepRouter, name, fmt.Sprintf("ARP request for %s, an address the router translates (NAT or VIP): reply %s", pkt.ARPTargetIP, p.mac))
		} else {
			w.tr.add(StepRouter, name, fmt.Sprintf("ARP request for own address %s: reply %s", p.addr, p.mac))
		}
	}
	n, err := packet.BuildARPReply(w.genSpace(), pkt, p.mac)
	w.commitReply(n, err, GenARPReply)
}

// routerND is routerARP for IPv6: neighbor solicitations for the port's
// address (or its link-local address) are answered, and solicitations and
// advertisements teach the router their sender.
func (w *walk) routerND(ri, in int32) {
	t := w.t
	p := t.ports.At(in)
	pkt := w.pkt
	name := t.devName(devRouter, ri)
	own := pkt.NDTarget == p.addr || pkt.NDTarget == p.linkLocal
	rid := t.routers[ri].id
	if pkt.ICMPType == packet.ICMPv6NeighborAdvert {
		if own {
			// Someone claims the router's address: a duplicate or a
			// spoof; either way not a neighbor to learn.
			w.drop(DropRouterLocal, name, fmt.Sprintf("neighbor advertisement for own address %s", pkt.NDTarget))
			return
		}
		mac := w.cur.src
		if pkt.NDHasLinkAddr {
			mac = pkt.NDLinkAddr
		}
		w.res.Learned = Neighbor{RouterID: rid, IP: pkt.NDTarget, MAC: mac}
		w.consumed = true
		if w.tr != nil {
			w.tr.add(StepRouter, name, fmt.Sprintf("learned %s is at %s", pkt.NDTarget, mac))
		}
		return
	}
	if !own {
		tag, ok := p.natAddrTag(pkt.NDTarget)
		if !ok {
			w.drop(DropNotForRouter, name, fmt.Sprintf("neighbor solicitation for %s, not port %s's address", pkt.NDTarget, t.portName(in)))
			return
		}
		w.res.addTag(tag)
	}
	w.consumed = true
	if !pkt.SrcIP.IsUnspecified() && pkt.NDHasLinkAddr {
		w.res.Learned = Neighbor{RouterID: rid, IP: pkt.SrcIP, MAC: pkt.NDLinkAddr}
	}
	if !w.canGenerate() {
		return
	}
	if w.tr != nil {
		w.tr.add(StepRouter, name, fmt.Sprintf("neighbor solicitation for %s (own=%v, else translated): advertise %s", pkt.NDTarget, own, p.mac))
	}
	n, err := packet.BuildNeighborAdvert(w.genSpace(), pkt, p.mac, true)
	w.commitReply(n, err, GenNeighborAdvert)
}

// resolve finds the MAC of next hop nh behind router port out, without
// asking anyone when the topology knows it: the peer port of a
// router-to-router link, a router port or DHCP host on the peer bridge.
// Otherwise the ARP table; the entry's tag is read either way, so the
// NeedARP walk's successor is invalidated when the answer arrives.
func (w *walk) resolve(ri, out int32, nh netip.Addr) (packet.MAC, bool) {
	t := w.t
	op := t.ports.At(out)
	if op.peer != none {
		pp := t.ports.At(op.peer)
		if pp.kind == devRouter {
			w.res.addTag(pp.tag)
			return pp.mac, true
		}
		if e, ok := t.staticIPEntry(pp.dev, pp.vlan, nh); ok {
			w.res.addTag(e.tag)
			return e.mac, true
		}
	}
	r := &t.routers[ri]
	w.res.addTag(arpEntryTag(r.tag, nh))
	if arp := w.s.cfg.ARP; arp != nil {
		if mac, ok := arp.Lookup(r.id, nh); ok {
			return mac, true
		}
	}
	return packet.MAC{}, false
}

// needNeighbor sets the NeedARP verdict and generates the ARP request (or
// neighbor solicitation) for nh, walking it out of port out to find where
// it goes: usually a flood of the peer bridge.
func (w *walk) needNeighbor(ri, out int32, nh netip.Addr, depth int) {
	t := w.t
	name := t.devName(devRouter, ri)
	if w.isGen || w.flooding > 0 {
		w.drop(DropUnsupported, name, "next hop unresolved inside a flood")
		return
	}
	w.needARP = true
	w.res.NextHop, w.res.NextHopRouter = nh, t.routers[ri].id
	if w.tr != nil {
		w.tr.add(StepRouter, name, fmt.Sprintf("next hop %s unknown: park the packet and ask", nh))
	}
	if w.res.nGen == MaxGenerated {
		w.res.GenFailed++
		return
	}
	op := t.ports.At(out)
	var n int
	var err error
	why := GenARPRequest
	if nh.Is4() {
		if !op.addr.Is4() {
			w.needARP = false
			w.drop(DropNoAddress, t.portName(out), "port has no IPv4 address to send an ARP request from")
			return
		}
		n, err = packet.BuildARPRequest(w.genSpace(), op.mac, op.addr, nh)
	} else {
		src := op.linkLocal
		if op.addr.Is6() {
			src = op.addr
		}
		why = GenNeighborSolicit
		n, err = packet.BuildNeighborSolicit(w.genSpace(), op.mac, src, nh)
	}
	if err != nil {
		w.res.GenFailed++
		return
	}
	g := w.commitGenerated(n, why)
	if g == nil {
		return
	}
	s := w.s
	s.genPkt.Decode(w.res.Frame(*g))
	gw := &s.gw
	gw.reset(s, w.res, w.tr, &s.genPkt, w.now, true)
	gw.visits = w.visits
	if w.tr != nil {
		w.tr.add(StepGenerate, t.portName(out), why.String()+" for "+nh.String())
		w.tr.depth++
	}
	gw.egressPort(out, none, depth)
	if w.tr != nil {
		w.tr.depth--
	}
	g.actHi = w.res.nGenActs
	if gw.overflow {
		w.res.GenFailed++
	}
}

type icmpKind uint8

const (
	icmpNetUnreachable icmpKind = iota
	icmpAdminProhibited
	icmpTimeExceeded
)

// icmpSource picks the address a router's ICMP error comes from: the
// ingress port's address if of the packet's family (what traceroute
// expects to see), else any port address of that family, else for IPv6
// the ingress port's link-local address.
func (w *walk) icmpSource(ri, in int32, v6 bool) netip.Addr {
	t := w.t
	if a := t.ports.At(in).addr; a.IsValid() && a.Is6() == v6 {
		return a
	}
	for _, pi := range t.routers[ri].ports {
		if a := t.ports.At(pi).addr; a.IsValid() && a.Is6() == v6 {
			return a
		}
	}
	if v6 {
		return t.ports.At(in).linkLocal
	}
	return netip.Addr{}
}

// icmpError sends a router's ICMP error about the packet back to its
// sender. The packet builders apply the RFC rules on when not to (no error
// about an error, a broadcast, a later fragment).
func (w *walk) icmpError(ri, in int32, kind icmpKind, mtu int) {
	if !w.canGenerate() {
		return
	}
	pkt := w.origPkt()
	v6 := pkt.L3 == packet.L3IPv6
	src := w.icmpSource(ri, in, v6)
	if !src.IsValid() {
		w.res.GenFailed++
		return
	}
	buf := w.genSpace()
	var n int
	var err error
	switch {
	case !v6 && kind == icmpNetUnreachable:
		n, err = packet.BuildICMPv4Unreachable(buf, pkt, src, packet.ICMPv4NetUnreachable)
	case v6 && kind == icmpNetUnreachable:
		n, err = packet.BuildICMPv6Unreachable(buf, pkt, src, packet.ICMPv6NoRoute)
	case !v6 && kind == icmpAdminProhibited:
		n, err = packet.BuildICMPv4Unreachable(buf, pkt, src, packet.ICMPv4AdminProhibited)
	case v6 && kind == icmpAdminProhibited:
		n, err = packet.BuildICMPv6Unreachable(buf, pkt, src, packet.ICMPv6AdminProhibited)
	case !v6 && kind == icmpTimeExceeded:
		n, err = packet.BuildICMPv4TimeExceeded(buf, pkt, src)
	case v6 && kind == icmpTimeExceeded:
		n, err = packet.BuildICMPv6TimeExceeded(buf, pkt, src)
	}
	w.commitReply(n, err, GenICMPError)
}

// tooBig handles a packet larger than the MTU of where router ri (entered
// by port in) must send it. IPv4 with DF and all of IPv6 get the ICMP error
// path MTU discovery needs; IPv4 without DF would need fragmentation,
// which Nagare does not do: it is dropped and counted, never lost silently.
func (w *walk) tooBig(ri, in int32, mtu int) {
	pkt := w.pkt
	name := w.t.devName(devRouter, ri)
	if pkt.L3 == packet.L3IPv4 && !pkt.DontFrag {
		w.drop(DropFragmentationUnsupported, name, fmt.Sprintf("%d-byte packet without DF exceeds MTU %d; fragmentation is not supported", w.ipLen, mtu))
		return
	}
	if w.canGenerate() {
		src := w.icmpSource(ri, in, pkt.L3 == packet.L3IPv6)
		var n int
		var err error
		if orig := w.origPkt(); pkt.L3 == packet.L3IPv4 {
			n, err = packet.BuildICMPv4FragNeeded(w.genSpace(), orig, src, uint16(min(mtu, 0xffff)))
		} else {
			n, err = packet.BuildICMPv6PacketTooBig(w.genSpace(), orig, src, uint32(mtu))
		}
		w.commitReply(n, err, GenICMPError)
	}
	w.drop(DropFragNeeded, name, fmt.Sprintf("%d-byte packet exceeds MTU %d", w.ipLen, mtu))
}
