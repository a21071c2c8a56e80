package learned

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbmem"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestARPLearn checks what a replicated entry does to the local table: a
// new or changed MAC reports a change (flows to invalidate), a refresh
// does not, and an answer older than the entry's (a late replicated copy)
// is ignored.
func TestARPLearn(t *testing.T) {
	tab := newARPTable()
	ip := netip.MustParseAddr("10.0.2.12")
	m1, m2 := packet.MAC{2, 0, 0, 0, 0, 1}, packet.MAC{2, 0, 0, 0, 0, 2}
	now := time.Now()
	if !tab.learn("r", ip, m1, now) {
		t.Error("new entry: no change reported")
	}
	if tab.learn("r", ip, m1, now.Add(time.Second)) {
		t.Error("refresh: change reported")
	}
	if tab.learn("r", ip, m2, now.Add(-time.Hour)) {
		t.Error("older answer: change reported")
	}
	if mac, ok := tab.Lookup("r", ip); !ok || mac != m1 {
		t.Errorf("after an older answer: %v %v, want %v (the newest answer wins)", mac, ok, m1)
	}
	if !tab.learn("r", ip, m2, now.Add(2*time.Second)) {
		t.Error("moved address: no change reported")
	}
	if mac, _ := tab.Lookup("r", ip); mac != m2 {
		t.Errorf("moved address: %v", mac)
	}
	if _, ok := tab.Lookup("other", ip); ok {
		t.Error("entries are per router")
	}
}

// agentHost is one host's tables over a memory datapath holding one flow
// per tag the test cares about.
type agentHost struct {
	tables   *Tables
	dp       *memory.Datapath
	lease    nsdb.LeaseID
	mu       sync.Mutex
	resolved []netip.Addr
}

func newAgentHost(t *testing.T, db *nsdbmem.Store, name string) *agentHost {
	t.Helper()
	h := memory.NewHost(nil)
	if _, err := h.AddInterface("p0"); err != nil {
		t.Fatal(err)
	}
	a := &agentHost{dp: memory.New(datapath.Config{}, h)}
	if err := a.dp.AddPort(datapath.PortConfig{PortID: "p0", Index: 0, Interface: "p0", TunnelKey: 1}); err != nil {
		t.Fatal(err)
	}
	var err error
	if a.lease, err = db.GrantLease(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	a.tables = New(Config{HostID: name, DB: db, Lease: func() nsdb.LeaseID { return a.lease }, Flows: a.dp, Log: quiet,
		Resolved: func(_ string, ip netip.Addr) {
			a.mu.Lock()
			a.resolved = append(a.resolved, ip)
			a.mu.Unlock()
		}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = a.tables.Run(ctx) }()
	return a
}

// flowTagged installs a flow (told apart by sport) carrying tag.
func (a *agentHost) flowTagged(t *testing.T, sport uint16, tag uint64) {
	t.Helper()
	var p packet.Parsed // a key told apart by its source MAC
	p.L3Off, p.EthSrc = 14, packet.MAC{2, 0, 0, 0, byte(sport >> 8), byte(sport)}
	if err := a.dp.Install(&datapath.FlowSpec{Key: flow.KeyOf(&p, 0), Tags: []uint64{tag}}); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
}

// A MAC learned on one host reaches the other, whose flows that flooded
// for it are invalidated; when the learner's lease ends the entry goes.
// A neighbor learned on one host is resolved on the other: its parked
// packets are released and the flows that used the entry invalidated.
func TestReplication(t *testing.T) {
	db := nsdbmem.New()
	a, b := newAgentHost(t, db, "a"), newAgentHost(t, db, "b")
	mac := packet.MAC{2, 0, 0, 0, 0, 0x42}
	b.flowTagged(t, 1, sim.MACEntryTag("br", 0, mac))
	b.flowTagged(t, 2, sim.ARPEntryTag("r1", netip.MustParseAddr("10.0.0.9")))
	b.flowTagged(t, 3, 999) // read neither entry
	if n := b.dp.Stats().Flows; n != 3 {
		t.Fatalf("%d flows installed, want 3", n)
	}

	a.tables.MACs().Learn("br", 0, mac, "port-a", 0)
	waitFor(t, "the MAC replicated", func() bool { p, ok := b.tables.MACs().Lookup("br", 0, mac); return ok && p == "port-a" })
	waitFor(t, "b's flood flow for the MAC invalidated", func() bool { return b.dp.Stats().Flows == 2 })

	ip := netip.MustParseAddr("10.0.0.9")
	a.tables.LearnNeighbor(sim.Neighbor{RouterID: "r1", IP: ip, MAC: mac}, time.Now())
	if m, ok := a.tables.ARP().Lookup("r1", ip); !ok || m != mac {
		t.Fatal("the learner's own table does not have the neighbor at once")
	}
	waitFor(t, "the neighbor replicated", func() bool { m, ok := b.tables.ARP().Lookup("r1", ip); return ok && m == mac })
	waitFor(t, "b's flow through the neighbor invalidated", func() bool { return b.dp.Stats().Flows == 1 })
	waitFor(t, "b's parked packets released", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.resolved) > 0 && b.resolved[0] == ip
	})

	if err := db.RevokeLease(context.Background(), a.lease); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the dead learner's MAC forgotten", func() bool { _, ok := b.tables.MACs().Lookup("br", 0, mac); return !ok })
	if _, ok := b.tables.ARP().Lookup("r1", ip); !ok {
		t.Error("a neighbor entry must live its own lifetime after its learner's lease ends")
	}
	if a.tables.Dropped() != 0 {
		t.Errorf("%d entries not published", a.tables.Dropped())
	}
}
