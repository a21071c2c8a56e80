package sim

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

type portGroup struct {
	id      string
	tag     uint64
	members []uint64 // bitset over port indexes
}

type ipGroup struct {
	id  string
	tag uint64
	// addrs counts, per address (unmapped: IPv4 as 4-byte addresses), the
	// address objects and ports (model.Port.MemberAddrs) that put it in
	// the group: it stays a member until the last of them goes.
	addrs hmap[netip.Addr, int32]
}

// add counts n more (or, negative, fewer) holders of address a.
func (g *ipGroup) add(a netip.Addr, n int32, gen uint64) {
	a = a.Unmap()
	c, _ := g.addrs.Get(a)
	switch c += n; {
	case c > 0:
		g.addrs.Put(a, c, gen)
	default:
		g.addrs.Del(a, gen)
	}
}

type chain struct {
	id, name string
	tag      uint64
	rules    []rule
}

type ruleAction uint8

const (
	raAccept ruleAction = iota
	raDrop
	raReject
	raContinue
	raJump
	raReturn
	raNAT // snat, dnat, rev_snat, rev_dnat: see nat.go
)

type fragPolicy uint8

const (
	fragAny fragPolicy = iota
	fragHeader
	fragNonHeader
	fragUnfragmented
)

// rule is a compiled model.Rule: references resolved to indexes and sets,
// so matching reads no map keyed by string.
type rule struct {
	id     string
	tag    uint64
	pos    int
	action ruleAction
	typ    model.RuleType
	jump   int32
	jumpTo *chain // a compiled port filter's jump (portsec.go); jump is none then
	desc   string // the condition in CLI words, for traces

	inPorts, outPorts  []int32
	invIn, invOut      bool
	pg                 int32
	invPG              bool
	ipgSrc, ipgDst     int32
	invIPGSrc          bool
	invIPGDst          bool
	etherType          uint16
	invEtherType       bool
	srcMAC, dstMAC     packet.MAC
	hasSrcMAC          bool
	hasDstMAC          bool
	invSrcMAC          bool
	invDstMAC          bool
	src, dst           netip.Prefix
	invSrc, invDst     bool
	proto              uint8
	invProto           bool
	tos                uint8
	srcPort, dstPort   model.PortRange
	invSPort, invDPort bool
	frag               fragPolicy
	flowDir            uint8               // the "flow" condition: flowAny, flowForward, flowReturn
	ctState            flowstate.ConnState // the "ct-state" condition; CTUntracked when unset
	invCT              bool
	arpSHA             packet.MAC // the "arp-sha" condition, valid iff hasARPSHA
	hasARPSHA          bool
	invARPSHA          bool
	ndTarget           netip.Prefix // the "nd-target" condition; invalid when unset
	invNDTarget        bool
	nat                natRule
}

