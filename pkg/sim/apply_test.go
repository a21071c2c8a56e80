package sim

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// objSet is a model for Apply: objects by kind and id.
type objSet map[*model.Kind]map[string]model.Object

func (s objSet) Each(k *model.Kind, fn func(model.Object) bool) {
	ids := make([]string, 0, len(s[k]))
	for id := range s[k] {
		ids = append(ids, id)
	}
	// Random order: Apply and Build must not depend on it.
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	for _, id := range ids {
		if !fn(s[k][id]) {
			return
		}
	}
}

func (s objSet) put(o model.Object) (old model.Object) {
	k := model.KindOf(o)
	if s[k] == nil {
		s[k] = map[string]model.Object{}
	}
	old = s[k][o.GetMeta().ID]
	s[k][o.GetMeta().ID] = o
	return old
}

func (s objSet) del(k *model.Kind, id string) model.Object {
	old := s[k][id]
	delete(s[k], id)
	return old
}

// canon renders a topology by ids, not indexes: two topologies of one
// model render the same whatever order they were built or changed in.
func canon(t *Topology) string {
	var lines []string
	add := func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }
	pid := func(i int32) string {
		if i == none {
			return "-"
		}
		return t.ports.At(i).id
	}
	cid := func(i int32) string {
		if i == none {
			return "-"
		}
		return t.chains[i].id
	}
	hid := func(i int32) string {
		if i == none {
			return "-"
		}
		return t.hosts[i].id
	}
	dev := func(k devKind, d int32) string {
		if k == devBridge {
			return "bridge " + t.bridges[d].id
		}
		return "router " + t.routers[d].id
	}
	live := 0
	for i := range t.ports.Len() {
		p := t.ports.At(i)
		if p.id == "" {
			continue
		}
		live++
		if q, ok := t.portByID.Get(p.id); !ok || q != i {
			add("BROKEN portByID %s", p.id)
		}
		add("port %s tag %x %s up %v in %s out %s vlan %d mac %s addr %s net %s ll %s peer %s host %s/%s if %s key %d nat %v",
			p.id, p.tag, dev(p.kind, p.dev), p.up, cid(p.inChain), cid(p.outChain), p.vlan, p.mac, p.addr, p.network,
			p.linkLocal, pid(p.peer), hid(p.host), p.hostID, p.ifName, p.tunnelKey, p.natAddrs)
		if p.sec != nil {
			for _, c := range []*chain{&p.sec.in, &p.sec.eg, &p.sec.out} {
				var rs []string
				for _, r := range c.rules {
					to := ""
					switch {
					case r.jumpTo != nil:
						to = r.jumpTo.id
					case r.jump != none:
						to = cid(r.jump)
					}
					rs = append(rs, fmt.Sprintf("%s %s src %s mac %s tag %x → %s", r.typ, r.desc, r.src, r.srcMAC, r.tag, to))
				}
				add("port %s security %s %x %v", p.id, c.name, c.tag, rs)
			}
		}
	}
	if live != t.portByID.Len() {
		add("BROKEN %d live ports, %d indexed", live, t.portByID.Len())
	}
	t.portByKey.Each(func(k uint32, i int32) bool { add("key %d %s", k, pid(i)); return true })
	for _, b := range t.bridges {
		var ps []string
		for _, q := range b.ports {
			ps = append(ps, pid(q))
		}
		add("bridge %s up %v in %s out %s ports %v", b.id, b.up, cid(b.inChain), cid(b.outChain), ps)
	}
	for _, r := range t.routers {
		var ps []string
		for _, q := range r.ports {
			ps = append(ps, pid(q))
		}
		add("router %s up %v ports %v routes %d lb %d", r.id, r.up, ps, len(r.routes.entries), r.lb)
	}
	t.staticMAC.Each(func(k macKey, q int32) bool {
		add("static mac %s vlan %d %s → %s", t.bridges[k.dev].id, k.vlan, k.mac, pid(q))
		if t.bridges[k.dev].macBloom&macBloomBit(k.mac) == 0 {
			add("BROKEN mac bloom")
		}
		return true
	})
	t.staticIP.Each(func(k ipKey, e staticEntry) bool {
		a := netip.AddrFrom16(k.ip).Unmap()
		add("static ip %s vlan %d %s → %s tag %x port %s", t.bridges[k.dev].id, k.vlan, a, e.mac, e.tag, pid(e.port))
		if t.bridges[k.dev].ipBloom&ipBloomBit(netip.AddrFrom16(k.ip)) == 0 && t.bridges[k.dev].ipBloom&ipBloomBit(a) == 0 {
			add("BROKEN ip bloom")
		}
		return true
	})
	for _, g := range t.pgroups {
		var ms []string
		for i := range t.ports.Len() {
			if int(i/64) < len(g.members) && g.members[i/64]&(1<<(i%64)) != 0 {
				ms = append(ms, pid(i))
			}
		}
		sort.Strings(ms)
		add("pgroup %s %v", g.id, ms)
	}
	for _, g := range t.ipgroups {
		var as []string
		g.addrs.Each(func(a netip.Addr, n int32) bool { as = append(as, fmt.Sprintf("%s×%d", a, n)); return true })
		sort.Strings(as)
		add("ipgroup %s %v", g.id, as)
	}
	for _, h := range t.hosts {
		add("host %s zones %v", h.id, h.zones)
	}
	for _, c := range t.chains {
		var rs []string
		for _, r := range c.rules {
			var in, out []string
			for _, q := range r.inPorts {
				in = append(in, pid(q))
			}
			for _, q := range r.outPorts {
				out = append(out, pid(q))
			}
			rs = append(rs, fmt.Sprintf("%s in %v out %v", r.id, in, out))
		}
		add("chain %s %v", c.id, rs)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// applyModel is a random model of the kinds Apply handles alone, over
// a fixed frame of devices: two bridges linked to a router, a chain whose
// rules read a port group and an address group, DHCP on one bridge.
type applyModel struct {
	r    *rand.Rand
	objs objSet
	next int
}

func newApplyModel(seed uint64) *applyModel {
	m := &applyModel{r: rand.New(rand.NewPCG(seed, 7)), objs: objSet{}}
	for _, o := range []model.Object{
		&model.Host{Meta: meta("h1")}, &model.Host{Meta: meta("h2")}, &model.Host{Meta: meta("h3")},
		&model.TunnelZone{Meta: meta("tz"), Type: model.TunnelVXLAN}, &model.TunnelZone{Meta: meta("tz2"), Type: model.TunnelGRE},
		&model.TunnelZoneMember{Meta: meta("m1"), TunnelZoneID: "tz", HostID: "h1", Address: ip("10.99.0.1")},
		&model.TunnelZoneMember{Meta: meta("m2"), TunnelZoneID: "tz", HostID: "h2", Address: ip("10.99.0.2")},
		&model.Bridge{Meta: meta("b0"), State: model.StateUp}, &model.Bridge{Meta: meta("b1"), State: model.StateUp},
		&model.Router{Meta: meta("r0"), State: model.StateUp},
		&model.Port{Meta: meta("rp0"), RouterID: "r0", State: model.StateUp, MAC: packet.MAC{2, 0, 0, 0, 1, 0}, Address: ip("10.0.0.1"), Network: pfx("10.0.0.0/24"), PeerID: "bp0", TunnelKey: 9000},
		&model.Port{Meta: meta("bp0"), BridgeID: "b0", State: model.StateUp, PeerID: "rp0", TunnelKey: 9001},
		&model.Port{Meta: meta("rp1"), RouterID: "r0", State: model.StateUp, MAC: packet.MAC{2, 0, 0, 0, 1, 1}, Address: ip("10.0.1.1"), Network: pfx("10.0.1.0/24"), PeerID: "bp1", TunnelKey: 9002},
		&model.Port{Meta: meta("bp1"), BridgeID: "b1", State: model.StateUp, PeerID: "rp1", TunnelKey: 9003},
		&model.Route{Meta: meta("rt0"), RouterID: "r0", Dst: pfx("10.0.0.0/24"), PortID: "rp0"},
		&model.Route{Meta: meta("rt1"), RouterID: "r0", Dst: pfx("10.0.1.0/24"), PortID: "rp1"},
		&model.PortGroup{Meta: meta("pg")}, &model.IPAddrGroup{Meta: meta("ipg")},
		&model.Chain{Meta: meta("sg"), RuleIDs: []string{"r-pg", "r-ipg", "r-drop"}},
		&model.Rule{Meta: meta("r-pg"), ChainID: "sg", Type: model.RuleAccept, Condition: model.Condition{PortGroupID: "pg"}},
		&model.Rule{Meta: meta("r-ipg"), ChainID: "sg", Type: model.RuleAccept, Condition: model.Condition{IPAddrGroupSrcID: "ipg"}},
		&model.Rule{Meta: meta("r-drop"), ChainID: "sg", Type: model.RuleDrop},
		&model.DHCPSubnet{Meta: meta("d0"), BridgeID: "b0", Subnet: pfx("10.0.0.0/24")},
	} {
		m.objs.put(o)
	}
	return m
}

func (m *applyModel) ids(k *model.Kind, keep func(model.Object) bool) []string {
	var ids []string
	for id, o := range m.objs[k] {
		if keep == nil || keep(o) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (m *applyModel) pick(k *model.Kind, keep func(model.Object) bool) (model.Object, bool) {
	ids := m.ids(k, keep)
	if len(ids) == 0 {
		return nil, false
	}
	return m.objs[k][ids[m.r.IntN(len(ids))]], true
}

func isVMPort(o model.Object) bool {
	p := o.(*model.Port)
	return p.RouterID == "" && p.PeerID == ""
}

// secure gives a VM port, at random, port security (by reference to the
// chain sg) and addresses in the address group ipg, which the group's
// address objects may hold too.
func (m *applyModel) secure(p *model.Port) {
	r := m.r
	if r.IntN(2) == 0 {
		p.Sources = []model.PortSource{{MAC: p.MAC, Prefix: pfx("10.0.0.0/24")}}
		if r.IntN(2) == 0 {
			p.Sources = append(p.Sources, model.PortSource{MAC: packet.MAC{2, 0xbb, 0, 0, 0, 1}, Prefix: pfx("fd00::/64")})
		}
		p.Stateful = r.IntN(2) == 0
		if r.IntN(2) == 0 {
			p.EgressChainIDs = []string{"sg"}
		}
		if r.IntN(2) == 0 {
			p.IngressChainIDs = []string{"sg"}
		}
	}
	if r.IntN(2) == 0 {
		p.IPAddrGroupIDs = []string{"ipg"}
		for range 1 + r.IntN(2) {
			p.MemberAddrs = append(p.MemberAddrs, netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + r.IntN(8))}))
		}
	}
}

