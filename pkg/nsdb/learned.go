package nsdb

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// The tables agents learn from traffic and share: bridges' MAC tables
// and routers' ARP/ND tables. Each entry is written by the host that
// learned it, under its own host id (state/mac/<hostID>/…, so etcd's RBAC
// lets a host write its own entries and no other's) and under that host's
// liveness lease, so a dead host's entries vanish with it; every agent
// watches them all (MidoNet kept the same tables in ZooKeeper).

// MACPrefix holds the replicated MAC tables: one key per host and learned
// (bridge, vlan, mac) whose value is the port. A MAC learned on host A
// turns host B's floods into unicast. When two hosts hold an entry for
// the same MAC (it moved) the newest write wins (HostEntries).
const MACPrefix = "/nagare/v1/state/mac/"

// LearnedMAC is one entry of a bridge's replicated MAC table.
type LearnedMAC struct {
	Host     string // the host that learned it
	BridgeID string
	VLAN     uint16
	MAC      packet.MAC
	PortID   string
}

// MACEntry names an entry of a MAC table, whichever host learned it.
type MACEntry struct {
	BridgeID string
	VLAN     uint16
	MAC      packet.MAC
}

// Entry is the table entry m is a value of.
func (m LearnedMAC) Entry() MACEntry { return MACEntry{m.BridgeID, m.VLAN, m.MAC} }

// Key is the entry's etcd key.
func (m LearnedMAC) Key() string {
	return fmt.Sprintf("%s%s/%s/%d/%s", MACPrefix, m.Host, m.BridgeID, m.VLAN, m.MAC)
}

// ParseMACKey parses an entry's key; the port is the key's value.
func ParseMACKey(key string) (LearnedMAC, bool) {
	host, rest, ok := hostScoped(key, MACPrefix)
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 3 || parts[0] == "" {
		return LearnedMAC{}, false
	}
	vlan, err := strconv.ParseUint(parts[1], 10, 16)
	mac, err2 := packet.ParseMAC(parts[2])
	if err != nil || err2 != nil || mac.IsZero() {
		return LearnedMAC{}, false
	}
	return LearnedMAC{Host: host, BridgeID: parts[0], VLAN: uint16(vlan), MAC: mac}, true
}

// LearnedMACs lists every bridge's learned MACs: one per entry, the
// newest host's.
func (s *Store) LearnedMACs(ctx context.Context) ([]LearnedMAC, error) {
	kvs, _, err := s.rangeAll(ctx, MACPrefix, 0, false)
	if err != nil {
		return nil, fmt.Errorf("read learned MACs: %w", err)
	}
	var merged HostEntries[MACEntry, LearnedMAC]
	return learnedMACs(&merged, kvs), nil
}

// learnedMACs merges the stored entries into merged and returns the
// winners.
func learnedMACs(merged *HostEntries[MACEntry, LearnedMAC], kvs []*kv) []LearnedMAC {
	merged.Reset()
	for _, kv := range kvs {
		if m, ok := ParseMACKey(string(kv.Key)); ok {
			m.PortID = string(kv.Value)
			merged.Put(m.Entry(), m.Host, m, kv.ModRevision)
		}
	}
	out := make([]LearnedMAC, 0, len(kvs))
	merged.Each(func(_ MACEntry, m LearnedMAC) { out = append(out, m) })
	return out
}

// PutLearnedMAC publishes m (learned by host m.Host on m.PortID) under
// lease.
func (s *Store) PutLearnedMAC(ctx context.Context, m LearnedMAC, lease LeaseID) error {
	if !validHostID(m.Host) {
		return fmt.Errorf("nsdb: learned MAC %s: host id %q: %w", m.MAC, m.Host, model.ErrNotFound)
	}
	if _, err := s.cli.Put(ctx, m.Key(), m.PortID, withLease(lease)...); err != nil {
		return fmt.Errorf("nsdb: publish learned MAC %s on bridge %s: %w", m.MAC, m.BridgeID, err)
	}
	return nil
}

// validHostID: a host id can name a key prefix (no '/', not empty).
func validHostID(id string) bool {
	return id != "" && !strings.ContainsAny(id, "/ ") && id != "." && id != ".."
}

// LearnedMACBatch is what a MAC-table watcher receives. On Reset, Put is
// the whole table; otherwise Put holds new and moved entries and Deleted
// the entries that went (with the port they named). Each entry is the
// newest any host wrote: when the newest goes, the next newest host's is
// put in its place, and only when no host has it is it deleted.
type LearnedMACBatch struct {
	Reset        bool
	Put, Deleted []LearnedMAC
	Rev          int64
}

// WatchLearnedMACs delivers the replicated MAC tables to fn like Watch
// delivers objects: a Reset first, then changes, until ctx is done or fn
// fails. It keeps every host's entries to merge them (one watch of the
// prefix covers all hosts).
func (s *Store) WatchLearnedMACs(ctx context.Context, fn func(LearnedMACBatch) error) error {
	var merged HostEntries[MACEntry, LearnedMAC]
	return s.follow(ctx, MACPrefix, 0, false,
		func(kvs []*kv, rev int64) error {
			return fn(LearnedMACBatch{Reset: true, Put: learnedMACs(&merged, kvs), Rev: rev})
		},
		func(evs []*clientv3.Event, rev int64) error {
			b := LearnedMACBatch{Rev: rev}
			for _, ev := range evs {
				m, ok := ParseMACKey(string(ev.Kv.Key))
				if !ok {
					continue
				}
				if ev.Type == mvccpb.PUT {
					m.PortID = string(ev.Kv.Value)
					if w, changed := merged.Put(m.Entry(), m.Host, m, ev.Kv.ModRevision); changed {
						b.Put = append(b.Put, w)
					}
					continue
				}
				switch w, present, changed, before := merged.Delete(m.Entry(), m.Host); {
				case !changed:
				case present:
					b.Put = append(b.Put, w)
				default: // which port lost it: a newer entry learned locally must survive
					b.Deleted = append(b.Deleted, before)
				}
			}
			if len(b.Put)+len(b.Deleted) == 0 {
				return nil
			}
			return fn(b)
		})
}