func (t *Topology) compileRule(r *model.Rule, pos int, pgByID, ipgByID map[string]int32) (rule, error) {
	cr := rule{id: r.ID, tag: ObjectTag(model.RuleKind, r.ID), pos: pos, typ: r.Type, jump: none, pg: none, ipgSrc: none, ipgDst: none}
	switch r.Type {
	case model.RuleAccept:
		cr.action = raAccept
	case model.RuleDrop:
		cr.action = raDrop
	case model.RuleReject:
		cr.action = raReject
	case model.RuleJump:
		cr.action = raJump
		j, ok := t.chainByID[r.JumpChainID]
		if !ok {
			return cr, fmt.Errorf("rule %s jumps to chain %q, which does not exist", r.ID, r.JumpChainID)
		}
		cr.jump = j
	case model.RuleReturn:
		cr.action = raReturn
	case model.RuleSNAT, model.RuleDNAT, model.RuleRevSNAT, model.RuleRevDNAT:
		cr.action = raNAT
		n, err := compileNAT(r)
		if err != nil {
			return cr, err
		}
		cr.nat = n
	default: // continue
		cr.action = raContinue
	}
	ports := func(ids []string) ([]int32, error) {
		var out []int32
		for _, id := range ids {
			p, ok := t.portByID.Get(id)
			if !ok {
				return nil, fmt.Errorf("rule %s matches port %s, which does not exist", r.ID, id)
			}
			out = append(out, p)
		}
		return out, nil
	}
	var err error
	if cr.inPorts, err = ports(r.InPortIDs); err != nil {
		return cr, err
	}
	if cr.outPorts, err = ports(r.OutPortIDs); err != nil {
		return cr, err
	}
	cr.invIn, cr.invOut = r.InvInPorts && len(cr.inPorts) > 0, r.InvOutPorts && len(cr.outPorts) > 0
	if r.PortGroupID != "" {
		g, ok := pgByID[r.PortGroupID]
		if !ok {
			return cr, fmt.Errorf("rule %s matches port group %s, which does not exist", r.ID, r.PortGroupID)
		}
		cr.pg, cr.invPG = g, r.InvPortGroup
	}
	for _, x := range []struct {
		id  string
		dst *int32
	}{{r.IPAddrGroupSrcID, &cr.ipgSrc}, {r.IPAddrGroupDstID, &cr.ipgDst}} {
		if x.id == "" {
			continue
		}
		g, ok := ipgByID[x.id]
		if !ok {
			return cr, fmt.Errorf("rule %s matches IP address group %s, which does not exist", r.ID, x.id)
		}
		*x.dst = g
	}
	cr.invIPGSrc, cr.invIPGDst = r.InvIPAddrGroupSrc, r.InvIPAddrGroupDst
	cr.etherType, cr.invEtherType = r.EtherType, r.InvEtherType && r.EtherType != 0
	cr.srcMAC, cr.hasSrcMAC, cr.invSrcMAC = r.SrcMAC, !r.SrcMAC.IsZero(), r.InvSrcMAC
	cr.dstMAC, cr.hasDstMAC, cr.invDstMAC = r.DstMAC, !r.DstMAC.IsZero(), r.InvDstMAC
	if r.Src.IsValid() {
		cr.src, cr.invSrc = r.Src.Masked(), r.InvSrc
	}
	if r.Dst.IsValid() {
		cr.dst, cr.invDst = r.Dst.Masked(), r.InvDst
	}
	cr.proto, cr.invProto = r.Proto, r.InvProto && r.Proto != 0
	cr.arpSHA, cr.hasARPSHA, cr.invARPSHA = r.ARPSHA, !r.ARPSHA.IsZero(), r.InvARPSHA
	if r.NDTarget.IsValid() {
		cr.ndTarget, cr.invNDTarget = r.NDTarget.Masked(), r.InvNDTarget
	}
	cr.tos = r.TOS
	cr.srcPort, cr.invSPort = r.SrcPort, r.InvSrcPort && !r.SrcPort.IsZero()
	cr.dstPort, cr.invDPort = r.DstPort, r.InvDstPort && !r.DstPort.IsZero()
	switch r.FragmentPolicy {
	case "header":
		cr.frag = fragHeader
	case "nonheader":
		cr.frag = fragNonHeader
	case "unfragmented":
		cr.frag = fragUnfragmented
	}
	switch r.Flow {
	case "fwd-flow":
		cr.flowDir = flowForward
	case "return-flow":
		cr.flowDir = flowReturn
	}
	if r.CTState != "" {
		st, ok := flowstate.ParseConnState(r.CTState)
		if !ok {
			return cr, fmt.Errorf("rule %s: unknown ct-state %q", r.ID, r.CTState)
		}
		cr.ctState, cr.invCT = st, r.InvCTState
	}
	cr.desc = describeRule(r)
	return cr, nil
}

