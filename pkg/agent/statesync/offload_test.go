//go:build linux

package statesync

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/ebpf"
	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbmem"
	"github.com/nagare/nagare/pkg/packet"
)

// TestOffloadToKernel runs the table's side of connection offload against
// the kernel datapath (privileged): entries a walk read and entries a
// peer pushed land in the kernel's map; what the kernel saw comes back
// into the table; entries the table dropped leave the kernel; a new
// agent reads the kernel's entries back into an empty table.
func TestOffloadToKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "so")
	dp, err := ebpf.New(datapath.Config{Netns: ns.Path}, ebpf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	newSync := func() *Sync {
		return New(Config{HostID: "h", Blocks: flowstate.NewMemBlocks(), Datapath: dp, Offload: dp, DB: nsdbmem.New(),
			Lease: func() nsdb.LeaseID { return 0 }, Log: slog.New(slog.DiscardHandler)})
	}
	s := newSync()
	kernel := func() map[flowstate.Key]datapath.ConnEntry {
		m := map[flowstate.Key]datapath.ConnEntry{}
		if err := dp.SyncConns(func(c *datapath.ConnEntry) bool { m[c.Fwd] = *c; return true }); err != nil {
			t.Fatal(err)
		}
		return m
	}

	// A walk committed a connection and read it: Offload puts it.
	fwd := tcpKey(7, "10.0.0.5", 1000, "192.0.2.9", 80)
	fwd.Type = flowstate.KeyConn
	rev := fwd.Reverse()
	rev.Zone = 9
	var tx flowstate.Tx
	tx.Add(flowstate.NewConn(fwd, rev, packet.TCPSyn))
	now := time.Now().UnixNano()
	if err := s.table.Commit(&tx, now); err != nil {
		t.Fatal(err)
	}
	s.Offload([]flowstate.Key{fwd, fwd, tcpKey(7, "10.0.0.5", 1001, "192.0.2.9", 80)}) // a duplicate, a key with no entry
	k := kernel()
	if c, ok := k[fwd]; len(k) != 1 || !ok || c.Rev != rev || c.State.Phase() != flowstate.PhaseNew {
		t.Fatalf("kernel after Offload: %v", k)
	}

	// The kernel saw the connection established and closing later on: a
	// put of the kernel's view stands in for its packets.
	seen := k[fwd]
	tcp := uint8(packet.IPProtoTCP)
	seen.State = seen.State.Advance(tcp, packet.TCPSyn|packet.TCPAck, true).Advance(tcp, packet.TCPFin|packet.TCPAck, false)
	seen.LastUsed = now + int64(5*time.Second)
	seen.Expires = seen.LastUsed + int64(time.Minute)
	if err := dp.PutConns([]datapath.ConnEntry{seen}); err != nil {
		t.Fatal(err)
	}
	s.syncConns()
	e, exp, ok := s.table.Lifetime(&fwd, now)
	if !ok || e.State.Phase() != flowstate.PhaseFinWait || !e.State.Replied() {
		t.Fatalf("table after the sync: %v %s replied %v", ok, e.State.Phase(), e.State.Replied())
	}
	// The kernel's clock is converted both ways: allow for rounding.
	if want := seen.LastUsed + int64(flowstate.DefaultTimeouts().TCPFinWait); exp < want-int64(time.Millisecond) || exp > want+int64(time.Millisecond) {
		t.Errorf("table entry expires at %d, want the kernel's last use + fin-wait (%d)", exp, want)
	}

	// A peer's push lands in the kernel.
	pfwd := tcpKey(8, "10.0.1.5", 2000, "192.0.2.10", 443)
	prev := pfwd.Reverse()
	prev.Zone = 10
	pkt, err := flowstate.AppendStatePacket(nil, []flowstate.Entry{flowstate.NewConn(pfwd, prev, packet.TCPSyn)})
	if err != nil {
		t.Fatal(err)
	}
	s.State(netip.MustParseAddr("10.99.0.2"), pkt)
	pfwd.Type = flowstate.KeyConn
	if _, ok := kernel()[pfwd]; !ok {
		t.Fatal("a peer's entry is not in the kernel")
	}

	// The table drops the first: the next sync drops it from the kernel.
	if _, ok := s.table.Remove(&fwd, now); !ok {
		t.Fatal("Remove")
	}
	s.syncConns()
	if k := kernel(); len(k) != 1 || k[pfwd].Fwd != pfwd {
		t.Fatalf("kernel after the table dropped an entry: %v", k)
	}
	if st := dp.ConntrackStats(); st.Entries != 1 || st.BytesPerEntry == 0 {
		t.Errorf("conntrack stats %+v: want one entry and its size", st)
	}

	// A new agent (an empty table) reads the kernel's entry back.
	s2 := newSync()
	s2.Load()
	if _, _, ok := s2.table.Lifetime(&pfwd, time.Now().UnixNano()); !ok {
		t.Fatal("a new agent did not read the kernel's entry back")
	}
	if st := s2.Status(); st.Offloaded != 1 || st.OffloadBytes == 0 || st.Entries != 1 {
		t.Errorf("status %+v: want the entry offloaded and counted", st)
	}
}
