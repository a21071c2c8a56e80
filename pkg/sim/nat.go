package sim

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// NAT rules, MidoNet's way: snat and dnat translate the forward direction
// of a connection and record a binding (its forward and reverse keys, in
// the router's zone); rev_snat and rev_dnat translate replies back when
// they find one. Routers apply them in their pre-routing (infilter) and
// post-routing (outfilter) chains and their ports' chains; on bridges they
// are skipped, with a trace line.
//
// A target of one address and no port range is static 1:1 NAT (floating
// IPs): the address is rewritten with no state at all, and replies are
// translated by the opposite static rule (a floating IP is a dnat in
// pre-routing and an snat in post-routing). This is MidoNet's
// ForwardNatRule.floatingIp test; a stateful translation to one address
// (port forwarding whose replies rev_dnat translates back) gives a port
// range, 1-65535 if need be.
//
// Translations change the walk's view of the packet (w.pkt becomes a copy
// with the new addresses and ports, which later rules, routing and ARP
// see) and emit set-ip/set-port actions before the next output. ICMP
// errors are translated through the connection they quote: the outer
// address and the quoted header both, the latter per packet (flow.ActInnerSrc,
// Result.SlowPath), since the quote is not in the flow key.

type natKind uint8

const (
	natSNAT natKind = iota
	natDNAT
	natRevSNAT
	natRevDNAT
)

// natRule is the compiled NAT part of a rule.
type natRule struct {
	kind    natKind
	static  netip.Addr // valid for static 1:1 NAT
	targets []flowstate.Target
	then    uint8 // what the chain does after a translation: natAccept, natContinue or natReturn
	// base: a DNAT of one target that maps ports one to one, from base to
	// the target's range (port forwarding of a port range).
	base uint16
}

// Outcomes of applyNAT, for runChain.
const (
	natNotApplied uint8 = iota
	natAccept
	natContinue
	natReturn
	natFailed
)

func compileNAT(r *model.Rule) (natRule, error) {
	n := natRule{then: natAccept}
	switch r.Type {
	case model.RuleSNAT:
		n.kind = natSNAT
	case model.RuleDNAT:
		n.kind = natDNAT
	case model.RuleRevSNAT:
		n.kind = natRevSNAT
	case model.RuleRevDNAT:
		n.kind = natRevDNAT
	}
	switch r.FlowAction {
	case "continue":
		n.then = natContinue
	case "return":
		n.then = natReturn
	}
	for _, t := range r.Targets {
		if !t.AddrFrom.IsValid() {
			return n, fmt.Errorf("rule %s: NAT target without an address", r.ID)
		}
		to := t.AddrTo
		if !to.IsValid() {
			to = t.AddrFrom
		}
		n.targets = append(n.targets, flowstate.Target{From: t.AddrFrom.Unmap(), To: to.Unmap(), PortFrom: t.Ports.Start, PortTo: t.Ports.End})
		if t.Base != 0 {
			if n.kind != natDNAT || len(r.Targets) != 1 || t.Ports.IsZero() {
				return n, fmt.Errorf("rule %s: a base port maps ports of one dnat target with a port range", r.ID)
			}
			n.base = t.Base
		}
	}
	if len(n.targets) == 1 && n.targets[0].From == n.targets[0].To && n.targets[0].PortFrom == 0 && n.kind <= natDNAT {
		n.static = n.targets[0].From
	}
	return n, nil
}

