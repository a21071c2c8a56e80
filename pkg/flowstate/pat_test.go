package flowstate

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/nagare/nagare/pkg/packet"
)

type wirePort struct {
	ip    netip.Addr
	proto uint8
	port  uint16
}

func snatOne(t *testing.T, tb *Table, k Key, targets []Target, now int64) (Entry, error) {
	t.Helper()
	k.Zone, k.Type = zoneR, KeyFwdSNAT
	var tx Tx
	e, err := tb.AllocSNAT(&tx, "router-1", &k, targets, packet.TCPSyn, now)
	if err != nil {
		return e, err
	}
	return e, tb.Commit(&tx, now)
}

// The allocator never hands out an (address, protocol, port) that a live
// binding holds, and hands it out again once the binding is gone.
func TestPATNeverReusesAPortInUse(t *testing.T) {
	tb := New(Config{})
	targets := []Target{{From: netip.MustParseAddr("203.0.113.1"), To: netip.MustParseAddr("203.0.113.2"), PortFrom: 2000, PortTo: 2999}}
	inUse := map[wirePort]Key{}
	for i := range 1500 {
		k := tcp(0, "10.0.0.5", uint16(10000+i), "192.0.2.9", 80)
		if i%3 == 1 {
			k.Proto = packet.IPProtoUDP // its own port space
		}
		e, err := snatOne(t, tb, k, targets, 0)
		if err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		ip, port := e.Translated()
		if port < 2000 || port > 2999 || ip.Compare(targets[0].From) < 0 || ip.Compare(targets[0].To) > 0 {
			t.Fatalf("conn %d translated to %s:%d, outside the target", i, ip, port)
		}
		w := wirePort{ip, k.Proto, port}
		if old, dup := inUse[w]; dup {
			t.Fatalf("conn %d got %v, which %v holds", i, w, old)
		}
		inUse[w] = e.Fwd
		if o, p := e.Original(); o != k.SrcAddr() || p != k.SrcPort {
			t.Fatalf("original %s:%d, want %s:%d", o, p, k.SrcAddr(), k.SrcPort)
		}
	}
	s := tb.Stats()
	if s.PortsInUse != 1500 || s.BlocksLeased == 0 {
		t.Fatalf("stats %+v", s)
	}
	// Every binding times out (SYN sent, 30 s); their ports come back.
	later := int64(DefaultTimeouts().TCPSynSent) + 1
	tb.Sweep(later, 0, nil)
	if s := tb.Stats(); s.PortsInUse != 0 || s.Entries != 0 {
		t.Fatalf("after expiry: %+v", s)
	}
	// 2 addresses x 1000 ports x 2 spaces: 4000 fit, the next is refused.
	n := 0
	for i := range 5000 {
		k := tcp(0, "10.0.0.6", uint16(i), "192.0.2.9", 80)
		if i%2 == 1 {
			k.Proto = packet.IPProtoUDP
		}
		if _, err := snatOne(t, tb, k, targets, later); err != nil {
			if !errors.Is(err, ErrNoPorts) {
				t.Fatal(err)
			}
			continue
		}
		n++
	}
	if n != 4000 || tb.Stats().PortsExhausted != 1000 {
		t.Fatalf("%d bindings, %d exhausted; want 4000 and 1000", n, tb.Stats().PortsExhausted)
	}
	if err := tb.check(); err != nil {
		t.Fatal(err)
	}
}

