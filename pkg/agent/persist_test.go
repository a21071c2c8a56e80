package agent

import (
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

func testAgent(dir, host string) *Agent {
	a := &Agent{cfg: Config{StateDir: dir}, log: slog.New(slog.DiscardHandler), hostID: host}
	a.blocks = flowstate.NewMemBlocks()
	a.fs = a.newFlowState()
	return a
}

func tcpKey(zone uint64, src string, sp uint16, dst string, dp uint16) flowstate.Key {
	return flowstate.Key{Src: netip.MustParseAddr(src).As16(), Dst: netip.MustParseAddr(dst).As16(), Zone: zone,
		SrcPort: sp, DstPort: dp, Proto: packet.IPProtoTCP, Family: 4}
}

// The table saved by one run is what the next run of the same host
// starts with, minus what expired in between; another host's file and a
// damaged file are not taken whole.
func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	a := testAgent(dir, "host-a")
	now := time.Now()
	var tx flowstate.Tx
	for i := range 100 {
		fwd := tcpKey(7, "10.0.0.5", uint16(10000+i), "192.0.2.9", 80)
		rev := fwd.Reverse()
		rev.Zone = 9
		tx.Reset()
		tx.Add(flowstate.NewConn(fwd, rev, packet.TCPSyn))
		if err := a.fs.Commit(&tx, now.UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.saveState(true); err != nil {
		t.Fatal(err)
	}

	b := testAgent(dir, "host-a")
	n, refused, err := b.restoreState(b.statePath(), now.Add(time.Second))
	if err != nil || n != 100 || refused != 0 || b.fs.Len() != 100 {
		t.Fatalf("restored %d (refused %d, err %v), table %d; want 100", n, refused, err, b.fs.Len())
	}
	k := tcpKey(7, "10.0.0.5", 10042, "192.0.2.9", 80)
	k.Type = flowstate.KeyConn
	if _, ok := b.fs.Get(&k); !ok {
		t.Fatal("a saved connection is missing after the restart")
	}

	// Down longer than the entries' lifetime (SYN sent: 30 s): none comes back.
	c := testAgent(dir, "host-a")
	if n, _, err := c.restoreState(c.statePath(), now.Add(31*time.Second)); err != nil || n != 0 {
		t.Fatalf("after 31 s down: restored %d, err %v; want 0", n, err)
	}

	// Another host's file.
	d := testAgent(dir, "host-b")
	if n, _, err := d.restoreState(d.statePath(), now); err == nil || n != 0 {
		t.Fatalf("another host's file: restored %d, err %v", n, err)
	}

	// A torn file keeps the entries before the damage; garbage keeps none.
	raw, err := os.ReadFile(a.statePath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.statePath(), raw[:len(raw)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	e := testAgent(dir, "host-a")
	if n, _, err := e.restoreState(e.statePath(), now); err == nil || n != 99 {
		t.Fatalf("torn file: restored %d, err %v; want 99 and an error", n, err)
	}
	if err := os.WriteFile(a.statePath(), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := testAgent(dir, "host-a")
	if n, _, err := f.restoreState(f.statePath(), now); err == nil || n != 0 {
		t.Fatalf("garbage file: restored %d, err %v", n, err)
	}
	// A table full of what it restored refuses the rest, and counts it.
	if err := a.saveState(true); err != nil {
		t.Fatal(err)
	}
	small := &Agent{cfg: Config{StateDir: dir, ConntrackMax: 10}, log: slog.New(slog.DiscardHandler), hostID: "host-a"}
	small.fs = small.newFlowState()
	if n, refused, err := small.restoreState(small.statePath(), now); err != nil || n != 10 || refused != 90 || small.fs.Len() != 10 {
		t.Fatalf("bounded restore: %d restored, %d refused, err %v, table %d", n, refused, err, small.fs.Len())
	}
}

// A state packet's entries are imported; a malformed one is counted and
// imports nothing.
func TestReceiveState(t *testing.T) {
	a := testAgent("", "host-a")
	fwd := tcpKey(7, "10.0.0.5", 1000, "192.0.2.9", 80)
	rev := fwd.Reverse()
	rev.Zone = 9
	pkt, err := flowstate.AppendStatePacket(nil, []flowstate.Entry{flowstate.NewConn(fwd, rev, packet.TCPSyn)})
	if err != nil {
		t.Fatal(err)
	}
	if tags := a.importState(netip.MustParseAddr("10.99.0.2"), pkt, nil); len(tags) != 2 {
		t.Fatalf("%d tags to invalidate, want 2", len(tags))
	}
	if a.fs.Len() != 1 || a.state.received.Load() != 1 {
		t.Fatalf("table %d entries, %d received", a.fs.Len(), a.state.received.Load())
	}
	a.importState(netip.MustParseAddr("10.99.0.2"), pkt[:len(pkt)-1], nil)
	a.importState(netip.MustParseAddr("10.99.0.2"), []byte{9}, nil)
	if a.fs.Len() != 1 || a.state.malformed.Load() != 2 {
		t.Fatalf("malformed: table %d entries, %d counted", a.fs.Len(), a.state.malformed.Load())
	}
}

// The state of a connection through a port of a stateful port group goes
// to every other host binding a port of that group (several uplinks on
// several gateways), and to no host for a port of a plain group.
func TestStatefulPeers(t *testing.T) {
	a := testAgent("", "h1")
	objs := []model.Object{
		&model.TunnelZone{Meta: model.Meta{ID: "tz"}, Type: model.TunnelVXLAN},
		&model.TunnelZoneMember{Meta: model.Meta{ID: "m1"}, TunnelZoneID: "tz", HostID: "h1", Address: netip.MustParseAddr("10.99.0.1")},
		&model.TunnelZoneMember{Meta: model.Meta{ID: "m2"}, TunnelZoneID: "tz", HostID: "h2", Address: netip.MustParseAddr("10.99.0.2")},
		&model.TunnelZoneMember{Meta: model.Meta{ID: "m3"}, TunnelZoneID: "tz", HostID: "h3", Address: netip.MustParseAddr("10.99.0.3")},
		&model.TunnelZoneMember{Meta: model.Meta{ID: "m4"}, TunnelZoneID: "other", HostID: "h4", Address: netip.MustParseAddr("10.98.0.4")},
		&model.Port{Meta: model.Meta{ID: "up1"}, HostID: "h1"},
		&model.Port{Meta: model.Meta{ID: "up2"}, HostID: "h2"},
		&model.Port{Meta: model.Meta{ID: "up3"}, HostID: "h3"},
		&model.Port{Meta: model.Meta{ID: "up4"}, HostID: "h4"},
		&model.Port{Meta: model.Meta{ID: "vm"}, HostID: "h3"},
		&model.PortGroup{Meta: model.Meta{ID: "uplinks"}, Stateful: true},
		&model.PortGroup{Meta: model.Meta{ID: "plain"}},
		&model.PortGroupMember{Meta: model.Meta{ID: "g1"}, PortGroupID: "uplinks", PortID: "up1"},
		&model.PortGroupMember{Meta: model.Meta{ID: "g2"}, PortGroupID: "uplinks", PortID: "up2"},
		&model.PortGroupMember{Meta: model.Meta{ID: "g3"}, PortGroupID: "uplinks", PortID: "up3"},
		&model.PortGroupMember{Meta: model.Meta{ID: "g4"}, PortGroupID: "uplinks", PortID: "up4"},
		&model.PortGroupMember{Meta: model.Meta{ID: "g5"}, PortGroupID: "plain", PortID: "vm"},
	}
	a.objs = map[string]model.Object{}
	for _, o := range objs {
		a.objs[objKey(model.KindOf(o), o.GetMeta().ID)] = o
	}
	peers := a.statefulPeers()
	want := []netip.Addr{netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.3")}
	for _, p := range []string{"up1", "up2", "up3", "up4"} {
		if !slices.Equal(peers[p], want) {
			t.Errorf("peers of %s: %v, want %v (other hosts of the group, in a tunnel zone of this host)", p, peers[p], want)
		}
	}
	if len(peers["vm"]) != 0 {
		t.Errorf("a port of a plain group has peers: %v", peers["vm"])
	}
}

// A state file, whatever its bytes, restores only well-formed entries,
// within the table's bounds, and never crashes the agent.
func FuzzRestoreState(f *testing.F) {
	dir := f.TempDir()
	a := testAgent(dir, "host-a")
	fwd := tcpKey(7, "10.0.0.5", 1000, "192.0.2.9", 80)
	rev := fwd.Reverse()
	rev.Zone = 9
	var tx flowstate.Tx
	tx.Add(flowstate.NewConn(fwd, rev, packet.TCPSyn))
	if err := a.fs.Commit(&tx, time.Now().UnixNano()); err != nil {
		f.Fatal(err)
	}
	if err := a.saveState(true); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(a.statePath())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add([]byte(stateMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		b := &Agent{cfg: Config{StateDir: dir, ConntrackMax: 8}, log: a.log, hostID: "host-a"}
		b.fs = b.newFlowState()
		if err := os.WriteFile(b.statePath(), data, 0o600); err != nil {
			t.Fatal(err)
		}
		n, _, _ := b.restoreState(b.statePath(), time.Now())
		// A record repeated refreshes its entry: n may exceed the table.
		if l := b.fs.Len(); l > 8 || l > n {
			t.Fatalf("restored %d, table holds %d (bound 8)", n, l)
		}
	})
}
