package statesync

import (
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flowstate"
)

// Offloading to a datapath that tracks connections in its fast path
// (Config.Offload). The table stays the source of truth: what the kernel
// holds is written from it, and what the kernel saw is merged back into
// it (flowstate.Table.Seen).

// Offload writes the table's entries of keys, the state keys a walk read
// (the entries it created among them), to the datapath's connection map
// before the walk's flow is installed: the flow then names them, and its
// packets keep them alive and follow the connection's close in the
// kernel. Keys without a live entry are skipped. Without an offloading
// datapath it does nothing.
func (s *Sync) Offload(keys []flowstate.Key) { s.offload(keys) }

func (s *Sync) offload(keys []flowstate.Key) {
	off := s.cfg.Offload
	if off == nil || len(keys) == 0 {
		return
	}
	bp := s.connBufs.Get().(*[]datapath.ConnEntry)
	defer s.connBufs.Put(bp)
	conns := (*bp)[:0]
	now := time.Now().UnixNano()
outer:
	for i := range keys {
		e, exp, ok := s.table.Lifetime(&keys[i], now)
		if !ok {
			continue
		}
		for j := range conns {
			if conns[j].Fwd == e.Fwd {
				continue outer // the entry's other key
			}
		}
		conns = append(conns, datapath.ConnEntry{Entry: e, LastUsed: now, Expires: exp})
	}
	*bp = conns
	if err := off.PutConns(conns); err != nil {
		s.count.offloadErrors.Add(1)
		s.cfg.Log.Debug("offload connections", "err", err)
	}
}

// syncConns merges what the kernel saw of every offloaded entry into the
// table (it replaces the walk of the flow table that refreshes the
// entries of live flows), and has the kernel drop the entries the table
// no longer holds.
func (s *Sync) syncConns() {
	var refreshed uint64
	err := s.cfg.Offload.SyncConns(func(c *datapath.ConnEntry) bool {
		alive, changed := s.table.Seen(&c.Entry, c.LastUsed)
		if changed {
			refreshed++
		}
		return alive
	})
	s.count.touched.Add(refreshed)
	if err != nil {
		s.count.offloadErrors.Add(1)
		s.cfg.Log.Warn("read the kernel's connections", "err", err)
	}
}

// adoptOffloaded reads back the entries a previous agent offloaded to a
// datapath that outlived it (pinned kernel maps): those still alive join
// the table (or refresh what the state file restored), the others are
// dropped from the kernel. It returns how many the table took.
func (s *Sync) adoptOffloaded(now time.Time) (adopted, dropped int, err error) {
	off := s.cfg.Offload
	if off == nil {
		return 0, 0, nil
	}
	ns := now.UnixNano()
	err = off.SyncConns(func(c *datapath.ConnEntry) bool {
		if c.Expires <= ns {
			dropped++
			return false
		}
		if alive, _ := s.table.Seen(&c.Entry, c.LastUsed); alive {
			adopted++
			return true
		}
		if s.table.Restore(&c.Entry, time.Duration(c.Expires-ns), ns) != nil {
			dropped++
			return false // refused: a bound, or a clash with what the state file held
		}
		adopted++
		return true
	})
	return adopted, dropped, err
}