// describeRule renders the condition the way the CLI writes it, so a trace
// line can be pasted back into "chain X add rule ...".
func describeRule(r *model.Rule) string {
	var b strings.Builder
	add := func(name string, inv bool, v string) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(name)
		b.WriteByte(' ')
		if inv {
			b.WriteByte('!')
		}
		b.WriteString(v)
	}
	if len(r.InPortIDs) > 0 {
		add("in-ports", r.InvInPorts, strings.Join(r.InPortIDs, ","))
	}
	if len(r.OutPortIDs) > 0 {
		add("out-ports", r.InvOutPorts, strings.Join(r.OutPortIDs, ","))
	}
	if r.PortGroupID != "" {
		add("port-group", r.InvPortGroup, r.PortGroupID)
	}
	if r.IPAddrGroupSrcID != "" {
		add("ip-address-group-src", r.InvIPAddrGroupSrc, r.IPAddrGroupSrcID)
	}
	if r.IPAddrGroupDstID != "" {
		add("ip-address-group-dst", r.InvIPAddrGroupDst, r.IPAddrGroupDstID)
	}
	if r.EtherType != 0 {
		add("ethertype", r.InvEtherType, fmt.Sprintf("%#04x", r.EtherType))
	}
	if !r.SrcMAC.IsZero() {
		add("src-mac", r.InvSrcMAC, r.SrcMAC.String())
	}
	if !r.DstMAC.IsZero() {
		add("dst-mac", r.InvDstMAC, r.DstMAC.String())
	}
	if r.Src.IsValid() {
		add("src", r.InvSrc, r.Src.String())
	}
	if r.Dst.IsValid() {
		add("dst", r.InvDst, r.Dst.String())
	}
	if r.Proto != 0 {
		add("proto", r.InvProto, fmt.Sprint(r.Proto))
	}
	if r.TOS != 0 {
		add("tos", false, fmt.Sprint(r.TOS))
	}
	if !r.SrcPort.IsZero() {
		add("src-port", r.InvSrcPort, r.SrcPort.String())
	}
	if !r.DstPort.IsZero() {
		add("dst-port", r.InvDstPort, r.DstPort.String())
	}
	if r.FragmentPolicy != "" {
		add("fragment-policy", false, r.FragmentPolicy)
	}
	if r.Flow != "" {
		add("flow", false, r.Flow)
	}
	if r.CTState != "" {
		add("ct-state", r.InvCTState, r.CTState)
	}
	if !r.ARPSHA.IsZero() {
		add("arp-sha", r.InvARPSHA, r.ARPSHA.String())
	}
	if r.NDTarget.IsValid() {
		add("nd-target", r.InvNDTarget, r.NDTarget.String())
	}
	if b.Len() == 0 {
		return "any"
	}
	return b.String()
}

// chainVerdict is the outcome of running a chain.
type chainVerdict uint8

const (
	chainAccept chainVerdict = iota
	chainDrop
	chainReject
	chainLoop
	chainDropped // a rule dropped the packet and recorded why
)

// maxJumpDepth bounds nested jumps. The model forbids a chain jumping to
// itself but not longer cycles (A→B→A); those must end, not recurse.
const maxJumpDepth = 16

