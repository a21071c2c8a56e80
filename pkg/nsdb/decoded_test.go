package nsdb

import (
	"fmt"
	"os"
	"reflect"
	"testing"

	"github.com/nagare/nagare/pkg/model"
)

// TestMain runs the package's tests with the decoded-object cache on, as
// nagare-server runs, and small enough that entries are evicted all the
// time.
func TestMain(m *testing.M) {
	CacheDecoded(64 << 10)
	os.Exit(m.Run())
}

// TestDecodedCacheServesStoredObjects: objects read through the cache —
// after a write of this process (seeded at commit) and after a read of
// another's (seeded by the decode) — equal a fresh decode of what etcd
// holds, revision included, and each read is a copy of its own.
func TestDecodedCacheServesStoredObjects(t *testing.T) {
	f := newFixture(t)
	br := f.bridge("b1")
	h := f.create(&model.Host{Name: "h1", Alive: true}).(*model.Host) // Alive is derived: not stored
	for _, o := range []model.Object{br, h} {
		k := model.KindOf(o)
		key := objKey(k, o.GetMeta().ID)
		resp, err := f.cli.Get(f.ctx, key)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("read %s: %v", key, err)
		}
		want, err := decodeFresh(k, key, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 { // the first read after a write, then reads of the cached decode
			got, err := f.s.Get(f.ctx, k, o.GetMeta().ID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s read %d: %#v, a fresh decode gives %#v", key, i, got, want)
			}
			switch x := got.(type) { // change the copy: the next read must not see it
			case *model.Bridge:
				x.Name = "changed"
			case *model.Host:
				x.Name, x.Alive = "changed", true
			}
		}
	}
}

// TestDecodedCacheChecksBytes: an entry is served only for the bytes it
// is the decoding of, and never for another revision.
func TestDecodedCacheChecksBytes(t *testing.T) {
	c := decodedCache{m: map[string]decodedEntry{}}
	c.limit = 1 << 20
	c.on.Store(true)
	raw := []byte(`{"id":"x","name":"a"}`)
	c.put("k", 5, raw, &model.Bridge{Meta: model.Meta{ID: "x", Revision: 5}, Name: "a"})
	if c.get("k", 5, []byte(`{"id":"x","name":"b"}`)) != nil {
		t.Fatal("served an entry for other bytes")
	}
	if c.get("k", 6, raw) != nil || c.get("k", 4, raw) != nil {
		t.Fatal("served an entry for another revision")
	}
	if o := c.get("k", 5, raw); o == nil || o.(*model.Bridge).Name != "a" {
		t.Fatalf("the entry was not served: %v", o)
	}
	c.put("k", 4, []byte(`{"id":"x","name":"old"}`), &model.Bridge{Name: "old"})
	if c.get("k", 5, raw) == nil {
		t.Fatal("an older revision replaced a newer one")
	}
}

// TestDecodedCacheBounded: the cache never holds more bytes than its limit.
func TestDecodedCacheBounded(t *testing.T) {
	c := decodedCache{m: map[string]decodedEntry{}}
	c.limit = 4096
	c.on.Store(true)
	for i := range 1000 {
		raw := fmt.Appendf(nil, `{"id":"%d","name":"some bridge name"}`, i)
		c.put(fmt.Sprint(i), int64(i+1), raw, &model.Bridge{})
		total := 0
		for _, e := range c.m {
			total += len(e.raw)
		}
		if total != c.bytes || c.bytes > c.limit {
			t.Fatalf("after %d puts: %d bytes counted, %d held, limit %d", i+1, c.bytes, total, c.limit)
		}
	}
	if len(c.m) < 50 {
		t.Fatalf("only %d entries kept", len(c.m))
	}
}
