package neutron

import (
	"net/netip"
	"slices"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// The old translation of a filtered port (before model.Port.Sources): its
// own chains, jumping to two common chains and to its groups' chains, and
// an address object per address and group. Kept for the tests: the
// differential test proves the new form gives the same verdicts, and the
// migration tests write old-shape data with it.

// legacyTranslatePort is TranslatePort as it was.
func legacyTranslatePort(in PortInput) []model.Object {
	objs := TranslatePort(in)
	p := in.Port
	if len(objs) == 0 || !p.Filtered() {
		return objs
	}
	bp := objs[0].(*model.Port)
	bp.Sources, bp.EgressChainIDs, bp.IngressChainIDs, bp.Stateful, bp.MemberAddrs, bp.IPAddrGroupIDs = nil, nil, nil, false, nil, nil
	bp.InboundFilterID, bp.OutboundFilterID = portInChainID(p.ID), portOutChainID(p.ID)
	objs = append(objs, legacyPortChains(p, in.Groups)...)
	for _, ip := range hostAddrs(p) {
		for _, g := range in.Groups {
			objs = append(objs, &model.IPAddrGroupAddr{Meta: model.Meta{ID: DerivedID("sg-member", p.ID, g.ID, ip.String())},
				IPAddrGroupID: sgAddrGroupID(g.ID), Address: ip})
		}
	}
	return objs
}

// The common chains held what every filtered port accepts whatever its
// groups: written once, jumped to from each port's chains.

// ICMPv6 types of neighbor discovery (RFC 4861).
const (
	icmp6RouterSolicit   = 133
	icmp6RouterAdvert    = 134
	icmp6NeighborSolicit = 135
	icmp6NeighborAdvert  = 136
)

// legacyCommonChains are the common chains: in, from a VM (whose MAC the jump
// checked), DHCP, DHCPv6, router and neighbor solicitations, and a drop of
// router advertisements (a VM is no router; Neutron drops them too); out,
// ARP, DHCP replies and neighbor discovery to it. ARP and neighbor
// advertisements from a VM claim an address, so each port's own chain
// accepts them per address it owns (portChains).
func legacyCommonChains() []model.Object {
	in := []*model.Rule{
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherIPv4, Proto: 17, SrcPort: single(68), DstPort: single(67)}},
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherIPv6, Proto: 17, SrcPort: single(546), DstPort: single(547)}},
		// A solicitation's target is what it asks about, not a claim, and
		// duplicate address detection sends it from ::.
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherIPv6, Proto: 58, SrcPort: single(icmp6RouterSolicit)}},
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherIPv6, Proto: 58, SrcPort: single(icmp6NeighborSolicit)}},
		{Type: model.RuleDrop, Condition: model.Condition{EtherType: etherIPv6, Proto: 58, SrcPort: single(icmp6RouterAdvert)}},
	}
	out := []*model.Rule{
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherARP}},
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherIPv4, Proto: 17, SrcPort: single(67), DstPort: single(68)}},
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherIPv6, Proto: 17, SrcPort: single(547), DstPort: single(546)}},
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherIPv6, Proto: 58, SrcPort: model.PortRange{Start: 130, End: 137}}},
	}
	return append(chain(legacyCommonInChainID, "neutron ports: common in", "", in), chain(legacyCommonOutChainID, "neutron ports: common out", "", out)...)
}

// legacyPortChains are a filtered port's three chains. In (from the VM): return
// traffic of tracked connections; the common in-chain for each MAC the port
// may send from; for each (MAC, source) it may send from, ARP whose sender
// (Ethernet and payload hardware address, protocol address) is that pair,
// and neighbor advertisements from that MAC for that source; any other
// advertisement is dropped (it would otherwise reach the groups' egress
// rules, which commonly accept all IPv6); then for each (MAC, source) a
// jump to the egress dispatch chain (its groups' egress rules); whatever
// nothing accepted is dropped. Out (to the VM): return traffic, the common
// out-chain, the groups' ingress rules, drop.
func legacyPortChains(p *Port, groups []*SecurityGroup) []model.Object {
	mac := p.MACAddress
	stateful := false
	for _, g := range groups {
		stateful = stateful || g.Stateful
	}
	type source struct {
		mac packet.MAC
		src netip.Prefix
	}
	var sources []source
	for _, f := range p.FixedIPs {
		sources = append(sources, source{mac, netip.PrefixFrom(f.IPAddress, f.IPAddress.BitLen())})
	}
	sources = append(sources, source{mac, netip.PrefixFrom(linkLocal(mac), 128)})
	macs := []packet.MAC{mac}
	for _, a := range p.AllowedAddressPairs {
		m := a.MACAddress
		if m.IsZero() {
			m = mac
		}
		sources = append(sources, source{m, a.IPAddress})
		if !slices.Contains(macs, m) {
			macs = append(macs, m)
		}
	}
	var in []*model.Rule
	if stateful {
		in = append(in, &model.Rule{Type: model.RuleAccept, Condition: model.Condition{Flow: "return-flow"}})
	}
	for _, m := range macs {
		in = append(in, &model.Rule{Type: model.RuleJump, JumpChainID: legacyCommonInChainID, Condition: model.Condition{SrcMAC: m}})
	}
	for _, s := range sources {
		if s.src.Addr().Is4() {
			in = append(in, &model.Rule{Type: model.RuleAccept,
				Condition: model.Condition{EtherType: etherARP, SrcMAC: s.mac, ARPSHA: s.mac, Src: s.src}})
		} else {
			in = append(in, &model.Rule{Type: model.RuleAccept,
				Condition: model.Condition{EtherType: etherIPv6, Proto: 58, SrcPort: single(icmp6NeighborAdvert), SrcMAC: s.mac, NDTarget: s.src}})
		}
	}
	in = append(in, &model.Rule{Type: model.RuleDrop, Condition: model.Condition{EtherType: etherIPv6, Proto: 58, SrcPort: single(icmp6NeighborAdvert)}})
	for _, s := range sources {
		in = append(in, &model.Rule{Type: model.RuleJump, JumpChainID: portEgChainID(p.ID),
			Condition: model.Condition{SrcMAC: s.mac, EtherType: etherOf(s.src.Addr()), Src: s.src}})
	}
	in = append(in, &model.Rule{Type: model.RuleDrop})

	var eg, out []*model.Rule
	for _, g := range groups {
		eg = append(eg, &model.Rule{Type: model.RuleJump, JumpChainID: sgEgressChainID(g.ID)})
	}
	if stateful {
		out = append(out, &model.Rule{Type: model.RuleAccept, Condition: model.Condition{Flow: "return-flow"}})
	}
	out = append(out, &model.Rule{Type: model.RuleJump, JumpChainID: legacyCommonOutChainID})
	for _, g := range groups {
		out = append(out, &model.Rule{Type: model.RuleJump, JumpChainID: sgIngressChainID(g.ID)})
	}
	out = append(out, &model.Rule{Type: model.RuleDrop})

	objs := chain(portEgChainID(p.ID), "port "+p.ID+" egress groups", p.ProjectID, eg)
	objs = append(objs, chain(portInChainID(p.ID), "port "+p.ID+" in", p.ProjectID, in)...)
	return append(objs, chain(portOutChainID(p.ID), "port "+p.ID+" out", p.ProjectID, out)...)
}
