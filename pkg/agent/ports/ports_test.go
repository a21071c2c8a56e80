package ports

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

const host = "00000000-0000-4000-8000-0000000000aa"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fixture is Ports over a running memory datapath whose miss handler
// forwards every frame between the two bound ports (by datapath index,
// as the agent's flows do).
type fixture struct {
	t      *testing.T
	host   *memory.Host
	dp     *memory.Datapath
	p      *Ports
	mu     sync.Mutex
	events []*Bindings
}

// newFixture starts the datapath, and Ports' link following if follow.
func newFixture(t *testing.T, follow bool) *fixture { return newAdoptingFixture(t, follow, nil) }

// adoptingDatapath is the memory datapath reporting the ports of a
// predecessor whose flows it adopted, as the kernel datapath does after a
// restart: the memory datapath dies with its agent, so it never has one.
type adoptingDatapath struct {
	*memory.Datapath
	adopted []datapath.AdoptedPort
}

func (d adoptingDatapath) AdoptedPorts() []datapath.AdoptedPort { return d.adopted }

// newAdoptingFixture is newFixture over a datapath that adopted the ports
// adopted (none: one that adopts nothing).
func newAdoptingFixture(t *testing.T, follow bool, adopted []datapath.AdoptedPort) *fixture {
	f := &fixture{t: t, host: memory.NewHost(nil)}
	f.dp = memory.New(datapath.Config{}, f.host)
	var dp Datapath = f.dp
	if adopted != nil {
		dp = adoptingDatapath{f.dp, adopted}
	}
	f.p = New(Config{HostID: host, Datapath: dp, Links: f.dp, UnderlayMTU: 1500, Log: quiet, Resync: time.Hour,
		OnChange: func(b *Bindings) {
			f.mu.Lock()
			f.events = append(f.events, b)
			f.mu.Unlock()
		}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		_ = f.dp.Run(ctx, datapath.MissFunc(func(u *datapath.Upcall) {
			for id, idx := range f.p.Bindings().PortToDP {
				if id == u.PortID {
					continue
				}
				acts := []flow.Action{{Type: flow.ActOutput, Port: idx, PortID: id}}
				if err := f.dp.Install(&datapath.FlowSpec{Key: u.Key, Actions: acts}); err != nil {
					t.Errorf("install: %v", err)
				}
				if err := f.dp.Execute(u.InPort, u.Frame, acts); err != nil {
					t.Errorf("execute: %v", err)
				}
			}
		}))
	}()
	if follow {
		go func() { _ = f.p.Run(ctx) }()
	}
	return f
}

func port(id, iface string, key uint32) *model.Port {
	return &model.Port{Meta: model.Meta{ID: id}, BridgeID: "b", HostID: host, InterfaceName: iface, TunnelKey: key}
}

func (f *fixture) sync(objs ...model.Object) {
	f.t.Helper()
	objs = append(objs, &model.Bridge{Meta: model.Meta{ID: "b"}}, &model.Host{Meta: model.Meta{ID: host}})
	s, err := mirror.NewSnapshot(1, objs...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.p.Sync(s)
}

func (f *fixture) waitAttached(what string, want ...string) {
	f.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var got []string
		for id := range f.p.Bindings().PortToDP {
			got = append(got, id)
		}
		var dp []string
		for _, ps := range f.dp.Stats().Ports {
			dp = append(dp, ps.PortID)
		}
		slices.Sort(got)
		slices.Sort(want)
		if slices.Equal(got, want) && slices.Equal(dp, want) {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: attached %v (datapath %v), want %v", what, got, dp, want)
		}
	}
}

func frame(sport uint16) []byte {
	var b [64]byte
	copy(b[:], []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x06}) // ARP-typed: decodes without IP
	b[14+1], b[14+2], b[14+4], b[14+5], b[14+7] = 1, 8, 6, 4, 1
	b[20], b[21] = byte(sport>>8), byte(sport)
	return b[:42]
}