// step makes one random change (a few, as one transaction would) and
// returns it.
func (m *applyModel) step() []Change {
	r := m.r
	var out []Change
	put := func(o model.Object) { out = append(out, Change{Old: m.objs.put(o), New: o}) }
	del := func(k *model.Kind, id string) { out = append(out, Change{Old: m.objs.del(k, id)}) }
	m.next++
	id := fmt.Sprintf("x%03d", m.next)
	switch r.IntN(12) {
	case 0, 1, 2: // a VM port, maybe bound, maybe filtered
		p := &model.Port{Meta: meta("p" + id), BridgeID: []string{"b0", "b1"}[r.IntN(2)], State: model.StateUp,
			MAC: packet.MAC{2, 0xaa, 0, 0, byte(m.next >> 8), byte(m.next)}, TunnelKey: uint32(100 + r.IntN(400))}
		if r.IntN(3) != 0 {
			p.HostID, p.InterfaceName = []string{"h1", "h2", "h3", "h9"}[r.IntN(4)], "tap"+id
		}
		if r.IntN(2) == 0 {
			p.InboundFilterID = "sg"
		}
		m.secure(p)
		if r.IntN(5) == 0 {
			p.VLAN = uint16(1 + r.IntN(2))
		}
		put(p)
		if r.IntN(2) == 0 { // with its group membership, in one transaction
			put(&model.PortGroupMember{Meta: meta("pgm" + id), PortGroupID: "pg", PortID: p.ID})
		}
	case 3: // rebind, rekey, refilter a VM port
		if o, ok := m.pick(model.PortKind, isVMPort); ok {
			p := *o.(*model.Port)
			switch r.IntN(4) {
			case 0:
				p.HostID, p.InterfaceName = []string{"h1", "h2", "h3", ""}[r.IntN(4)], "tap"+id
				if p.HostID == "" {
					p.InterfaceName = ""
				}
			case 1:
				p.TunnelKey = uint32(100 + r.IntN(400))
			case 2:
				p.OutboundFilterID = []string{"", "sg"}[r.IntN(2)]
			case 3:
				p.State = []model.State{model.StateUp, model.StateDown}[r.IntN(2)]
			}
			if r.IntN(3) == 0 {
				p.Sources, p.EgressChainIDs, p.IngressChainIDs, p.Stateful, p.MemberAddrs, p.IPAddrGroupIDs = nil, nil, nil, false, nil, nil
				m.secure(&p)
			}
			put(&p)
		}
	case 4, 5: // delete a VM port and its memberships
		if o, ok := m.pick(model.PortKind, isVMPort); ok {
			for _, mid := range m.ids(model.PortGroupMemberKind, func(x model.Object) bool { return x.(*model.PortGroupMember).PortID == o.GetMeta().ID }) {
				del(model.PortGroupMemberKind, mid)
			}
			del(model.PortKind, o.GetMeta().ID)
		}
	case 6:
		if o, ok := m.pick(model.PortKind, isVMPort); ok {
			put(&model.PortGroupMember{Meta: meta("pgm" + id), PortGroupID: "pg", PortID: o.GetMeta().ID})
		}
	case 7:
		if o, ok := m.pick(model.PortGroupMemberKind, nil); ok {
			del(model.PortGroupMemberKind, o.GetMeta().ID)
		}
	case 8:
		put(&model.IPAddrGroupAddr{Meta: meta("a" + id), IPAddrGroupID: "ipg", Address: netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + r.IntN(8))})})
	case 9:
		if o, ok := m.pick(model.IPAddrGroupAddrKind, nil); ok {
			del(model.IPAddrGroupAddrKind, o.GetMeta().ID)
		}
	case 10: // DHCP host entries, some claiming a router port's address or each other's
		if o, ok := m.pick(model.DHCPHostKind, nil); ok && r.IntN(2) == 0 {
			del(model.DHCPHostKind, o.GetMeta().ID)
			break
		}
		put(&model.DHCPHost{Meta: meta("dh" + id), DHCPSubnetID: "d0", MAC: packet.MAC{2, 0xdd, 0, 0, 0, byte(m.next)},
			Address: netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + r.IntN(12))})})
	case 11: // hosts registering, joining and leaving tunnel zones (dying and coming back)
		switch r.IntN(6) {
		case 0: // h9 has ports bound to it before it registers
			if _, ok := m.objs[model.HostKind]["h9"]; !ok {
				put(&model.Host{Meta: meta("h9")})
			} else {
				put(&model.Host{Meta: meta("h" + id)})
			}
		case 1, 2: // a membership of a host, in one of two zones, maybe moved
			hid, ok := m.pick(model.HostKind, nil)
			if !ok {
				break
			}
			zm := &model.TunnelZoneMember{Meta: meta("m" + id), TunnelZoneID: []string{"tz", "tz2"}[r.IntN(2)],
				HostID: hid.GetMeta().ID, Address: netip.AddrFrom4([4]byte{10, 99, 1, byte(m.next)})}
			if o, ok := m.pick(model.TunnelZoneMemberKind, nil); ok && r.IntN(2) == 0 {
				zm.ID = o.GetMeta().ID
			}
			put(zm)
		case 3:
			if o, ok := m.pick(model.TunnelZoneMemberKind, nil); ok {
				del(model.TunnelZoneMemberKind, o.GetMeta().ID)
			}
		case 4: // now and then a change Apply leaves to Build
			put(&model.Route{Meta: meta("rt" + id), RouterID: "r0", Dst: pfx(fmt.Sprintf("10.%d.0.0/16", 5+r.IntN(5))), PortID: "rp1"})
		case 5:
			if o, ok := m.pick(model.HostKind, nil); ok { // a changed host record (the agent's addresses)
				h := *o.(*model.Host)
				h.Addresses = []netip.Addr{ip("192.0.2.1")}
				put(&h)
			}
		}
	}
	// A transaction's events come in key order, not creation order.
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func buildAll(t *testing.T, s objSet) (*Topology, error) {
	t.Helper()
	return BuildFrom(s)
}

