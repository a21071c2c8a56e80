package agent

import (
	"net/netip"
	"testing"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// TestStatefulFlowsInstalled: a new connection's first packet installs
// its flow although its own state push invalidates (the connection's
// tags) between its simulation and its install. Refusing every install
// that any invalidation overtook installed none: at a connection a packet
// (an SNAT of new 5-tuples) every packet missed.
func TestStatefulFlowsInstalled(t *testing.T) {
	db := testNSDB(t)
	a := startAgent(t, db, nil, "hv1", netip.Addr{})
	post := create(t, db, &model.Chain{Name: "post"})
	ra, rb := twoSubnets(t, db, a.id, &model.Router{Name: "r", OutboundFilterID: post.ID})
	create(t, db, &model.Rule{ChainID: post.ID, Type: model.RuleSNAT, Condition: model.Condition{OutPortIDs: []string{rb.ID}},
		Targets: []model.NATTarget{{AddrFrom: ip("10.0.2.1"), AddrTo: ip("10.0.2.1"), Ports: model.PortRange{Start: 1024, End: 65535}}}})
	vm1, vm2 := a.addVMs(t)

	mac1, mac2 := packet.MAC{2, 0, 0, 0, 1, 1}, packet.MAC{2, 0, 0, 0, 2, 2}
	udp := func(sport uint16) []byte {
		return probe(t, packet.Probe{EthSrc: mac1, EthDst: ra.MAC, Src: ip("10.0.1.11"), Dst: ip("10.0.2.12"), Proto: packet.IPProtoUDP, SrcPort: sport, DstPort: 9})
	}
	// A first datagram waits for the router's ARP request, which vm2
	// answers.
	if err := vm1.Send(udp(999)); err != nil {
		t.Fatal(err)
	}
	var p packet.Parsed
	p.Decode(recv(t, vm2, "the router's ARP request"))
	if p.L3 != packet.L3ARP || p.ARPOp != 1 {
		t.Fatalf("not the router's ARP request: %+v", p)
	}
	answerARP(t, vm2, &p, mac2)
	recv(t, vm2, "the parked datagram")
	before := a.dp.Stats()
	// 63 and the first: one block of SNAT ports, which the agent leased
	// at the first. The next blocks are leased ahead in the background;
	// a burst that outruns that lease loses its first packets
	// (nat-exhausted), as it would against a full table.
	const conns = 63
	for i := range uint16(conns) {
		if err := vm1.Send(udp(2000 + i)); err != nil {
			t.Fatal(err)
		}
		f := recv(t, vm2, "an SNATed datagram")
		p.Decode(f)

		if p.SrcIP != ip("10.0.2.1") {
			t.Fatalf("datagram %d left from %s, want the router's 10.0.2.1", i, p.SrcIP)
		}
	}
	after := a.dp.Stats()
	stale := metricValue(t, a, "nagare_agent_flows_not_installed_stale_total")
	if got := after.Flows - before.Flows; got < conns {
		t.Fatalf("%d new connections installed %d flows (%v refused as stale), want one each", conns, got, stale)
	}
	// Each one's second packet hits.
	for i := range uint16(conns) {
		if err := vm1.Send(udp(2000 + i)); err != nil {
			t.Fatal(err)
		}
		recv(t, vm2, "a second datagram")
	}
	if s := a.dp.Stats(); s.Misses != after.Misses {
		t.Fatalf("second packets missed %d times, want none", s.Misses-after.Misses)
	}
}

// metricValue is the value of the agent's counter or gauge name.
func metricValue(t *testing.T, a *inProcess, name string) float64 {
	t.Helper()
	mfs, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
