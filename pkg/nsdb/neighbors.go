package nsdb

import (
	"fmt"
	"net/netip"
	"strings"
)

// NeighborPrefix holds the routers' replicated ARP and ND tables: one key
// per (router, IP) a router port resolved, whose value is the MAC, written
// by the host that saw the answer under that host's liveness lease.
//
// The answer to a router's ARP request or neighbor solicitation enters the
// overlay at the host of the VM that answers, which is usually not the host
// whose simulation asked: without replication the asking host never learns
// the next hop (MidoNet kept the same table in ZooKeeper).
const NeighborPrefix = "/nagare/v1/state/neighbor/"

// LearnedNeighbor is one entry of a router's replicated ARP/ND table.
type LearnedNeighbor struct {
	RouterID string
	IP       netip.Addr
}

// Key is the entry's etcd key.
func (n LearnedNeighbor) Key() string {
	return fmt.Sprintf("%s%s/%s", NeighborPrefix, n.RouterID, n.IP)
}

// ParseNeighborKey parses an entry's key; the MAC is the key's value.
func ParseNeighborKey(key string) (LearnedNeighbor, bool) {
	rest, ok := strings.CutPrefix(key, NeighborPrefix)
	router, ip, ok2 := strings.Cut(rest, "/")
	addr, err := netip.ParseAddr(ip)
	if !ok || !ok2 || router == "" || err != nil {
		return LearnedNeighbor{}, false
	}
	return LearnedNeighbor{RouterID: router, IP: addr}, true
}