// NeighborPrefix holds the routers' replicated ARP and ND tables: one key
// per host and (router, IP) a router port resolved, whose value is the
// MAC and when it was learned (readers keep the latest answer, whichever
// host heard it).
//
// The answer to a router's ARP request or neighbor solicitation enters the
// overlay at the host of the VM that answers, which is usually not the host
// whose simulation asked: without replication the asking host never learns
// the next hop.
const NeighborPrefix = "/nagare/v1/state/neighbor/"

// LearnedNeighbor is one entry of a router's replicated ARP/ND table.
type LearnedNeighbor struct {
	Host     string // the host that learned it
	RouterID string
	IP       netip.Addr
	// MAC is the neighbor's address and At when the answer was seen: every
	// host expires the entry a fixed time after the answer rather than
	// after it heard of it, and the newest answer wins.
	MAC packet.MAC
	At  time.Time
}

// Key is the entry's etcd key.
func (n LearnedNeighbor) Key() string {
	return fmt.Sprintf("%s%s/%s/%s", NeighborPrefix, n.Host, n.RouterID, n.IP)
}

// ParseNeighborKey parses an entry's key; the MAC and time are the value's.
func ParseNeighborKey(key string) (LearnedNeighbor, bool) {
	host, rest, ok := hostScoped(key, NeighborPrefix)
	router, ip, ok2 := strings.Cut(rest, "/")
	addr, err := netip.ParseAddr(ip)
	if !ok || !ok2 || router == "" || err != nil {
		return LearnedNeighbor{}, false
	}
	return LearnedNeighbor{Host: host, RouterID: router, IP: addr}, true
}

// neighborValue is an entry's value: the MAC and when it was learned
// (Unix milliseconds).
func neighborValue(mac packet.MAC, at time.Time) string {
	return fmt.Sprintf("%s %d", mac, at.UnixMilli())
}

func parseNeighborValue(v string) (packet.MAC, time.Time, bool) {
	f := strings.Fields(v)
	if len(f) != 2 {
		return packet.MAC{}, time.Time{}, false
	}
	mac, err := packet.ParseMAC(f[0])
	ms, err2 := strconv.ParseInt(f[1], 10, 64)
	if err != nil || err2 != nil || mac.IsZero() {
		return packet.MAC{}, time.Time{}, false
	}
	return mac, time.UnixMilli(ms), true
}

// parseNeighbor reads one stored entry; a malformed one (a newer agent's
// format, or garbage) is not ok.
func parseNeighbor(key, value []byte) (LearnedNeighbor, bool) {
	n, ok := ParseNeighborKey(string(key))
	mac, at, ok2 := parseNeighborValue(string(value))
	n.MAC, n.At = mac, at
	return n, ok && ok2
}

// PutLearnedNeighbor publishes n (learned by host n.Host) under lease.
func (s *Store) PutLearnedNeighbor(ctx context.Context, n LearnedNeighbor, lease LeaseID) error {
	if !validHostID(n.Host) {
		return fmt.Errorf("nsdb: neighbor %s: host id %q: %w", n.IP, n.Host, model.ErrNotFound)
	}
	if _, err := s.cli.Put(ctx, n.Key(), neighborValue(n.MAC, n.At), withLease(lease)...); err != nil {
		return fmt.Errorf("nsdb: publish neighbor %s of router %s: %w", n.IP, n.RouterID, err)
	}
	return nil
}

// LearnedNeighbors lists every router's learned ARP/ND entries.
func (s *Store) LearnedNeighbors(ctx context.Context) ([]LearnedNeighbor, error) {
	kvs, _, err := s.rangeAll(ctx, NeighborPrefix, 0, false)
	if err != nil {
		return nil, fmt.Errorf("read learned neighbors: %w", err)
	}
	out := make([]LearnedNeighbor, 0, len(kvs))
	for _, kv := range kvs {
		if n, ok := parseNeighbor(kv.Key, kv.Value); ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// LearnedNeighborBatch is what a neighbor-table watcher receives: on
// Reset every entry, otherwise the new and refreshed ones. Deletions (the
// learner's lease ending) are not delivered: an entry stays valid for its
// own lifetime wherever it was heard of.
type LearnedNeighborBatch struct {
	Reset   bool
	Entries []LearnedNeighbor
	Rev     int64
}

// WatchLearnedNeighbors delivers the replicated ARP/ND tables to fn: a
// Reset first, then new entries, until ctx is done or fn fails.
func (s *Store) WatchLearnedNeighbors(ctx context.Context, fn func(LearnedNeighborBatch) error) error {
	return s.follow(ctx, NeighborPrefix, 0, false,
		func(kvs []*kv, rev int64) error {
			b := LearnedNeighborBatch{Reset: true, Rev: rev}
			for _, kv := range kvs {
				if n, ok := parseNeighbor(kv.Key, kv.Value); ok {
					b.Entries = append(b.Entries, n)
				}
			}
			return fn(b)
		},
		func(evs []*clientv3.Event, rev int64) error {
			b := LearnedNeighborBatch{Rev: rev}
			for _, ev := range evs {
				if ev.Type != mvccpb.PUT {
					continue
				}
				if n, ok := parseNeighbor(ev.Kv.Key, ev.Kv.Value); ok {
					b.Entries = append(b.Entries, n)
				}
			}
			if len(b.Entries) == 0 {
				return nil
			}
			return fn(b)
		})
}
