package sim

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// Port security (model.Port.Sources): a secured port's filter is built in.
// It names its groups' chains and lists the sources the port may send
// from, and Build compiles it into the chains Neutron used to store per
// port (a port's in, out and egress-dispatch chains): a port joining its
// security groups then writes no chain or rule of its own, as an OVN port
// joins a port group, and the walk through the compiled chains is the one
// the stored chains gave, rule for rule.
//
// The compiled chains are the port's: their rules carry the port's tag
// (changing the port is what changes them) and jump to the common chains
// below and to the port's egress dispatch by pointer, to the groups' chains
// by index like any jump.

// portSec is a secured port's compiled filter.
type portSec struct {
	in, out, eg chain
}

// ICMPv6 types of neighbor discovery (RFC 4861).
const (
	icmp6RouterSolicit   = 133
	icmp6RouterAdvert    = 134
	icmp6NeighborSolicit = 135
	icmp6NeighborAdvert  = 136
)

const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
	etherARP  = 0x0806
)

func single(port uint16) model.PortRange { return model.PortRange{Start: port, End: port} }

// Common chains: what every secured port passes whatever its groups. In,
// from a VM (whose MAC the jump checked): DHCP, DHCPv6, router and neighbor
// solicitations, and a drop of router advertisements (a VM is no router).
// Out, to it: ARP, DHCP replies and neighbor discovery. ARP and neighbor
// advertisements from a VM claim an address, so the port's own chain
// accepts them per source it may send from.
var (
	commonIn = mustCommon("port security: common in", []model.Rule{
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherIPv4, Proto: 17, SrcPort: single(68), DstPort: single(67)}},
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherIPv6, Proto: 17, SrcPort: single(546), DstPort: single(547)}},
		// A solicitation's target is what it asks about, not a claim, and
		// duplicate address detection sends it from ::.
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherIPv6, Proto: 58, SrcPort: single(icmp6RouterSolicit)}},
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherIPv6, Proto: 58, SrcPort: single(icmp6NeighborSolicit)}},
		{Type: model.RuleDrop, Condition: model.Condition{EtherType: etherIPv6, Proto: 58, SrcPort: single(icmp6RouterAdvert)}},
	})
	commonOut = mustCommon("port security: common out", []model.Rule{
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherARP}},
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherIPv4, Proto: 17, SrcPort: single(67), DstPort: single(68)}},
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherIPv6, Proto: 17, SrcPort: single(547), DstPort: single(546)}},
		{Type: model.RuleAccept, Condition: model.Condition{EtherType: etherIPv6, Proto: 58, SrcPort: model.PortRange{Start: 130, End: 137}}},
	})
)

// mustCommon compiles a common chain. Its rules read no port, group or
// chain, so compiling them needs no topology; they never change, so their
// tag is the chain's name's.
func mustCommon(name string, rules []model.Rule) *chain {
	c := &chain{id: name, name: name, tag: objectTag("port-security", name)}
	var t Topology
	for i := range rules {
		cr, err := t.compileRule(&rules[i], i+1, nil, nil)
		if err != nil {
			panic(fmt.Sprintf("sim: %s: %v", name, err))
		}
		cr.tag = c.tag
		c.rules = append(c.rules, cr)
	}
	return c
}

// secRule is a rule of a compiled port filter: its condition, and the
// chain it jumps to (nil: the rule's own action).
type secRule struct {
	rule model.Rule
	to   *chain
}