// TestApplyEqualsBuild drives random changes through Apply and checks each
// result against a full Build of the same model: the same topology by ids,
// the same walks for the same frames.
func TestApplyEqualsBuild(t *testing.T) {
	frames := seedFrames(t)
	var p packet.Parsed
	seeds, steps := 40, 80
	if testing.Short() {
		seeds = 8
	}
	incremental, total := 0, 0
	defer func() {
		// Most random changes are of the kinds Apply handles alone; if
		// they fell back to Build this test would prove nothing.
		if !t.Failed() && incremental < total*2/3 {
			t.Errorf("only %d of %d changes were applied incrementally", incremental, total)
		}
		t.Logf("%d of %d changes applied incrementally", incremental, total)
	}()
	for seed := range uint64(seeds) {
		m := newApplyModel(seed)
		inc, err := buildAll(t, m.objs)
		if err != nil {
			t.Fatalf("seed %d: initial build: %v", seed, err)
		}
		for step := range steps {
			changes := m.step()
			full, ferr := buildAll(t, m.objs)
			var next *Topology
			var aerr error
			if inc == nil {
				next, aerr = BuildFrom(m.objs)
			} else {
				next, aerr = inc.Apply(changes, m.objs)
			}
			if (ferr == nil) != (aerr == nil) {
				t.Fatalf("seed %d step %d: Build says %v, Apply says %v", seed, step, ferr, aerr)
			}
			if ferr != nil {
				// An invalid model (a duplicate tunnel key): both refuse it.
				// The old topology lacks this change, so the next one is
				// built whole, as the agent's mirror does.
				inc = nil
				continue
			}
			if inc != nil && len(next.chains) > 0 && &next.chains[0] == &inc.chains[0] {
				incremental++ // Apply did not fall back to Build
			}
			total++
			if got, want := canon(next), canon(full); got != want {
				t.Fatalf("seed %d step %d: Apply differs from Build after %s\n%s", seed, step, describe(changes), diffLines(got, want))
			}
			// The same frames walk the same way through both.
			macs := newFakeMACs()
			si := NewSimulator(next, Config{HostID: "h1", MACs: macs, ARP: fakeARP{}})
			sf := NewSimulator(full, Config{HostID: "h1", MACs: macs, ARP: fakeARP{}})
			ri, rf := NewResult(), NewResult()
			for _, id := range m.ids(model.PortKind, nil) {
				for fi, fr := range frames {
					if (len(id)+fi+step)%4 != 0 {
						continue
					}
					p.Decode(fr)
					si.Simulate(&Input{InPortID: id, Pkt: &p}, ri)
					p.Decode(fr)
					sf.Simulate(&Input{InPortID: id, Pkt: &p}, rf)
					if a, b := resultString(ri), resultString(rf); a != b {
						t.Fatalf("seed %d step %d: frame %d from %s: Apply's topology %s, Build's %s", seed, step, fi, id, a, b)
					}
				}
			}
			inc = next
		}
	}
}