// runChain evaluates a chain for the walk's current packet. inPort and
// outPort are the ports the conditions in-ports/out-ports see (none when
// not applicable). It records the tag of every chain entered and of the
// rule that decided; rules read before it are covered by their chain's
// tag (ChangeTags of a rule includes its chain).
func (w *walk) runChain(start *chain, inPort, outPort int32) chainVerdict {
	type frame struct {
		chain *chain
		next  int
	}
	var stack [maxJumpDepth]frame
	depth := 0
	stack[0] = frame{start, 0}
	t := w.t
	w.res.addTag(start.tag)
	for {
		f := &stack[depth]
		c := f.chain
		if f.next >= len(c.rules) {
			if w.tr != nil {
				w.tr.add(StepChain, chainName(c), "end of chain: continue")
			}
			if depth == 0 {
				return chainAccept
			}
			depth--
			continue
		}
		r := &c.rules[f.next]
		f.next++
		if !w.ruleMatches(r, inPort, outPort) {
			continue
		}
		switch r.action {
		case raContinue:
			if w.tr != nil {
				w.tr.add(StepChain, chainName(c), fmt.Sprintf("rule %d (%s): continue", r.pos, r.desc))
			}
			continue
		case raReturn:
			w.res.addTag(r.tag)
			if w.tr != nil {
				w.tr.add(StepChain, chainName(c), fmt.Sprintf("rule %d (%s): return", r.pos, r.desc))
			}
			if depth == 0 {
				return chainAccept
			}
			depth--
			continue
		case raNAT:
			w.res.addTag(r.tag)
			switch w.applyNAT(r, chainName(c), inPort, outPort) {
			case natAccept:
				return chainAccept
			case natFailed:
				return chainDropped
			case natReturn:
				if depth == 0 {
					return chainAccept
				}
				depth--
			}
			continue
		case raJump:
			w.res.addTag(r.tag)
			to := r.jumpTo
			if to == nil {
				to = &t.chains[r.jump]
			}
			if w.tr != nil {
				w.tr.add(StepChain, chainName(c), fmt.Sprintf("rule %d (%s): jump to chain %s", r.pos, r.desc, chainName(to)))
			}
			if depth+1 == maxJumpDepth {
				return chainLoop
			}
			depth++
			stack[depth] = frame{to, 0}
			w.res.addTag(to.tag)
			continue
		}
		w.res.addTag(r.tag)
		if w.tr != nil {
			w.tr.add(StepChain, chainName(c), fmt.Sprintf("rule %d (%s): %s", r.pos, r.desc, r.typ))
		}
		switch r.action {
		case raDrop:
			return chainDrop
		case raReject:
			return chainReject
		default:
			return chainAccept
		}
	}
}

func chainName(c *chain) string {
	if c.name != "" {
		return c.name
	}
	return c.id
}

// ruleMatches applies every condition of r. A condition on a field the
// packet does not have (an IP prefix on an LLDP frame, ports on ARP) does
// not match, so its inverted form does: "src !10.0.0.0/8" holds for a
// frame with no IP source at all. That keeps inversion an exact negation.
func (w *walk) ruleMatches(r *rule, inPort, outPort int32) bool {
	p := w.pkt
	if len(r.inPorts) > 0 && containsPort(r.inPorts, inPort) == r.invIn {
		return false
	}
	if len(r.outPorts) > 0 && containsPort(r.outPorts, outPort) == r.invOut {
		return false
	}
	if r.pg != none {
		g := &w.t.pgroups[r.pg]
		w.res.addTag(g.tag)
		in := inPort != none && int(inPort/64) < len(g.members) && g.members[inPort/64]&(1<<(inPort%64)) != 0
		if in == r.invPG {
			return false
		}
	}
	if r.etherType != 0 && (p.EtherType == r.etherType) == r.invEtherType {
		return false
	}
	if r.hasSrcMAC && (w.cur.src == r.srcMAC) == r.invSrcMAC {
		return false
	}
	if r.hasDstMAC && (w.cur.dst == r.dstMAC) == r.invDstMAC {
		return false
	}
	src, dst, hasIP := l3Addrs(p)
	if r.src.IsValid() && (hasIP && r.src.Contains(src)) == r.invSrc {
		return false
	}
	if r.dst.IsValid() && (hasIP && r.dst.Contains(dst)) == r.invDst {
		return false
	}
	if r.ipgSrc != none {
		g := &w.t.ipgroups[r.ipgSrc]
		w.res.addTag(g.tag)
		_, in := g.addrs.Get(src)
		if (hasIP && in) == r.invIPGSrc {
			return false
		}
	}
	if r.ipgDst != none {
		g := &w.t.ipgroups[r.ipgDst]
		w.res.addTag(g.tag)
		_, in := g.addrs.Get(dst)
		if (hasIP && in) == r.invIPGDst {
			return false
		}
	}
	// The ARP sender hardware address and the ND target are not in the
	// datapath's flow key: a decision that read them holds for this packet
	// only, or one frame's verdict would pass the next frame's forgery.
	if r.hasARPSHA {
		isARP := p.L3 == packet.L3ARP
		w.res.SlowPath = w.res.SlowPath || isARP
		if (isARP && p.ARPSenderMAC == r.arpSHA) == r.invARPSHA {
			return false
		}
	}
	if r.ndTarget.IsValid() {
		t, ok := ndTarget(p)
		w.res.SlowPath = w.res.SlowPath || ok
		if (ok && r.ndTarget.Contains(t)) == r.invNDTarget {
			return false
		}
	}
	isIP := p.L3 == packet.L3IPv4 || p.L3 == packet.L3IPv6
	if r.proto != 0 && (isIP && p.IPProto == r.proto) == r.invProto {
		return false
	}
	if r.tos != 0 && !(isIP && p.TOS == r.tos) {
		return false
	}
	if !r.srcPort.IsZero() || !r.dstPort.IsZero() {
		sp, dp, ok := l4Ports(p)
		if !r.srcPort.IsZero() && (ok && r.srcPort.Contains(sp)) == r.invSPort {
			return false
		}
		if !r.dstPort.IsZero() && (ok && r.dstPort.Contains(dp)) == r.invDPort {
			return false
		}
	}
	switch r.frag {
	case fragHeader:
		if isIP && p.Frag == packet.FragLater {
			return false
		}
	case fragNonHeader:
		if !isIP || p.Frag != packet.FragLater {
			return false
		}
	case fragUnfragmented:
		if isIP && p.Frag != packet.FragNone {
			return false
		}
	}
	if (r.flowDir != flowAny || r.ctState != flowstate.CTUntracked) && !w.ctMatches(r) {
		return false
	}
	return true
}

