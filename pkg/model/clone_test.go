package model_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	_ "github.com/nagare/nagare/pkg/identity" // their kinds, cloned like the native ones
	_ "github.com/nagare/nagare/pkg/join"
	"github.com/nagare/nagare/pkg/model"
	_ "github.com/nagare/nagare/pkg/neutron"
	"github.com/nagare/nagare/pkg/packet"
)

// TestCloneEqualsJSONRoundTrip: for every registered kind, random objects
// (nil, empty and filled slices, maps and pointers) clone to exactly what
// a JSON round trip gives, and the clone shares no memory with the
// original.
func TestCloneEqualsJSONRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, k := range model.Kinds() {
		if !model.CopiesDirectly(k) {
			t.Errorf("%s is cloned by a JSON round trip", k.Name)
		}
		for i := range 200 {
			o := k.New()
			fill(r, reflect.ValueOf(o).Elem(), 0)
			b, err := json.Marshal(o)
			if err != nil {
				t.Fatalf("%s #%d: marshal: %v", k.Name, i, err)
			}
			want := k.New()
			if err := json.Unmarshal(b, want); err != nil {
				t.Fatalf("%s #%d: unmarshal: %v", k.Name, i, err)
			}
			got := model.Clone(o)
			if !reflect.DeepEqual(got, want) {
				gb, _ := json.Marshal(got)
				t.Fatalf("%s #%d: clone differs from the JSON round trip:\n got %#v\nwant %#v\n(%s)", k.Name, i, got, want, gb)
			}
			if path := shared(reflect.ValueOf(got).Elem(), reflect.ValueOf(o).Elem(), k.Name); path != "" {
				t.Fatalf("%s #%d: the clone shares %s with the original", k.Name, i, path)
			}
		}
	}
}

// shared returns the path of the first slice, map or pointer a and b share.
func shared(a, b reflect.Value, path string) string {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		return shared(a.Elem(), b.Elem(), "*"+path)
	case reflect.Slice:
		if a.Len() == 0 || b.Len() == 0 {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		for i := range min(a.Len(), b.Len()) {
			if p := shared(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	case reflect.Map:
		if a.IsNil() || b.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		for _, key := range a.MapKeys() {
			if bv := b.MapIndex(key); bv.IsValid() {
				if p := shared(a.MapIndex(key), bv, fmt.Sprintf("%s[%v]", path, key)); p != "" {
					return p
				}
			}
		}
	case reflect.Struct:
		for i := range a.NumField() {
			if !a.Type().Field(i).IsExported() {
				continue
			}
			if p := shared(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); p != "" {
				return p
			}
		}
	}
	return ""
}

// samples are values of the types that encode themselves.
var samples = map[reflect.Type][]any{
	reflect.TypeFor[netip.Addr]():      {netip.Addr{}, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")},
	reflect.TypeFor[netip.Prefix]():    {netip.Prefix{}, netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00::/64")},
	reflect.TypeFor[packet.MAC]():      {packet.MAC{}, packet.MAC{2, 0, 0, 0, 0, 1}},
	reflect.TypeFor[time.Time]():       {time.Time{}, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)},
	reflect.TypeFor[json.RawMessage](): {json.RawMessage(nil), json.RawMessage(`{"a":1}`), json.RawMessage(`[]`)},
	reflect.TypeFor[model.PortRange](): {model.PortRange{}, model.PortRange{Start: 80, End: 80}, model.PortRange{Start: 1000, End: 2000}},
	reflect.TypeFor[model.NATTarget](): {
		model.NATTarget{AddrFrom: netip.MustParseAddr("10.0.0.1"), AddrTo: netip.MustParseAddr("10.0.0.1")},
		model.NATTarget{AddrFrom: netip.MustParseAddr("10.0.0.1"), AddrTo: netip.MustParseAddr("10.0.0.9"),
			Ports: model.PortRange{Start: 1000, End: 2000}, Base: 80},
	},
	reflect.TypeFor[model.Opt121Route](): {model.Opt121Route{Destination: netip.MustParsePrefix("10.1.0.0/16"),
		Gateway: netip.MustParseAddr("10.0.0.254")}},
	reflect.TypeFor[model.DHCPOption](): {model.DHCPOption{Code: 66, Value: "tftp.example.com"}},
	reflect.TypeFor[model.PortSource](): {model.PortSource{MAC: packet.MAC{0xfa, 0x16, 0x3e, 0, 0, 1}, Prefix: netip.MustParsePrefix("10.0.0.5/32")}},
}

// fill sets v to a random value: slices, maps and pointers nil, empty or
// filled; scalars zero or not.
func fill(r *rand.Rand, v reflect.Value, depth int) {
	if s, ok := samples[v.Type()]; ok {
		v.Set(reflect.ValueOf(s[r.IntN(len(s))]))
		return
	}
	if v.Addr().Type().Implements(reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()) && v.Kind() == reflect.Struct {
		panic(fmt.Sprintf("no samples of %s", v.Type()))
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.String:
		v.SetString([]string{"", "a", "x<y>&\"z\"", "ü"}[r.IntN(4)])
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(r.IntN(200) - 100))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(r.IntN(200)))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(r.IntN(100)) / 4)
	case reflect.Array:
		for i := range v.Len() {
			fill(r, v.Index(i), depth+1)
		}
	case reflect.Pointer:
		if r.IntN(2) == 0 && depth < 4 {
			p := reflect.New(v.Type().Elem())
			fill(r, p.Elem(), depth+1)
			v.Set(p)
		}
	case reflect.Slice:
		switch n := r.IntN(4); {
		case n == 0:
		case n == 1 || depth >= 4:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			s := reflect.MakeSlice(v.Type(), n, n)
			for i := range n {
				fill(r, s.Index(i), depth+1)
			}
			v.Set(s)
		}
	case reflect.Map:
		switch n := r.IntN(4); {
		case n == 0:
		case n == 1 || depth >= 4:
			v.Set(reflect.MakeMap(v.Type()))
		default:
			m := reflect.MakeMap(v.Type())
			for i := range n {
				key := reflect.New(v.Type().Key()).Elem()
				key.SetString(fmt.Sprintf("k%d", i))
				val := reflect.New(v.Type().Elem()).Elem()
				fill(r, val, depth+1)
				m.SetMapIndex(key, val)
			}
			v.Set(m)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(r, v.Field(i), depth+1)
			}
		}
	}
}

func BenchmarkClone(b *testing.B) {
	p := &model.Port{Meta: model.Meta{ID: "p1", Revision: 7}, BridgeID: "b1", State: model.StateUp, HostID: "h1",
		InterfaceName: "tap1", TunnelKey: 9, MAC: packet.MAC{2, 0, 0, 0, 0, 1}}
	b.ReportAllocs()
	for b.Loop() {
		_ = model.Clone(p)
	}
}