// compilePortSec compiles a secured port's filter (nil for a port without
// one). The in chain (from the VM): return traffic of tracked connections
// when stateful; the common in-chain for each MAC the port may send from;
// for each source, ARP whose sender (Ethernet and payload hardware
// address, protocol address) is that source, or neighbor advertisements
// from its MAC for its prefix; any other advertisement is dropped (it would
// otherwise reach the groups' egress rules, which commonly accept all
// IPv6); then for each source a jump to the egress dispatch (each egress
// chain in turn); whatever nothing accepted is dropped. The out chain (to
// the VM): return traffic, the common out-chain, each ingress chain, drop.
func (t *Topology) compilePortSec(mp *model.Port, tag uint64) (*portSec, error) {
	if !mp.Secured() {
		return nil, nil
	}
	what := "port " + mp.ID
	s := &portSec{
		in:  chain{id: mp.ID + "/in", name: what + " in", tag: tag},
		out: chain{id: mp.ID + "/out", name: what + " out", tag: tag},
		eg:  chain{id: mp.ID + "/egress", name: what + " egress groups", tag: tag},
	}
	jump := func(id string) (*chain, error) {
		c, ok := t.chainByID[id]
		if !ok {
			return nil, fmt.Errorf("%s: port security chain %s does not exist", what, id)
		}
		return &t.chains[c], nil
	}
	var eg, in, out []secRule
	for _, id := range mp.EgressChainIDs {
		c, err := jump(id)
		if err != nil {
			return nil, err
		}
		eg = append(eg, secRule{model.Rule{Type: model.RuleJump}, c})
	}
	returnFlow := secRule{rule: model.Rule{Type: model.RuleAccept, Condition: model.Condition{Flow: "return-flow"}}}
	if mp.Stateful {
		in = append(in, returnFlow)
		out = append(out, returnFlow)
	}
	var macs []packet.MAC
	for _, src := range mp.Sources {
		if !slices.Contains(macs, src.MAC) {
			macs = append(macs, src.MAC)
		}
	}
	for _, m := range macs {
		in = append(in, secRule{model.Rule{Type: model.RuleJump, Condition: model.Condition{SrcMAC: m}}, commonIn})
	}
	for _, src := range mp.Sources {
		if src.Prefix.Addr().Is4() {
			in = append(in, secRule{rule: model.Rule{Type: model.RuleAccept,
				Condition: model.Condition{EtherType: etherARP, SrcMAC: src.MAC, ARPSHA: src.MAC, Src: src.Prefix}}})
		} else {
			in = append(in, secRule{rule: model.Rule{Type: model.RuleAccept,
				Condition: model.Condition{EtherType: etherIPv6, Proto: 58, SrcPort: single(icmp6NeighborAdvert), SrcMAC: src.MAC, NDTarget: src.Prefix}}})
		}
	}
	in = append(in, secRule{rule: model.Rule{Type: model.RuleDrop, Condition: model.Condition{EtherType: etherIPv6, Proto: 58, SrcPort: single(icmp6NeighborAdvert)}}})
	for _, src := range mp.Sources {
		in = append(in, secRule{model.Rule{Type: model.RuleJump,
			Condition: model.Condition{SrcMAC: src.MAC, EtherType: etherOf(src.Prefix.Addr()), Src: src.Prefix}}, &s.eg})
	}
	in = append(in, secRule{rule: model.Rule{Type: model.RuleDrop}})
	out = append(out, secRule{model.Rule{Type: model.RuleJump}, commonOut})
	for _, id := range mp.IngressChainIDs {
		c, err := jump(id)
		if err != nil {
			return nil, err
		}
		out = append(out, secRule{model.Rule{Type: model.RuleJump}, c})
	}
	out = append(out, secRule{rule: model.Rule{Type: model.RuleDrop}})
	for _, x := range []struct {
		c     *chain
		rules []secRule
	}{{&s.eg, eg}, {&s.in, in}, {&s.out, out}} {
		x.c.rules = make([]rule, len(x.rules))
		for i, sr := range x.rules {
			r := sr.rule
			if sr.to != nil {
				r.Type = model.RuleContinue // compiled without a chain id; the jump is set below
			}
			cr, err := t.compileRule(&r, i+1, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: port security: %w", what, err)
			}
			cr.id, cr.tag = "", tag
			if sr.to != nil {
				cr.action, cr.typ, cr.jumpTo = raJump, model.RuleJump, sr.to
			}
			x.c.rules[i] = cr
		}
	}
	return s, nil
}

func etherOf(a netip.Addr) uint16 {
	if a.Is4() {
		return etherIPv4
	}
	return etherIPv6
}

// joinGroups counts port mp's member addresses into (n = 1) or out of (n =
// -1) its IP address groups. The caller owns t.ipgroups (Build, or Apply
// after copying it).
func (t *Topology) joinGroups(mp *model.Port, n int32) error {
	for _, id := range mp.IPAddrGroupIDs {
		g, ok := t.ipgByID[id]
		if !ok {
			return fmt.Errorf("port %s: ip-address-group %s does not exist", mp.ID, id)
		}
		for _, a := range mp.MemberAddrs {
			t.ipgroups[g].add(a, n, t.gen)
		}
	}
	return nil
}
