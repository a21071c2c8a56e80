package sim

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// secFrame is a bridge, an IP address group and a chain for secured
// ports to name.
func secFrame() []model.Object {
	return []model.Object{
		&model.Bridge{Meta: meta("b"), State: model.StateUp},
		&model.IPAddrGroup{Meta: meta("g")},
		&model.Chain{Meta: meta("c")},
	}
}

func securedPort(id string, mac packet.MAC, addrs ...string) *model.Port {
	p := &model.Port{Meta: meta(id), BridgeID: "b", State: model.StateUp, MAC: mac,
		Sources: []model.PortSource{{MAC: mac, Prefix: pfx("10.0.0.0/24")}}, EgressChainIDs: []string{"c"}, IngressChainIDs: []string{"c"}}
	for _, a := range addrs {
		p.MemberAddrs = append(p.MemberAddrs, ip(a))
	}
	if len(addrs) > 0 {
		p.IPAddrGroupIDs = []string{"g"}
	}
	return p
}

func TestPortSecurityReferences(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*model.Port)
		want string
	}{
		{"egress chain", func(p *model.Port) { p.EgressChainIDs = []string{"nope"} }, "port p1: port security chain nope does not exist"},
		{"ingress chain", func(p *model.Port) { p.IngressChainIDs = []string{"nope"} }, "port p1: port security chain nope does not exist"},
		{"address group", func(p *model.Port) { p.IPAddrGroupIDs = []string{"nope"} }, "port p1: ip-address-group nope does not exist"},
	} {
		p := securedPort("p1", packet.MAC{2, 0, 0, 0, 0, 1}, "10.0.0.5")
		tc.edit(p)
		_, err := Build(append(secFrame(), p))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Build error %v, want %q", tc.name, err, tc.want)
		}
	}
}

// An address is in a group while anything puts it there: address objects
// and ports count alike, through Build and Apply.
func TestPortSecurityMembershipCounts(t *testing.T) {
	a := securedPort("pa", packet.MAC{2, 0, 0, 0, 0, 1}, "10.0.0.5")
	b := securedPort("pb", packet.MAC{2, 0, 0, 0, 0, 2}, "10.0.0.5", "10.0.0.6")
	obj := &model.IPAddrGroupAddr{Meta: meta("x"), IPAddrGroupID: "g", Address: ip("10.0.0.5")}
	objs := objSet{}
	for _, o := range append(secFrame(), a, b, obj) {
		objs.put(o)
	}
	topo, err := BuildFrom(objs)
	if err != nil {
		t.Fatal(err)
	}
	member := func(topo *Topology, addr string) bool {
		_, ok := topo.ipgroups[topo.ipgByID["g"]].addrs.Get(ip(addr))
		return ok
	}
	steps := []struct {
		change   Change
		in, away []string
	}{
		{Change{Old: objs.del(model.PortKind, "pa")}, []string{"10.0.0.5", "10.0.0.6"}, nil},
		{Change{Old: objs.del(model.IPAddrGroupAddrKind, "x")}, []string{"10.0.0.5", "10.0.0.6"}, nil},
		{Change{Old: b, New: func() model.Object {
			c := *b
			c.MemberAddrs = []netip.Addr{ip("10.0.0.6")}
			objs.put(&c)
			return &c
		}()}, []string{"10.0.0.6"}, []string{"10.0.0.5"}},
		{Change{Old: objs.del(model.PortKind, "pb")}, nil, []string{"10.0.0.5", "10.0.0.6"}},
	}
	for i, s := range steps {
		next, err := topo.Apply([]Change{s.change}, objs)
		if err != nil {
			t.Fatal(err)
		}
		if &next.ipgroups[0] == &topo.ipgroups[0] {
			t.Errorf("step %d changed the group in the old topology's list", i)
		}
		for _, addr := range s.in {
			if !member(next, addr) {
				t.Errorf("step %d: %s left the group while a holder remains", i, addr)
			}
		}
		for _, addr := range s.away {
			if member(next, addr) {
				t.Errorf("step %d: %s still in the group with no holder", i, addr)
			}
		}
		topo = next
	}
}

func TestPortSecurityChangeTags(t *testing.T) {
	p := securedPort("p1", packet.MAC{2, 0, 0, 0, 0, 1}, "10.0.0.5")
	topo, err := Build(append(secFrame(), p))
	if err != nil {
		t.Fatal(err)
	}
	if tags := topo.ChangeTags(p); !slices.Contains(tags, ObjectTag(model.IPAddrGroupKind, "g")) {
		t.Errorf("a port's change does not invalidate the address group it is a member of: %x", tags)
	}
	p.MemberAddrs, p.IPAddrGroupIDs = nil, nil
	if tags := topo.ChangeTags(p); slices.Contains(tags, ObjectTag(model.IPAddrGroupKind, "g")) {
		t.Errorf("a port with no member addresses invalidates an address group: %x", tags)
	}
}

// A secured VM port joining its groups is applied, not rebuilt: the
// chains it names are the old topology's.
func TestSecuredPortAppliesIncrementally(t *testing.T) {
	objs := objSet{}
	for _, o := range secFrame() {
		objs.put(o)
	}
	topo, err := BuildFrom(objs)
	if err != nil {
		t.Fatal(err)
	}
	p := securedPort("p1", packet.MAC{2, 0, 0, 0, 0, 1}, "10.0.0.5")
	objs.put(p)
	next, err := topo.Apply([]Change{{New: p}}, objs)
	if err != nil {
		t.Fatal(err)
	}
	if &next.chains[0] != &topo.chains[0] {
		t.Error("a secured port's creation rebuilt the topology")
	}
	i, ok := next.PortIndex("p1")
	if !ok || next.ports.At(i).sec == nil || next.ports.At(i).sec.eg.rules[0].jumpTo != &next.chains[0] {
		t.Errorf("the applied port's security does not jump to its group's chain")
	}
	built, err := BuildFrom(objs)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := canon(next), canon(built); got != want {
		t.Errorf("applied:\n%s\nbuilt:\n%s", got, want)
	}
}
