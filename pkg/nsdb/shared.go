package nsdb

import (
	"sync"
	"sync/atomic"

	"github.com/nagare/nagare/pkg/model"
)

// ShareDecoded makes the topology watches (Watch, WatchFrom) of every
// Store in this process hand out one object per key and revision: each
// watch still decodes what etcd sends it (its cost is unchanged), then
// keeps the copy another watch decoded first and drops its own. It is for
// processes that run many agents, each with its own Store (nagare-bench
// scale's simulated hypervisors): their topologies are then held once
// instead of once per agent. Receivers must not change the objects (the
// agent's mirror does not: see mirror.Snapshot). There is no way back.
func ShareDecoded() { shared.on.Store(true) }

// shared is the process's decoded objects, newest revision per key.
var shared decodedObjects

type decodedObjects struct {
	on atomic.Bool
	mu sync.Mutex
	m  map[string]model.Object
}

// share returns the object already decoded for key at o's revision, or o
// (remembered when it is the newest seen).
func (d *decodedObjects) share(key string, o model.Object) model.Object {
	if !d.on.Load() {
		return o
	}
	rev := o.GetMeta().Revision
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.m[key]; ok {
		switch cr := c.GetMeta().Revision; {
		case cr == rev:
			return c
		case cr > rev:
			return o // an older version (a Prev, a lagging watch): not kept
		}
	}
	if d.m == nil {
		d.m = map[string]model.Object{}
	}
	d.m[key] = o
	return o
}

// forget drops key's object when it is older than its deletion at rev.
// A watch that lags behind may put it back; the bench's topologies are
// not deleted, and such an entry is one object.
func (d *decodedObjects) forget(key string, rev int64) {
	if !d.on.Load() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.m[key]; ok && c.GetMeta().Revision < rev {
		delete(d.m, key)
	}
}
