//go:build linux

package ebpf

import (
	"sync"
	"sync/atomic"
)

// dropCounters counts drops the agent side sees (upcalls it could not
// queue, frames Execute could not send), by reason. Reasons are few and
// fixed, so the map only grows on a reason's first drop.
type dropCounters struct {
	m sync.Map // string -> *atomic.Uint64
}

func (d *dropCounters) add(reason string, n uint64) {
	c, ok := d.m.Load(reason)
	if !ok {
		c, _ = d.m.LoadOrStore(reason, new(atomic.Uint64))
	}
	c.(*atomic.Uint64).Add(n)
}

func (d *dropCounters) get(reason string) uint64 {
	if c, ok := d.m.Load(reason); ok {
		return c.(*atomic.Uint64).Load()
	}
	return 0
}

func (d *dropCounters) addTo(m map[string]uint64) {
	d.m.Range(func(k, v any) bool {
		if n := v.(*atomic.Uint64).Load(); n > 0 {
			m[k.(string)] += n
		}
		return true
	})
}