// applyNAT applies NAT rule r, evaluated in a chain of the device that
// port inPort or outPort belongs to.
func (w *walk) applyNAT(r *rule, chain string, inPort, outPort int32) uint8 {
	n := &r.nat
	fs := w.s.cfg.FlowState
	dev := outPort
	if dev == none {
		dev = inPort
	}
	p := w.pkt
	why := ""
	switch {
	case fs == nil:
		why = "no flow state configured"
	case dev == none || w.t.ports.At(dev).kind != devRouter:
		why = "NAT applies on routers only"
	case w.flooding > 0 || w.isGen:
		why = "not in a flood or a generated packet"
	case p.L3 != packet.L3IPv4 && p.L3 != packet.L3IPv6:
		why = "not IP"
	}
	if why != "" {
		if w.tr != nil {
			w.traceNAT(chain, r, why+": not translated")
		}
		return natNotApplied
	}
	rt := &w.t.routers[w.t.ports.At(dev).dev]
	var applied bool
	var err error
	switch {
	case n.static.IsValid():
		applied = w.staticNAT(n, chain, r)
	case p.IsICMPError():
		applied = w.natError(n, fs, rt.tag, chain, r)
	default:
		applied, err = w.dynamicNAT(n, fs, rt, chain, r)
	}
	if err != nil {
		w.drop(DropNATExhausted, chain, fmt.Sprintf("rule %d (%s): %s: %v", r.pos, r.desc, r.typ, err))
		return natFailed
	}
	if !applied {
		return natNotApplied
	}
	return n.then
}

// xlate makes w.pkt the walk's own copy of the packet, which translations
// may change; the first call records the header the frame has.
func (w *walk) xlate() *packet.Parsed {
	if !w.st.xlated {
		w.st.xlated = true
		w.st.orig = w.pkt
		w.s.xpkt = *w.pkt
		w.pkt = &w.s.xpkt
		w.st.emitted = headerOf(w.pkt)
	}
	return w.pkt
}

// l4Header is what NAT changes: addresses, and ports or the echo
// identifier (in sport).
type l4Header struct {
	src, dst     netip.Addr
	sport, dport uint16
}

func headerOf(p *packet.Parsed) l4Header {
	h := l4Header{src: p.SrcIP, dst: p.DstIP}
	switch {
	case p.HasPorts():
		h.sport, h.dport = p.SrcPort, p.DstPort
	case p.IsEchoRequest() || p.IsEchoReply():
		h.sport = p.ICMPEchoID
	}
	return h
}

// setSrc translates the source: address, and port (TCP, UDP) or echo
// identifier. Families are checked by the caller.
func (w *walk) setSrc(a netip.Addr, port uint16) {
	p := w.xlate()
	p.SrcIP = a
	switch {
	case p.HasPorts():
		p.SrcPort = port
	case p.IsEchoRequest() || p.IsEchoReply():
		p.ICMPEchoID = port
	}
}

func (w *walk) setDst(a netip.Addr, port uint16) {
	p := w.xlate()
	p.DstIP = a
	switch {
	case p.HasPorts():
		p.DstPort = port
	case p.IsEchoRequest() || p.IsEchoReply():
		p.ICMPEchoID = port
	}
}

// innerRewrite is the pending translation of an ICMP error's quote.
type innerRewrite struct {
	key              flowstate.Key // the quote's tuple as translated so far
	loaded           bool
	srcSet, dstSet   bool
	srcDone, dstDone bool // already emitted
}

// innerKey returns the quoted tuple as the walk's translations left it.
func (w *walk) innerKey() (*flowstate.Key, bool) {
	in := &w.st.inner
	if !in.loaded {
		k, ok := flowstate.InnerKeyOf(w.origPkt())
		if !ok {
			return nil, false
		}
		in.key, in.loaded = k, true
	}
	return &in.key, true
}

func (w *walk) setInner(src bool, a netip.Addr, port uint16) {
	in := &w.st.inner
	w.xlate()
	w.res.SlowPath = true
	if src {
		in.key.Src, in.key.SrcPort, in.srcSet, in.srcDone = a.As16(), port, true, false
	} else {
		in.key.Dst, in.key.DstPort, in.dstSet, in.dstDone = a.As16(), port, true, false
	}
	if in.key.Echo != 0 { // the identifier is both "ports"
		in.key.SrcPort, in.key.DstPort = port, port
	}
}

func sameFamily(a netip.Addr, p *packet.Parsed) bool {
	return a.Is4() == (p.L3 == packet.L3IPv4)
}

