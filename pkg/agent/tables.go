package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

type macKey struct {
	bridge string
	vlan   uint16
	mac    packet.MAC
}

func (k macKey) etcdKey() string {
	return nsdb.LearnedMAC{BridgeID: k.bridge, VLAN: k.vlan, MAC: k.mac}.Key()
}

func parseMACKey(key string) (macKey, bool) {
	m, ok := nsdb.ParseMACKey(key)
	return macKey{m.BridgeID, m.VLAN, m.MAC}, ok
}

// macTable implements sim.MACTable. Lookups are lock-light map reads;
// learning updates the local table at once and publishes asynchronously, so
// the miss path never waits on etcd.
type macTable struct {
	cli    *clientv3.Client
	hostID string
	lease  atomic.Int64
	dp     datapath.Datapath
	log    *slog.Logger

	mu      sync.RWMutex
	entries map[macKey]string
	pub     chan macUpdate
	dropped atomic.Uint64
}

type macUpdate struct {
	key  macKey
	port string
}

func newMACTable(cli *clientv3.Client, hostID string, lease clientv3.LeaseID, dp datapath.Datapath, log *slog.Logger) *macTable {
	t := &macTable{cli: cli, hostID: hostID, dp: dp, log: log, entries: map[macKey]string{}, pub: make(chan macUpdate, 4096)}
	t.lease.Store(int64(lease))
	return t
}

func (t *macTable) setLease(l clientv3.LeaseID) { t.lease.Store(int64(l)) }

// Lookup implements sim.MACTable.
func (t *macTable) Lookup(bridgeID string, vlan uint16, mac packet.MAC) (string, bool) {
	t.mu.RLock()
	p, ok := t.entries[macKey{bridgeID, vlan, mac}]
	t.mu.RUnlock()
	return p, ok
}

// Learn implements sim.MACTable: the simulation calls it for new and moved
// MACs only. Flows that flooded for this MAC, or unicast it to its old port,
// carry its entry tag and are invalidated.
func (t *macTable) Learn(bridgeID string, vlan uint16, mac packet.MAC, portID string, now int64) {
	k := macKey{bridgeID, vlan, mac}
	if !t.set(k, portID) {
		return
	}
	t.dp.Invalidate(sim.MACEntryTag(bridgeID, vlan, mac))
	select {
	case t.pub <- macUpdate{k, portID}:
	default:
		t.dropped.Add(1) // replication lags; the local entry still works
	}
}

func (t *macTable) set(k macKey, port string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.entries[k] == port {
		return false
	}
	t.entries[k] = port
	return true
}

func (t *macTable) remove(k macKey, port string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, ok := t.entries[k]; !ok || cur != port {
		return false
	}
	delete(t.entries, k)
	return true
}

// run publishes local learning and applies everybody's.
func (t *macTable) run(ctx context.Context) error {
	go t.publish(ctx)
	for ctx.Err() == nil {
		resp, err := t.cli.Get(ctx, nsdb.MACPrefix, clientv3.WithPrefix())
		if err != nil {
			time.Sleep(time.Second)
			continue
		}
		for _, kv := range resp.Kvs {
			if k, ok := parseMACKey(string(kv.Key)); ok && t.set(k, string(kv.Value)) {
				t.dp.Invalidate(sim.MACEntryTag(k.bridge, k.vlan, k.mac))
			}
		}
		wch := t.cli.Watch(clientv3.WithRequireLeader(ctx), nsdb.MACPrefix, clientv3.WithPrefix(),
			clientv3.WithRev(resp.Header.Revision+1), clientv3.WithPrevKV())
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				k, ok := parseMACKey(string(ev.Kv.Key))
				if !ok {
					continue
				}
				changed := false
				if ev.Type == mvccpb.PUT {
					changed = t.set(k, string(ev.Kv.Value))
				} else if ev.PrevKv != nil {
					changed = t.remove(k, string(ev.PrevKv.Value))
				}
				if changed {
					t.dp.Invalidate(sim.MACEntryTag(k.bridge, k.vlan, k.mac))
				}
			}
		}
	}
	return ctx.Err()
}

func (t *macTable) publish(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-t.pub:
			lease := clientv3.LeaseID(t.lease.Load())
			if _, err := t.cli.Put(ctx, u.key.etcdKey(), u.port, clientv3.WithLease(lease)); err != nil && ctx.Err() == nil {
				t.log.Warn("publish learned MAC", "bridge", u.key.bridge, "mac", u.key.mac, "err", err)
			}
		}
	}
}

// arpTable implements sim.ARPTable: each router's neighbors as this host
// learned them from ARP and ND answers. Entries expire so a moved address
// is re-resolved.
type arpTable struct {
	mu      sync.RWMutex
	entries map[arpKey]arpEntry
}

type arpKey struct {
	router string
	ip     netip.Addr
}

type arpEntry struct {
	mac packet.MAC
	at  time.Time
}

const arpTTL = 5 * time.Minute

func newARPTable() *arpTable { return &arpTable{entries: map[arpKey]arpEntry{}} }

// Lookup implements sim.ARPTable.
func (t *arpTable) Lookup(routerID string, ip netip.Addr) (packet.MAC, bool) {
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
func (t *arpTable) learn(router string, ip netip.Addr, mac packet.MAC, at time.Time) bool {
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
