package nsdb

import (
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"runtime"
	"strings"
	"sync"

	"github.com/nagare/nagare/pkg/model"
)

// SchemaVersion is the key layout and encoding this binary reads and writes.
const SchemaVersion = 1

const (
	root            = "/nagare/v1/"
	schemaKey       = root + "schema-version"
	objPrefix       = root + "obj/"
	svcPrefix       = root + "svc/" // internal kinds: see objKey
	refPrefix       = root + "ref/"
	uniqPrefix      = root + "uniq/"
	hostStatePrefix = root + "state/host/"
)

// objKey is where an object lives. Internal kinds (Neutron's objects,
// identity's users) live under svc/ rather than obj/: agents watch obj/ and
// need neither the traffic of every API write twice over nor read access to
// password hashes (etcd roles can grant obj/ without svc/).
func objKey(k *model.Kind, id string) string { return kindPrefix(k) + id }

func kindPrefix(k *model.Kind) string {
	if k.Internal {
		return svcPrefix + k.Name + "/"
	}
	return objPrefix + k.Name + "/"
}

func refKey(target string, src *model.Kind, srcID, field string) string {
	return refPrefix + target + "/" + src.Name + "/" + srcID + "/" + field
}

// refTargetPrefix covers every reference to target, from any kind.
func refTargetPrefix(target string) string { return refPrefix + target + "/" }

// parseRefKey splits a key under refTargetPrefix(target).
func parseRefKey(key, target string) (src *model.Kind, srcID, field string, ok bool) {
	rest, found := strings.CutPrefix(key, refTargetPrefix(target))
	if !found {
		return nil, "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return nil, "", "", false
	}
	src = model.KindByName(parts[0])
	return src, parts[1], parts[2], src != nil
}

// parseObjKey splits a key under objPrefix; unknown kinds (written by a newer
// binary) are reported as not ok so readers can skip them.
func parseObjKey(key string) (*model.Kind, string, bool) {
	rest, found := strings.CutPrefix(key, objPrefix)
	if !found {
		return nil, "", false
	}
	name, id, found := strings.Cut(rest, "/")
	k := model.KindByName(name)
	if !found || k == nil || k.Name != name {
		return nil, "", false
	}
	return k, id, true
}

func uniqKey(k *model.Kind, f *model.Field, scope, value string) string {
	return uniqPrefix + k.Name + "/" + f.JSON + "/" + url.PathEscape(scope) + "/" + url.PathEscape(value)
}

// uniqKeyOf is the unique key o holds for f, or "" when the value is zero.
func uniqKeyOf(k *model.Kind, f *model.Field, o model.Object) string {
	if f.Value(o).IsZero() {
		return ""
	}
	scope := ""
	if f.Scope != "" {
		scope = k.Field(f.Scope).Text(o)
	}
	return uniqKey(k, f, scope, f.Text(o))
}

func hostAliveKey(hostID string) string { return hostStatePrefix + hostID + "/alive" }

// encode renders o as stored: without its revision (the key's ModRevision
// is the truth) and without derived fields (computed by readers). It works
// on a shallow copy so a caller's object is never modified.
func encode(o model.Object) ([]byte, error) {
	b, _, err := encodeStored(o)
	return b, err
}

// encodeStored is encode that also returns the stored form of o (a
// shallow copy: it shares o's slices and maps).
func encodeStored(o model.Object) ([]byte, model.Object, error) {
	k := model.KindOf(o)
	cp := reflect.New(reflect.TypeOf(o).Elem())
	cp.Elem().Set(reflect.ValueOf(o).Elem())
	c := cp.Interface().(model.Object)
	c.GetMeta().Revision = 0
	for _, f := range k.Fields {
		if f.Derived {
			v := f.Value(c)
			v.Set(reflect.Zero(v.Type()))
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, nil, fmt.Errorf("encode %s %s: %w", k.Name, o.GetMeta().ID, err)
	}
	return b, c, nil
}

func decode(k *model.Kind, key string, b []byte, rev int64) (model.Object, error) {
	if rev != 0 {
		if o := decoded.get(key, rev, b); o != nil {
			return o, nil
		}
	}
	o, err := decodeFresh(k, key, b, rev)
	if err == nil && rev != 0 && decoded.enabled() {
		decoded.put(key, rev, b, model.Clone(o))
	}
	return o, err
}

// decodeShared is decode for the watches, whose receivers never change
// the objects (see Watch): the object may be the cache's own.
func decodeShared(k *model.Kind, key string, b []byte, rev int64) (model.Object, error) {
	if o := decoded.shared(key, rev, b); o != nil {
		return o, nil
	}
	o, err := decodeFresh(k, key, b, rev)
	if err == nil && decoded.enabled() {
		decoded.put(key, rev, b, o)
	}
	return o, err
}

// decodeFresh is decode without the cache: for values that are not (yet)
// stored at rev, such as a transaction's own writes.
func decodeFresh(k *model.Kind, key string, b []byte, rev int64) (model.Object, error) {
	o := k.New()
	if err := json.Unmarshal(b, o); err != nil {
		return nil, fmt.Errorf("nsdb: %s holds malformed JSON: %w", key, err)
	}
	o.GetMeta().Revision = rev
	return o, nil
}

// entry is one key as a transaction sees it.
type entry struct {
	key       string
	value     []byte
	modRev    int64 // 0 when written by the transaction itself
	createRev int64 // 0 when created by the transaction itself
	seq       int   // order of creation within the transaction
	own       bool  // value is the transaction's own write
}

// decode decodes e's object, through the cache unless it is a write of
// the transaction.
func (e *entry) decode(k *model.Kind) (model.Object, error) {
	if e.own {
		return decodeFresh(k, e.key, e.value, e.modRev)
	}
	return decode(k, e.key, e.value, e.modRev)
}

// decodeEntries decodes objects of k, in parallel when there are many:
// decoding JSON, not etcd, is what a 10,000-port list spends its time on.
func decodeEntries(k *model.Kind, es []entry) ([]model.Object, error) {
	out := make([]model.Object, len(es))
	const chunk = 512
	if len(es) <= chunk {
		for i, e := range es {
			o, err := e.decode(k)
			if err != nil {
				return nil, err
			}
			out[i] = o
		}
		return out, nil
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     = make(chan int)
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for start := range next {
				for i := start; i < min(start+chunk, len(es)); i++ {
					o, err := es[i].decode(k)
					if err != nil {
						mu.Lock()
						firstErr = err
						mu.Unlock()
						continue
					}
					out[i] = o
				}
			}
		})
	}
	for start := 0; start < len(es); start += chunk {
		next <- start
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}
