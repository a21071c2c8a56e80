package model

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
)

// Clone returns a deep copy of o, equal to what a JSON round trip of o
// would give (the API's and the store's view of an object), without one:
// the round trip was ~5 % of a Neutron port create. Like the round trip it
// drops unexported fields, and an empty slice or map in an omitempty field
// comes back nil. Types the copier does not know (interfaces, channels)
// fall back to the round trip.
func Clone(o Object) Object {
	src := reflect.ValueOf(o)
	t := src.Type().Elem()
	cp := copierOf(t)
	if cp == nil {
		return cloneJSON(o)
	}
	dst := reflect.New(t)
	cp(dst.Elem(), src.Elem())
	return dst.Interface().(Object)
}

// cloneJSON is Clone by a JSON round trip.
func cloneJSON(o Object) Object {
	b, err := json.Marshal(o)
	if err != nil {
		panic("model: marshal " + err.Error())
	}
	c := KindOf(o).New()
	if err := json.Unmarshal(b, c); err != nil {
		panic("model: unmarshal " + err.Error())
	}
	return c
}

// copier copies src into dst (a settable zero value of the same type).
type copier func(dst, src reflect.Value)

var (
	copiersMu sync.Mutex
	copiers   sync.Map // reflect.Type → copier (nil: not supported)
)

// copierOf returns the copier of t, nil if t holds something the copier
// cannot copy as the JSON round trip would.
func copierOf(t reflect.Type) copier {
	if c, ok := copiers.Load(t); ok {
		return c.(copier)
	}
	copiersMu.Lock()
	defer copiersMu.Unlock()
	c, ok := buildCopier(t, map[reflect.Type]*copier{})
	if !ok {
		c = nil
	}
	copiers.Store(t, c)
	return c
}

var (
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	rawMessage    = reflect.TypeFor[json.RawMessage]()
)

// buildCopier makes t's copier; building marks types in progress so a
// recursive type refers to itself.
func buildCopier(t reflect.Type, building map[reflect.Type]*copier) (copier, bool) {
	if c, ok := building[t]; ok {
		return func(dst, src reflect.Value) { (*c)(dst, src) }, true
	}
	slot := new(copier)
	building[t] = slot
	c, ok := makeCopier(t, building)
	*slot = c
	return c, ok
}

func makeCopier(t reflect.Type, building map[reflect.Type]*copier) (copier, bool) {
	assign := func(dst, src reflect.Value) { dst.Set(src) }
	if t == rawMessage {
		return func(dst, src reflect.Value) {
			if !src.IsNil() {
				dst.SetBytes(append([]byte(nil), src.Bytes()...))
			}
		}, true
	}
	// Values that encode themselves (netip.Addr, MACs, NAT targets,
	// time.Time) and hold no references but immutable ones are copied by
	// assignment: the model's text forms round-trip to the same value.
	if t.Implements(textMarshaler) || t.Implements(jsonMarshaler) ||
		reflect.PointerTo(t).Implements(textMarshaler) || reflect.PointerTo(t).Implements(jsonMarshaler) {
		if plainValue(t) {
			return assign, true
		}
		return nil, false
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return assign, true
	case reflect.Array:
		if plainValue(t) {
			return assign, true
		}
		elem, ok := buildCopier(t.Elem(), building)
		return func(dst, src reflect.Value) {
			for i := range src.Len() {
				elem(dst.Index(i), src.Index(i))
			}
		}, ok
	case reflect.Pointer:
		elem, ok := buildCopier(t.Elem(), building)
		return func(dst, src reflect.Value) {
			if src.IsNil() {
				return
			}
			p := reflect.New(t.Elem())
			elem(p.Elem(), src.Elem())
			dst.Set(p)
		}, ok
	case reflect.Slice:
		if plainValue(t.Elem()) {
			return func(dst, src reflect.Value) {
				if src.IsNil() {
					return
				}
				s := reflect.MakeSlice(t, src.Len(), src.Len())
				reflect.Copy(s, src)
				dst.Set(s)
			}, true
		}
		elem, ok := buildCopier(t.Elem(), building)
		return func(dst, src reflect.Value) {
			if src.IsNil() {
				return
			}
			s := reflect.MakeSlice(t, src.Len(), src.Len())
			for i := range src.Len() {
				elem(s.Index(i), src.Index(i))
			}
			dst.Set(s)
		}, ok
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, false // encoding/json turns other keys into text
		}
		elem, ok := buildCopier(t.Elem(), building)
		return func(dst, src reflect.Value) {
			if src.IsNil() {
				return
			}
			m := reflect.MakeMapWithSize(t, src.Len())
			it := src.MapRange()
			for it.Next() {
				v := reflect.New(t.Elem()).Elem()
				elem(v, it.Value())
				m.SetMapIndex(it.Key(), v)
			}
			dst.Set(m)
		}, ok
	case reflect.Struct:
		return structCopier(t, building)
	}
	return nil, false // interfaces, channels, functions: the JSON round trip
}

// structCopier copies the fields encoding/json would: exported ones,
// embedded structs included; an empty slice or map in an omitempty
// field is left nil, as the round trip leaves it.
func structCopier(t reflect.Type, building map[reflect.Type]*copier) (copier, bool) {
	type field struct {
		i         int
		omitEmpty bool
		cp        copier
	}
	var fields []field
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() && !(f.Anonymous && f.Type.Kind() == reflect.Struct) {
			continue
		}
		if !f.IsExported() {
			return nil, false // an unexported embedded struct: leave it to encoding/json
		}
		cp, ok := buildCopier(f.Type, building)
		if !ok {
			return nil, false
		}
		_, opts, _ := strings.Cut(tag, ",")
		omit := strings.Contains(","+opts+",", ",omitempty,") && (f.Type.Kind() == reflect.Slice || f.Type.Kind() == reflect.Map)
		fields = append(fields, field{i, omit, cp})
	}
	return func(dst, src reflect.Value) {
		for _, f := range fields {
			s := src.Field(f.i)
			if f.omitEmpty && s.Len() == 0 {
				continue
			}
			f.cp(dst.Field(f.i), s)
		}
	}, true
}

// plainValue reports whether a value of t holds no references but
// immutable ones (netip's, time's), so that an assignment copies it deeply.
func plainValue(t reflect.Type) bool {
	if p := t.PkgPath(); t.Kind() == reflect.Struct && (p == "net/netip" || p == "time") {
		return true
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	case reflect.Array:
		return plainValue(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !plainValue(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false
}
