package nsdb

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/nagare/nagare/pkg/model"
)

// decoded remembers the objects this process decoded or wrote recently,
// by key, with the stored bytes and revision they are the decoding of: a
// key's value at a revision never changes, so an object read again (a
// network every port create reads, every port of a repeated list, a
// watch event of a write this process made) is a copy of the remembered
// one instead of a JSON decode — a deep copy (model.Clone) costs a sixth of a decode.
// The bytes are compared too, so a store that is not the one the entry
// came from (an etcd restored under a running server) cannot be served a
// stale object.
//
// It is off until CacheDecoded turns it on: an agent decodes each object
// once per change and holds it in its mirror, and would only pay memory.
var decoded = decodedCache{m: map[string]decodedEntry{}}

// DecodedCacheBytes is the cache nagare-server uses: room for a
// 10,000-port list and the objects creates read (the decoded objects take
// about as much again as the stored bytes it counts).
const DecodedCacheBytes = 32 << 20

// CacheDecoded makes this process remember up to limit bytes of stored
// objects with their decoding (0: none, the default), so that reading an
// object again costs a copy instead of a decode. nagare-server turns it
// on; it serves every Store of the process.
func CacheDecoded(limit int) {
	decoded.mu.Lock()
	defer decoded.mu.Unlock()
	decoded.limit = limit
	decoded.on.Store(limit > 0)
	decoded.evict(0)
}

type decodedCache struct {
	mu    sync.RWMutex
	m     map[string]decodedEntry
	bytes int
	limit int
	on    atomic.Bool // limit > 0
}

// enabled says whether the cache is on (CacheDecoded).
func (c *decodedCache) enabled() bool { return c.on.Load() }

type decodedEntry struct {
	rev int64
	raw []byte
	obj model.Object // read-only: handed out to the watches, copied for everyone else
}

// get returns a copy of the object key held at rev with value raw, or nil.
func (c *decodedCache) get(key string, rev int64, raw []byte) model.Object {
	if o := c.shared(key, rev, raw); o != nil {
		return model.Clone(o)
	}
	return nil
}

// shared is get for readers that never change what they are given (the
// watches): the remembered object itself.
func (c *decodedCache) shared(key string, rev int64, raw []byte) model.Object {
	if !c.enabled() {
		return nil
	}
	c.mu.RLock()
	e, ok := c.m[key]
	c.mu.RUnlock()
	if !ok || e.rev != rev || !bytes.Equal(e.raw, raw) {
		return nil
	}
	return e.obj
}

// put remembers obj as the decoding of raw, key's value at rev; obj must
// not be changed afterwards. An older revision than the one remembered is
// not kept.
func (c *decodedCache) put(key string, rev int64, raw []byte, obj model.Object) {
	if rev == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(raw) > c.limit/64 {
		return
	}
	if old, ok := c.m[key]; ok {
		if old.rev > rev {
			return
		}
		delete(c.m, key)
		c.bytes -= len(old.raw)
	}
	c.evict(len(raw))
	c.m[key] = decodedEntry{rev: rev, raw: raw, obj: obj}
	c.bytes += len(raw)
}

// evict drops entries at random until room more bytes fit. c.mu is held.
func (c *decodedCache) evict(room int) {
	for k, e := range c.m {
		if c.bytes+room <= c.limit {
			break
		}
		delete(c.m, k)
		c.bytes -= len(e.raw)
	}
}