// Two hosts sharing one lease store never hand out the same port.
func TestPATHostsLeaseDisjointBlocks(t *testing.T) {
	blocks := NewMemBlocks()
	h1, h2 := New(Config{Blocks: blocks}), New(Config{Blocks: blocks})
	targets := []Target{{From: netip.MustParseAddr("203.0.113.1"), PortFrom: 1024, PortTo: 65535}}
	seen := map[uint16]int{}
	for i := range 3000 {
		for h, tb := range []*Table{h1, h2} {
			e, err := snatOne(t, tb, tcp(0, "10.0.0.5", uint16(i), "192.0.2.9", 80), targets, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, port := e.Translated()
			if other, dup := seen[port]; dup {
				t.Fatalf("port %d handed out by host %d and host %d", port, other, h)
			}
			seen[port] = h
		}
	}
	n := h1.Stats().BlocksLeased + h2.Stats().BlocksLeased
	if got := blocks.Leased("router-1", targets[0].From); got != n || n < 2*3000/BlockSize {
		t.Fatalf("%d blocks leased in the store, %d held by the hosts", got, n)
	}
}

func TestPATAbortAndIdleBlocks(t *testing.T) {
	blocks := NewMemBlocks()
	tb := New(Config{Blocks: blocks})
	ip := netip.MustParseAddr("203.0.113.1")
	targets := []Target{{From: ip}}
	k := tcp(zoneR, "10.0.0.5", 1, "192.0.2.9", 80)
	k.Type = KeyFwdSNAT
	var tx Tx
	if _, err := tb.AllocSNAT(&tx, "router-1", &k, targets, packet.TCPSyn, 0); err != nil {
		t.Fatal(err)
	}
	if s := tb.Stats(); s.PortsInUse != 1 {
		t.Fatalf("reserved: %+v", s)
	}
	tb.Abort(&tx, 0)
	if s := tb.Stats(); s.PortsInUse != 0 || s.Entries != 0 || s.BlocksLeased != 1 {
		t.Fatalf("after abort: %+v", s)
	}
	// The idle block is kept for the grace period, then returned.
	tb.Sweep(int64(DefaultBlockIdle)-1, 0, nil)
	if blocks.Leased("router-1", ip) != 1 {
		t.Fatal("block returned before its grace period")
	}
	tb.Sweep(int64(DefaultBlockIdle)+1, 0, nil)
	if blocks.Leased("router-1", ip) != 0 || tb.Stats().BlocksLeased != 0 {
		t.Fatal("idle block kept")
	}
}

func TestPATEchoAndUntranslatable(t *testing.T) {
	tb := New(Config{})
	targets := []Target{{From: netip.MustParseAddr("203.0.113.1")}}
	echo := key(0, packet.IPProtoICMPv4, "10.0.0.5", 77, "192.0.2.9", 77)
	echo.Echo = EchoRequest
	e, err := snatOne(t, tb, echo, targets, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, id := e.Translated()
	if e.Rev.SrcPort != id || e.Rev.DstPort != id || e.Rev.Echo != EchoReply {
		t.Fatalf("echo binding reverse key %v: the identifier must be both ports of a reply", e.Rev)
	}
	gre := key(0, packet.IPProtoGRE, "10.0.0.5", 0, "192.0.2.9", 0)
	if _, err := snatOne(t, tb, gre, targets, 0); !errors.Is(err, ErrNotTranslatable) {
		t.Fatalf("gre: %v", err)
	}
	v6 := tcp(0, "2001:db8::5", 1, "2001:db8:1::9", 80)
	if _, err := snatOne(t, tb, v6, targets, 0); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("IPv6 connection with only IPv4 targets: %v", err)
	}
}

func TestRangeMask(t *testing.T) {
	cases := []struct {
		num    uint16
		lo, hi uint16
		want   uint64
	}{
		{0, 0, 65535, ^uint64(0)},
		{0, 1, 65535, ^uint64(1)},
		{1, 64, 127, ^uint64(0)},
		{1, 70, 71, 3 << 6},
		{15, 1024, 65535, 0},
		{16, 1024, 65535, ^uint64(0)},
		{1023, 65535, 65535, 1 << 63},
	}
	for _, c := range cases {
		if got := rangeMask(c.num, c.lo, c.hi); got != c.want {
			t.Errorf("rangeMask(%d, %d, %d) = %x, want %x", c.num, c.lo, c.hi, got, c.want)
		}
	}
	if a := addAddr(netip.MustParseAddr("10.0.0.255"), 2); a != netip.MustParseAddr("10.0.1.1") {
		t.Errorf("addAddr carried to %s", a)
	}
}
