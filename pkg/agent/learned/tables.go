package learned

import (
	"net/netip"
	"sync"
	"time"

	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

type macKey struct {
	bridge string
	vlan   uint16
	mac    packet.MAC
}

// MACTable implements sim.MACTable. Lookups are read-locked map reads;
// learning changes the local table at once and publishes asynchronously,
// so the miss path never waits on etcd.
type MACTable struct {
	t       *Tables
	mu      sync.RWMutex
	entries map[macKey]string
}

var _ sim.MACTable = (*MACTable)(nil)

// Lookup implements sim.MACTable.
func (m *MACTable) Lookup(bridgeID string, vlan uint16, mac packet.MAC) (string, bool) {
	m.mu.RLock()
	p, ok := m.entries[macKey{bridgeID, vlan, mac}]
	m.mu.RUnlock()
	return p, ok
}

// Learn implements sim.MACTable: the simulation calls it for new and moved
// MACs only. Flows that flooded for this MAC, or unicast it to its old
// port, carry its entry tag and are invalidated.
func (m *MACTable) Learn(bridgeID string, vlan uint16, mac packet.MAC, portID string, now int64) {
	if !m.set(macKey{bridgeID, vlan, mac}, portID) {
		return
	}
	m.t.cfg.Flows.Invalidate(sim.MACEntryTag(bridgeID, vlan, mac))
	select {
	case m.t.macPub <- &nsdb.LearnedMAC{Host: m.t.cfg.HostID, BridgeID: bridgeID, VLAN: vlan, MAC: mac, PortID: portID}:
	default:
		m.t.dropped.Add(1) // replication lags; the local entry still works
	}
}

func (m *MACTable) set(k macKey, port string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries[k] == port {
		return false
	}
	m.entries[k] = port
	return true
}

// remove forgets an entry if it still names port: a deletion of an entry
// that has since moved elsewhere changes nothing.
func (m *MACTable) remove(k macKey, port string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.entries[k]; !ok || cur != port {
		return false
	}
	delete(m.entries, k)
	return true
}

// applyMACs takes every host's learning from the NSDB. A Reset adds what
// it lists and removes nothing: an entry learned here and not yet
// published must survive it.
func (t *Tables) applyMACs(b nsdb.LearnedMACBatch) error {
	m := t.macs
	for _, e := range b.Put {
		if m.set(macKey{e.BridgeID, e.VLAN, e.MAC}, e.PortID) {
			t.cfg.Flows.Invalidate(sim.MACEntryTag(e.BridgeID, e.VLAN, e.MAC))
		}
	}
	for _, e := range b.Deleted {
		if m.remove(macKey{e.BridgeID, e.VLAN, e.MAC}, e.PortID) {
			t.cfg.Flows.Invalidate(sim.MACEntryTag(e.BridgeID, e.VLAN, e.MAC))
		}
	}
	return nil
}

// ARPTable implements sim.ARPTable: each router's neighbors as this host
// learned them from ARP and ND answers. Entries expire so that a moved
// address is resolved again.
type ARPTable struct {
	mu      sync.RWMutex
	entries map[arpKey]arpEntry
}

var _ sim.ARPTable = (*ARPTable)(nil)

type arpKey struct {
	router string
	ip     netip.Addr
}

type arpEntry struct {
	mac packet.MAC
	at  time.Time
}

// arpTTL is how long an answer is believed.
const arpTTL = 5 * time.Minute

func newARPTable() *ARPTable { return &ARPTable{entries: map[arpKey]arpEntry{}} }

// Lookup implements sim.ARPTable.
func (t *ARPTable) Lookup(routerID string, ip netip.Addr) (packet.MAC, bool) {
	t.mu.RLock()
	e, ok := t.entries[arpKey{routerID, ip}]
	t.mu.RUnlock()
	if !ok || time.Since(e.at) > arpTTL {
		return packet.MAC{}, false
	}
	return e.mac, true
}

// learn records (or refreshes) an entry learned at the given time, and
// reports whether the MAC is new or different. An answer older than the
// entry's (a replicated copy arriving late) changes nothing.
func (t *ARPTable) learn(router string, ip netip.Addr, mac packet.MAC, at time.Time) bool {
	k := arpKey{router, ip}
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.entries[k]
	if ok && old.at.After(at) {
		return false
	}
	t.entries[k] = arpEntry{mac, at}
	return !ok || old.mac != mac
}