// A binding whose tap does not exist yet waits; the tap appearing
// attaches it, its deletion detaches it and removes its flows, its return
// attaches it again at the same datapath index, and traffic flows again.
func TestTapAppearsGoesAndReturns(t *testing.T) {
	f := newFixture(t, true)
	vm2, err := f.host.AddInterface("vm2")
	if err != nil {
		t.Fatal(err)
	}
	const tap = "tap0123abcd-ef"
	f.sync(port("p-tap", tap, 11), port("p-vm2", "vm2", 12))
	f.waitAttached("before the tap exists", "p-vm2")

	first, err := f.host.AddInterface(tap)
	if err != nil {
		t.Fatal(err)
	}
	f.waitAttached("the tap appeared", "p-tap", "p-vm2")
	idx := f.p.Bindings().PortToDP["p-tap"]
	through := func(what string, from, to *memory.Interface) {
		t.Helper()
		if err := from.Send(frame(7)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if got, err := to.Recv(ctx); err != nil || len(got) != 42 {
			t.Fatalf("%s: %x, %v", what, got, err)
		}
	}
	through("tap to vm2", first, vm2)
	through("vm2 to tap", vm2, first)
	if s := f.dp.Stats(); s.Flows != 2 {
		t.Fatalf("%d flows, want 2", s.Flows)
	}

	if err := f.host.DeleteInterface(tap); err != nil {
		t.Fatal(err)
	}
	f.waitAttached("the tap went", "p-vm2")
	if s := f.dp.Stats(); s.Flows != 0 || s.FlowsRemoved != 2 {
		t.Fatalf("after the tap went: %d flows, %d removed; its flows must go", s.Flows, s.FlowsRemoved)
	}

	again, err := f.host.AddInterface(tap)
	if err != nil {
		t.Fatal(err)
	}
	f.waitAttached("the tap returned", "p-tap", "p-vm2")
	if got := f.p.Bindings().PortToDP["p-tap"]; got != idx {
		t.Fatalf("datapath index %d after the return, want %d (stable while bound)", got, idx)
	}
	through("tap to vm2 after the return", again, vm2)
	through("vm2 to tap after the return", vm2, again)

	// Unbound: detached, though the tap is still there.
	f.sync(port("p-vm2", "vm2", 12))
	f.waitAttached("unbound", "p-vm2")
	f.mu.Lock()
	n := len(f.events)
	f.mu.Unlock()
	if n < 5 {
		t.Fatalf("%d binding changes announced, want one per attach and detach", n)
	}
}

// After a restart over an adopted datapath, each port is attached again
// at the index its adopted flows match on, whatever order the new agent
// binds the ports in (it sorts them by id; its predecessor numbered them
// as they came); an interface now bound to another virtual port (another
// tunnel key) gets a new index, and no new port gets an index an adopted
// port had. Before, ports were numbered afresh: a port renumbered had
// every established flow entering by it miss while the agent was starting,
// and the misses were lost (TestAgentGapKeepsForwarding's flake).
func TestAdoptedPortsKeepTheirIndex(t *testing.T) {
	f := newAdoptingFixture(t, false, []datapath.AdoptedPort{
		{Interface: "tap-b", Index: 0, TunnelKey: 12},
		{Interface: "tap-a", Index: 1, TunnelKey: 11},
		{Interface: "tap-c", Index: 5, TunnelKey: 13},
		{Interface: "tap-gone", Index: 3, TunnelKey: 14}, // not bound any more
	})
	for _, name := range []string{"tap-a", "tap-b", "tap-c", "tap-d", "tap-e", "tap-f"} {
		if _, err := f.host.AddInterface(name); err != nil {
			t.Fatal(err)
		}
	}
	f.p.resync(context.Background())
	f.sync(port("a", "tap-a", 11), port("b", "tap-b", 12), port("c", "tap-c", 23), port("d", "tap-d", 24),
		port("e", "tap-e", 25), port("f", "tap-f", 26))
	f.waitAttached("bound", "a", "b", "c", "d", "e", "f")
	want := map[string]int32{"a": 1, "b": 0, "c": 2, "d": 4, "e": 6, "f": 7}
	if got := f.p.Bindings().PortToDP; !maps.Equal(got, want) {
		t.Errorf("datapath indexes %v, want %v (a and b as adopted; the others none an adopted port had)", got, want)
	}
	for _, ps := range f.dp.Stats().Ports {
		if ps.Index != want[ps.PortID] {
			t.Errorf("port %s attached at index %d, want %d", ps.PortID, ps.Index, want[ps.PortID])
		}
	}
}

// An interface replaced between two looks (its deletion missed) is
// detached and the new one attached; the deletion of an older incarnation
// arriving late changes nothing.
func TestReplacedInterface(t *testing.T) {
	f := newFixture(t, false) // the test plays the link events
	if _, err := f.host.AddInterface("tapx"); err != nil {
		t.Fatal(err)
	}
	f.p.resync(context.Background())
	f.sync(port("p", "tapx", 3))
	f.waitAttached("attached", "p")
	old, _ := f.host.Interface("tapx")
	f.p.linkChanged(datapath.LinkEvent{Link: datapath.Link{Name: "tapx", Index: old.Index() + 100}})
	f.waitAttached("re-attached to the new incarnation", "p")
	f.p.mu.Lock()
	ifindex := f.p.bound["p"].ifindex
	f.p.mu.Unlock()
	if ifindex != old.Index()+100 {
		t.Fatalf("attached to incarnation %d, want %d", ifindex, old.Index()+100)
	}
	f.p.linkChanged(datapath.LinkEvent{Link: datapath.Link{Name: "tapx", Index: old.Index()}, Deleted: true})
	f.waitAttached("a stale deletion", "p")
}

func TestTunnelConfig(t *testing.T) {
	a := netip.MustParseAddr
	objs := []model.Object{
		&model.Host{Meta: model.Meta{ID: host}}, &model.Host{Meta: model.Meta{ID: "h2"}}, &model.Host{Meta: model.Meta{ID: "h3"}},
		&model.Host{Meta: model.Meta{ID: "h4"}},
		&model.TunnelZone{Meta: model.Meta{ID: "vx"}, Type: model.TunnelVXLAN},
		&model.TunnelZone{Meta: model.Meta{ID: "gre"}, Type: model.TunnelGRE},
		&model.TunnelZone{Meta: model.Meta{ID: "other"}, Type: model.TunnelGRE},
		&model.TunnelZoneMember{Meta: model.Meta{ID: "m1"}, TunnelZoneID: "vx", HostID: host, Address: a("10.0.0.1")},
		&model.TunnelZoneMember{Meta: model.Meta{ID: "m2"}, TunnelZoneID: "vx", HostID: "h2", Address: a("10.0.0.3")},
		&model.TunnelZoneMember{Meta: model.Meta{ID: "m3"}, TunnelZoneID: "gre", HostID: host, Address: a("10.0.0.1")},
		&model.TunnelZoneMember{Meta: model.Meta{ID: "m4"}, TunnelZoneID: "gre", HostID: "h3", Address: a("10.0.0.2")},
		&model.TunnelZoneMember{Meta: model.Meta{ID: "m5"}, TunnelZoneID: "other", HostID: "h4", Address: a("10.0.0.9")},
	}
	s, err := mirror.NewSnapshot(1, objs...)
	if err != nil {
		t.Fatal(err)
	}
	cfg := TunnelConfig(s, host, netip.Addr{}, packet.DefaultVXLANPort)
	if cfg.LocalIP != a("10.0.0.1") || !cfg.VXLAN || !cfg.GRE || !slices.Equal(cfg.Peers, []netip.Addr{a("10.0.0.2"), a("10.0.0.3")}) {
		t.Fatalf("tunnels %+v: want local 10.0.0.1, both encapsulations, the two peers of its zones sorted", cfg)
	}
	if cfg := TunnelConfig(s, host, a("192.0.2.1"), 4789); cfg.LocalIP != a("192.0.2.1") {
		t.Fatalf("the configured tunnel IP lost to the member address: %v", cfg.LocalIP)
	}
	if cfg := TunnelConfig(s, "nobody", netip.Addr{}, 4789); cfg.LocalIP.IsValid() || len(cfg.Peers) != 0 {
		t.Fatalf("a host in no zone: %+v", cfg)
	}
	s.Unreachable = map[string]bool{"h3": true} // dead, or revoked
	if cfg := TunnelConfig(s, host, netip.Addr{}, 4789); !slices.Equal(cfg.Peers, []netip.Addr{a("10.0.0.3")}) {
		t.Fatalf("peers %v with h3 unreachable, want h2's only", cfg.Peers)
	}
}

// A bound port's QoS policy limits what it sends: a burst beyond the
// bucket is policed; a changed policy changes the bucket, and without one
// everything passes.
func TestPortQoS(t *testing.T) {
	f := newFixture(t, true)
	a, err := f.host.AddInterface("qa")
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.host.AddInterface("qb")
	if err != nil {
		t.Fatal(err)
	}
	limited := port("p-a", "qa", 21)
	limited.QoSPolicyID = "slow"
	// 16 kbit: a 2000-byte bucket, 47 frames of 42 bytes.
	slow := &model.QoSPolicy{Meta: model.Meta{ID: "slow"}, EgressMaxKbps: 8, EgressBurstKbit: 16}
	f.sync(limited, port("p-b", "qb", 22), slow)
	f.waitAttached("both", "p-a", "p-b")
	burst := func() int {
		for i := range 100 {
			if err := a.Send(frame(uint16(i))); err != nil {
				t.Fatal(err)
			}
		}
		n := 0
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			_, err := b.Recv(ctx)
			cancel()
			if err != nil {
				return n
			}
			n++
		}
	}
	if n := burst(); n < 40 || n > 55 {
		t.Errorf("%d of 100 frames through a 2000-byte bucket", n)
	}
	if s := f.dp.Stats(); s.Drops[datapath.DropQoSPoliced] == 0 {
		t.Errorf("nothing counted as policed: %v", s.Drops)
	}
	f.sync(port("p-a", "qa", 21), port("p-b", "qb", 22))
	if n := burst(); n != 100 {
		t.Errorf("%d of 100 frames through without a policy", n)
	}
}
