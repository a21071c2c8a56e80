package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
)

func TestNeighborKeyAndValue(t *testing.T) {
	for _, ip := range []string{"10.0.2.12", "fd00:2::12"} {
		n := nsdb.LearnedNeighbor{RouterID: "5e0c2a0e-0000-4000-8000-000000000001", IP: netip.MustParseAddr(ip)}
		got, ok := nsdb.ParseNeighborKey(n.Key())
		if !ok || got != n {
			t.Errorf("ParseNeighborKey(%q) = %+v, %v; want %+v", n.Key(), got, ok, n)
		}
	}
	for _, bad := range []string{"/nagare/v1/state/neighbor/r1", "/nagare/v1/state/neighbor//10.0.0.1",
		"/nagare/v1/state/neighbor/r1/10.0.0.300", "/nagare/v1/state/mac/r1/10.0.0.1"} {
		if _, ok := nsdb.ParseNeighborKey(bad); ok {
			t.Errorf("ParseNeighborKey(%q) accepted", bad)
		}
	}
	mac := packet.MAC{0x02, 0, 0x0a, 0, 2, 0x0c}
	at := time.UnixMilli(1_800_000_000_123)
	m, when, ok := parseNeighborValue(neighborValue(mac, at))
	if !ok || m != mac || !when.Equal(at) {
		t.Errorf("value round trip: %v %v %v", m, when, ok)
	}
	for _, bad := range []string{"", "02:00:0a:00:02:0c", "00:00:00:00:00:00 1", "02:00:0a:00:02:0c x"} {
		if _, _, ok := parseNeighborValue(bad); ok {
			t.Errorf("parseNeighborValue(%q) accepted", bad)
		}
	}
}

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