// staticNAT rewrites the address of a 1:1 rule. For an ICMP error it also
// rewrites the quoted packet's opposite address if it is the one
// translated: the error is about a packet that went the other way.
func (w *walk) staticNAT(n *natRule, chain string, r *rule) bool {
	p := w.pkt
	if !sameFamily(n.static, p) {
		w.traceNAT(chain, r, "target of the other address family: not translated")
		return false
	}
	snat := n.kind == natSNAT
	old := p.DstIP
	if snat {
		old = p.SrcIP
	}
	// The port (or echo identifier) stays: only the address changes.
	h := headerOf(p)
	if snat {
		w.setSrc(n.static, h.sport)
	} else if p.HasPorts() {
		w.setDst(n.static, h.dport)
	} else {
		w.setDst(n.static, h.sport) // an echo's identifier is in sport
	}
	if p.IsICMPError() {
		if ik, ok := w.innerKey(); ok {
			if snat && ik.DstAddr() == old {
				w.setInner(false, n.static, ik.DstPort)
			} else if !snat && ik.SrcAddr() == old {
				w.setInner(true, n.static, ik.SrcPort)
			}
		}
	}
	if w.tr != nil {
		w.traceNAT(chain, r, fmt.Sprintf("static %s %s -> %s", r.typ, old, n.static))
	}
	return true
}

var natKeyTypes = [...]flowstate.KeyType{natSNAT: flowstate.KeyFwdSNAT, natDNAT: flowstate.KeyFwdDNAT,
	natRevSNAT: flowstate.KeyRevSNAT, natRevDNAT: flowstate.KeyRevDNAT}

// dynamicNAT looks the connection's binding up in the router's zone and
// applies it; snat and dnat create one when there is none.
func (w *walk) dynamicNAT(n *natRule, fs FlowState, rt *router, chain string, r *rule) (bool, error) {
	p := w.pkt
	// The key lives in the walk: passed to an interface it would escape,
	// and the per-packet path must not allocate.
	k := &w.st.key
	var ok bool
	if *k, ok = flowstate.KeyOf(p); !ok {
		w.traceNAT(chain, r, "no ports to translate: not translated")
		return false, nil
	}
	k.Zone, k.Type = rt.tag, natKeyTypes[n.kind]
	flags := w.origPkt().TCPFlags
	m := fs.Lookup(k, flags, w.now)
	w.readKey(k)
	e, how := m.Entry, "binding"
	if !m.Found {
		switch n.kind {
		case natRevSNAT, natRevDNAT:
			if w.tr != nil {
				w.traceNAT(chain, r, fmt.Sprintf("no binding for %v: not translated", *k))
			}
			return false, nil
		case natSNAT:
			var err error
			e, err = fs.AllocSNAT(&w.res.st.tx, rt.id, k, n.targets, flags, w.now)
			if errors.Is(err, flowstate.ErrNotTranslatable) {
				w.traceNAT(chain, r, "protocol without ports: not translated")
				return false, nil
			}
			if err != nil {
				return false, err
			}
		case natDNAT:
			to, port, ok := flowstate.Pick(n.targets, k.Family, k.Tag())
			if !ok {
				w.traceNAT(chain, r, "no target of the packet's address family: not translated")
				return false, nil
			}
			if port == 0 {
				port = k.DstPort
			}
			if n.base != 0 {
				t := &n.targets[0]
				if k.DstPort < n.base || k.DstPort-n.base > t.PortTo-t.PortFrom {
					w.traceNAT(chain, r, fmt.Sprintf("port %d outside the range mapped from %d: not translated", k.DstPort, n.base))
					return false, nil
				}
				port = t.PortFrom + (k.DstPort - n.base)
			}
			e = flowstate.NewDNAT(*k, to, port, flags)
			if !w.res.st.tx.Add(e) {
				return false, flowstate.ErrTxFull
			}
		}
		how = "new binding"
	}
	old := headerOf(p)
	switch n.kind {
	case natSNAT:
		w.setSrc(e.Translated())
	case natDNAT:
		w.setDst(e.Translated())
	case natRevSNAT:
		w.setDst(e.Original())
	case natRevDNAT:
		w.setSrc(e.Original())
	}
	if w.tr != nil {
		now := headerOf(w.pkt)
		w.traceNAT(chain, r, fmt.Sprintf("%s %s -> %s (%s)", r.typ, fmtEnds(old), fmtEnds(now), how))
	}
	return true, nil
}