func resultString(r *Result) string {
	tags := slices.Clone(r.Tags())
	slices.Sort(tags)
	// Action.Port is a topology index, which differs between the two; the
	// port's id is compared.
	acts := slices.Clone(r.Actions())
	for i := range acts {
		acts[i].Port = 0
	}
	return fmt.Sprintf("%v %v %v tags %v", r.Verdict, r.Reason, acts, tags)
}

func describe(cs []Change) string {
	var s []string
	for _, c := range cs {
		switch {
		case c.Old == nil:
			s = append(s, fmt.Sprintf("create %+v", c.New))
		case c.New == nil:
			s = append(s, fmt.Sprintf("delete %+v", c.Old))
		default:
			s = append(s, fmt.Sprintf("update %+v → %+v", c.Old, c.New))
		}
	}
	return strings.Join(s, "; ")
}

func diffLines(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var out []string
	for _, l := range g {
		if !slices.Contains(w, l) {
			out = append(out, "+ "+l)
		}
	}
	for _, l := range w {
		if !slices.Contains(g, l) {
			out = append(out, "- "+l)
		}
	}
	return strings.Join(out, "\n")
}

// A change of a kind the simulation does not read keeps the topology, and
// a VM port's creation shares everything but what it touched.
func TestApplyShares(t *testing.T) {
	m := newApplyModel(1)
	topo, err := BuildFrom(m.objs)
	if err != nil {
		t.Fatal(err)
	}
	p := &model.Port{Meta: meta("new"), BridgeID: "b1", State: model.StateUp, HostID: "h2", InterfaceName: "tapnew", TunnelKey: 77}
	m.objs.put(p)
	next, err := topo.Apply([]Change{{New: p}}, m.objs)
	if err != nil {
		t.Fatal(err)
	}
	if next == topo || next.gen == topo.gen {
		t.Fatal("Apply changed the old topology instead of making a new one")
	}
	if _, ok := topo.PortIndex("new"); ok {
		t.Fatal("the old topology has the new port")
	}
	if i, ok := next.PortIndex("new"); !ok || next.PortID(i) != "new" {
		t.Fatal("the new topology lacks the new port")
	}
	if &topo.routers[0] != &next.routers[0] || &topo.chains[0] != &next.chains[0] {
		t.Error("a VM port's creation copied the routers or chains")
	}
}

// BenchmarkApplyPortCreate10k is one VM port created in a topology of
// 10,000: what every agent does for every port created anywhere. Compare
// BenchmarkBuild10kPorts, what it did before Apply.
func BenchmarkApplyPortCreate10k(b *testing.B) {
	objs := objSet{}
	for _, o := range bigTopology() {
		objs.put(o)
	}
	topo, err := BuildFrom(objs)
	if err != nil {
		b.Fatal(err)
	}
	bridge := ""
	for id := range objs[model.BridgeKind] {
		bridge = id
		break
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p := &model.Port{Meta: meta(fmt.Sprintf("bench-%d", i)), BridgeID: bridge, State: model.StateUp, TunnelKey: uint32(1<<20 + i)}
		next, err := topo.Apply([]Change{{New: p}}, objs)
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := next.PortIndex(p.ID); !ok {
			b.Fatal("port not applied")
		}
	}
}