func containsPort(l []int32, p int32) bool {
	for _, x := range l {
		if x == p {
			return true
		}
	}
	return false
}

// l3Addrs returns the addresses rules match on: the IP source and
// destination, or an ARP packet's sender and target protocol addresses (as
// OpenFlow's nw_src/nw_dst do, so "src 10.0.0.0/8 drop" also stops ARP
// spoofing from outside the range).
func l3Addrs(p *packet.Parsed) (src, dst netip.Addr, ok bool) {
	switch p.L3 {
	case packet.L3IPv4, packet.L3IPv6:
		return p.SrcIP, p.DstIP, true
	case packet.L3ARP:
		return p.ARPSenderIP, p.ARPTargetIP, true
	}
	return netip.Addr{}, netip.Addr{}, false
}

// ndTarget returns the target address of a neighbor solicitation or
// advertisement, the address whose link-layer address it asks for or
// announces.
func ndTarget(p *packet.Parsed) (netip.Addr, bool) {
	if p.L4 == packet.L4ICMPv6 && (p.ICMPType == packet.ICMPv6NeighborSolicit || p.ICMPType == packet.ICMPv6NeighborAdvert) {
		return p.NDTarget, true
	}
	return netip.Addr{}, false
}

// l4Ports returns what port conditions match: TCP/UDP ports, or ICMP type
// and code (the model's convention for src-port and dst-port with proto 1
// or 58).
func l4Ports(p *packet.Parsed) (src, dst uint16, ok bool) {
	switch p.L4 {
	case packet.L4TCP, packet.L4UDP:
		return p.SrcPort, p.DstPort, true
	case packet.L4ICMPv4, packet.L4ICMPv6:
		return uint16(p.ICMPType), uint16(p.ICMPCode), true
	}
	return 0, 0, false
}

// DescribeRule is a rule's condition as traces print it ("proto 6 dst-port
// 22"), for views that list rules beside traces (the dashboard).
func DescribeRule(r *model.Rule) string { return describeRule(r) }