// natError translates an ICMP error through the binding of the
// connection it quotes (never creating one): the outer address if it is
// the translated endpoint, and the quote's opposite side.
func (w *walk) natError(n *natRule, fs FlowState, zone uint64, chain string, r *rule) bool {
	w.res.SlowPath = true
	ik, ok := w.innerKey()
	if !ok {
		w.traceNAT(chain, r, "ICMP error quoting nothing translatable: not translated")
		return false
	}
	k := &w.st.key
	*k = ik.Reverse()
	k.Zone, k.Type = zone, natKeyTypes[n.kind]
	m := fs.Peek(k, w.now)
	w.readKey(k)
	if !m.Found {
		if w.tr != nil {
			w.traceNAT(chain, r, fmt.Sprintf("ICMP error: no binding for %v: not translated", *k))
		}
		return false
	}
	p := w.pkt
	a, port := m.Translated()
	if n.kind == natRevSNAT || n.kind == natRevDNAT {
		a, port = m.Original()
	}
	// SNAT and reverse DNAT change the source side of the quoted
	// connection, DNAT and reverse SNAT its destination side.
	dst := n.kind == natDNAT || n.kind == natRevSNAT
	switch {
	case dst && p.DstIP == k.DstAddr():
		w.setDst(a, 0)
	case !dst && p.SrcIP == k.SrcAddr():
		w.setSrc(a, 0)
	}
	w.setInner(dst, a, port)
	if w.tr != nil {
		w.traceNAT(chain, r, fmt.Sprintf("%s of an ICMP error quoting %s: quote now %s, outer %s>%s (per packet, no flow)",
			r.typ, fmtKey(k.Reverse()), fmtKey(w.st.inner.key), w.pkt.SrcIP, w.pkt.DstIP))
	}
	return true
}

func fmtKey(k flowstate.Key) string {
	return fmt.Sprintf("%s:%d>%s:%d", k.SrcAddr(), k.SrcPort, k.DstAddr(), k.DstPort)
}

func fmtEnds(h l4Header) string {
	return fmt.Sprintf("%s:%d>%s:%d", h.src, h.sport, h.dst, h.dport)
}

func (w *walk) traceNAT(chain string, r *rule, msg string) {
	if w.tr != nil {
		w.tr.add(StepNAT, chain, fmt.Sprintf("rule %d (%s): %s", r.pos, r.desc, msg))
	}
}

// emitNAT appends the actions that turn the header the emitted actions
// produce into the walk's translated one: addresses, then ports (or the
// echo identifier), then the quote of an ICMP error.
func (w *walk) emitNAT() bool {
	p, e := w.pkt, &w.st.emitted
	h := headerOf(p)
	if h.src != e.src && !w.addAction(flow.Action{Type: flow.ActSetIPSrc, Addr: h.src}) {
		return false
	}
	if h.dst != e.dst && !w.addAction(flow.Action{Type: flow.ActSetIPDst, Addr: h.dst}) {
		return false
	}
	if p.HasPorts() {
		if h.sport != e.sport && !w.addAction(flow.Action{Type: flow.ActSetL4Src, L4Port: h.sport}) {
			return false
		}
		if h.dport != e.dport && !w.addAction(flow.Action{Type: flow.ActSetL4Dst, L4Port: h.dport}) {
			return false
		}
	} else if h.sport != e.sport && !w.addAction(flow.Action{Type: flow.ActSetICMPID, L4Port: h.sport}) {
		return false
	}
	*e = h
	in := &w.st.inner
	if in.srcSet && !in.srcDone {
		if !w.addAction(flow.Action{Type: flow.ActInnerSrc, Addr: in.key.SrcAddr(), L4Port: in.key.SrcPort}) {
			return false
		}
		in.srcDone = true
	}
	if in.dstSet && !in.dstDone {
		if !w.addAction(flow.Action{Type: flow.ActInnerDst, Addr: in.key.DstAddr(), L4Port: in.key.DstPort}) {
			return false
		}
		in.dstDone = true
	}
	return true
}
