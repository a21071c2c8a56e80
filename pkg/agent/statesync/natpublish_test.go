package statesync

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

func natKey(zone uint64, src string, sport uint16, dst string, dport uint16, proto uint8) flowstate.Key {
	return flowstate.Key{Src: netip.MustParseAddr(src).As16(), Dst: netip.MustParseAddr(dst).As16(), Zone: zone,
		SrcPort: sport, DstPort: dport, Proto: proto, Family: 4}
}

// The published records are the table's NAT bindings in Cisco's columns,
// named by router; connections are not published; an unchanged table is
// not written again; the key goes with the host's lease.
func TestNATPublisher(t *testing.T) {
	s := nsdb.New(nsdbtest.Start(t))
	ctx := context.Background()
	if err := s.Init(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := s.Create(ctx, &model.Router{Name: "router0"})
	if err != nil {
		t.Fatal(err)
	}
	rid := r.GetMeta().ID
	zone := sim.ObjectTag(model.RouterKind, rid)
	host := "6b1d2c3e-0000-4000-8000-00000000000a"
	lease, err := s.GrantLease(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	now := clock.UnixNano()
	// SYN-sent bindings live 5 minutes here: the test publishes at times
	// up to a minute ahead.
	tbl := flowstate.New(flowstate.Config{Timeouts: flowstate.Timeouts{TCPSynSent: 5 * time.Minute}})

	var tx flowstate.Tx
	snat := natKey(zone, "172.16.20.100", 40000, "192.0.2.80", 80, packet.IPProtoTCP)
	snat.Type = flowstate.KeyFwdSNAT
	se, err := tbl.AllocSNAT(&tx, rid, &snat, []flowstate.Target{{From: netip.MustParseAddr("10.81.14.201")}}, packet.TCPSyn, now)
	if err != nil {
		t.Fatal(err)
	}
	dnat := natKey(zone, "192.0.2.9", 5555, "10.81.14.201", 80, packet.IPProtoTCP)
	tx.Add(flowstate.NewDNAT(dnat, netip.MustParseAddr("172.16.20.100"), 8080, packet.TCPSyn))
	conn := natKey(1234, "172.16.20.100", 1, "172.16.20.101", 2, packet.IPProtoUDP)
	tx.Add(flowstate.NewConn(conn, conn.Reverse(), 0))
	if err := tbl.Commit(&tx, now); err != nil {
		t.Fatal(err)
	}

	db := &countingNSDB{NSDB: s}
	p := &natPublisher{db: db, host: host, tbl: tbl, lease: func() nsdb.LeaseID { return lease }, routers: map[uint64]string{}}
	if err := p.publish(ctx, clock); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListNATTranslations(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("ListNATTranslations: %v, %v", all, err)
	}
	_, sport := se.Translated()
	z := fmt.Sprintf("%016x", zone)
	want := []agentstatus.NATTranslation{
		{Zone: z, RouterID: rid, Type: "dnat", Protocol: "tcp", InsideGlobal: "10.81.14.201:80", InsideLocal: "172.16.20.100:8080",
			OutsideLocal: "192.0.2.9:5555", OutsideGlobal: "192.0.2.9:5555", State: "new", HostID: host},
		{Zone: z, RouterID: rid, Type: "snat", Protocol: "tcp", InsideGlobal: fmt.Sprintf("10.81.14.201:%d", sport),
			InsideLocal: "172.16.20.100:40000", OutsideLocal: "192.0.2.80:80", OutsideGlobal: "192.0.2.80:80", State: "new", HostID: host},
	}
	got := all[0].Translations
	if len(got) != len(want) {
		t.Fatalf("published %+v, want %+v", got, want)
	}
	for i := range want {
		exp := got[i].Expires
		got[i].Expires = time.Time{}
		if got[i] != want[i] {
			t.Errorf("record %d: %+v, want %+v", i, got[i], want[i])
		}
		if exp.Before(clock.Add(5*time.Minute-time.Second)) || exp.After(clock.Add(5*time.Minute)) {
			t.Errorf("record %d expires %v, want 5 minutes after %v", i, exp, clock)
		}
	}
	if all[0].HostID != host || all[0].Truncated != 0 {
		t.Errorf("host %q truncated %d", all[0].HostID, all[0].Truncated)
	}

	// Unchanged: nothing written.
	before := db.puts
	if err := p.publish(ctx, clock.Add(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if db.puts != before {
		t.Errorf("an unchanged table was published again")
	}

	// After the agent registered again under a new lease (the old one
	// was lost with its record), the publisher writes under that one.
	lease2, err := s.GrantLease(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeLease(ctx, lease); err != nil {
		t.Fatal(err)
	}
	lease = lease2
	if err := p.publish(ctx, clock.Add(natRepublishEvery)); err != nil {
		t.Fatalf("publish after a new lease: %v", err)
	}
	if all, _ := s.ListNATTranslations(ctx); len(all) != 1 || len(all[0].Translations) != 2 {
		t.Fatalf("an unchanged table after a new lease: %+v", all)
	}
	dnat.Type = flowstate.KeyFwdDNAT
	if _, ok := tbl.Remove(&dnat, now); !ok {
		t.Fatal("the DNAT binding is not in the table")
	}
	if err := p.publish(ctx, clock.Add(natRepublishEvery+time.Second)); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.ListNATTranslations(ctx); len(all) != 1 || len(all[0].Translations) != 1 || all[0].Translations[0].Type != "snat" {
		t.Fatalf("after the DNAT binding ended: %+v", all)
	}

	// The running publisher writes under the lease; revoking it removes
	// the record.
	sy := New(Config{HostID: host, DB: s, Lease: func() nsdb.LeaseID { return lease }, Blocks: flowstate.NewMemBlocks()})
	sy.table = tbl
	ctx2, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sy.publishNAT(ctx2) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("publishNAT ended with %v", err)
	}
	if err := s.RevokeLease(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.ListNATTranslations(ctx); len(all) != 0 {
		t.Fatalf("after the lease ended: %+v", all)
	}
	// A host id that is not a UUID is refused.
	if err := s.PutNATTranslations(ctx, "../x", lease2, &agentstatus.NATTranslations{}); err == nil {
		t.Error("PutNATTranslations accepted a bad host id")
	}
}

// countingNSDB counts the publisher's writes.
type countingNSDB struct {
	NSDB
	puts int
}

func (c *countingNSDB) PutNATTranslations(ctx context.Context, host string, lease nsdb.LeaseID, t *agentstatus.NATTranslations) error {
	c.puts++
	return c.NSDB.PutNATTranslations(ctx, host, lease, t)
}

// An ICMP echo's identifier is its port: translated on the inside global
// and, since the peer sees the translated one, on the outside global.
func TestNATRecordEcho(t *testing.T) {
	tbl := flowstate.New(flowstate.Config{})
	k := natKey(7, "10.10.0.10", 19995, "203.0.113.1", 19995, packet.IPProtoICMPv4)
	k.Type, k.Echo = flowstate.KeyFwdSNAT, flowstate.EchoRequest
	var tx flowstate.Tx
	e, err := tbl.AllocSNAT(&tx, "r", &k, []flowstate.Target{{From: netip.MustParseAddr("192.168.1.2")}}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, id := e.Translated()
	r := natRecord(&e, time.Second, time.Now())
	if r.Protocol != "icmp" || r.InsideLocal != "10.10.0.10:19995" || r.InsideGlobal != fmt.Sprintf("192.168.1.2:%d", id) ||
		r.OutsideLocal != "203.0.113.1:19995" || r.OutsideGlobal != fmt.Sprintf("203.0.113.1:%d", id) {
		t.Fatalf("%+v", r)
	}
}

// Only MaxNATTranslations records are published; the rest are counted.
func TestNATSnapshotTruncates(t *testing.T) {
	tbl := flowstate.New(flowstate.Config{})
	now := time.Now()
	for i := range nsdb.MaxNATTranslations + 10 {
		var tx flowstate.Tx
		k := natKey(7, "192.0.2.9", uint16(1000+i), "10.81.14.201", 80, packet.IPProtoTCP)
		tx.Add(flowstate.NewDNAT(k, netip.MustParseAddr("172.16.20.100"), 80, packet.TCPSyn))
		if err := tbl.Commit(&tx, now.UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	recs, truncated := natSnapshot(tbl, now)
	if len(recs) != nsdb.MaxNATTranslations || truncated != 10 {
		t.Fatalf("%d records, %d truncated", len(recs), truncated)
	}
}
