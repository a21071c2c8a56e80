package mirror

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"

	"github.com/google/uuid"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
)

// encoded is an object as stored: its kind and its JSON.
type encoded struct {
	kind *model.Kind
	json []byte
}

// decodeAll decodes objects as the watch does: every string its own
// allocation, as in each agent's own copy.
func decodeAll(tb testing.TB, enc []encoded) []model.Object {
	objs := make([]model.Object, len(enc))
	for i, e := range enc {
		objs[i] = e.kind.New()
		if err := json.Unmarshal(e.json, objs[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return objs
}

// scaleObjects is the scale benchmark's topology (nagare-bench scale):
// hosts hypervisors in one tunnel zone, ports ports on bridges bridges,
// port i bound on host i mod hosts.
func scaleObjects(tb testing.TB, hosts, ports, bridges int) []encoded {
	tb.Helper()
	var objs []encoded
	add := func(o model.Object) {
		b, err := json.Marshal(o)
		if err != nil {
			tb.Fatal(err)
		}
		objs = append(objs, encoded{model.KindOf(o), b})
	}
	zone := uuid.NewString()
	add(&model.TunnelZone{Meta: model.Meta{ID: zone}, Name: "scale", Type: model.TunnelVXLAN})
	hostIDs := make([]string, hosts)
	for h := range hosts {
		hostIDs[h] = uuid.NewString()
		addr := netip.AddrFrom4([4]byte{10, 128 + byte(h>>16), byte(h >> 8), byte(h)})
		add(&model.Host{Meta: model.Meta{ID: hostIDs[h]}, Name: fmt.Sprintf("hv%04d", h), Addresses: []netip.Addr{addr}})
		add(&model.TunnelZoneMember{Meta: model.Meta{ID: uuid.NewString()}, TunnelZoneID: zone, HostID: hostIDs[h], Address: addr})
	}
	bridgeIDs := make([]string, bridges)
	for b := range bridges {
		bridgeIDs[b] = uuid.NewString()
		add(&model.Bridge{Meta: model.Meta{ID: bridgeIDs[b]}, Name: fmt.Sprintf("net%03d", b), State: model.StateUp})
	}
	for i := range ports {
		add(&model.Port{Meta: model.Meta{ID: uuid.NewString()}, BridgeID: bridgeIDs[i%bridges], State: model.StateUp,
			HostID: hostIDs[i%hosts], InterfaceName: fmt.Sprintf("vm%06d", i), TunnelKey: uint32(i + 1),
			MAC: packet.MAC{0x02, 0xbe, 0, byte(i >> 16), byte(i >> 8), byte(i)}})
	}
	return objs
}

// BenchmarkMirrorMemory reports what one agent's mirror of the scale
// benchmark's 1,000 hosts × 10,000 ports holds (B/agent: live heap after
// a collection), the part of an agent's memory that grows with the
// topology, and what a full sync costs.
func BenchmarkMirrorMemory(b *testing.B) {
	enc := scaleObjects(b, 1000, 10000, 40)
	self := decodeAll(b, enc[1:2])[0].GetMeta().ID // the first host
	var live []*Mirror
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		// Each mirror gets its own decoded copy, as each agent has.
		b.StopTimer()
		copies := decodeAll(b, enc)
		b.StartTimer()
		m := New(Config{HostID: self, Flows: noFlows{}})
		if err := m.Apply(nsdb.Batch{Reset: true, Objects: copies, Rev: 1}); err != nil {
			b.Fatal(err)
		}
		live = append(live, m)
	}
	b.StopTimer()
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(live)), "B/agent")
	if f := os.Getenv("MIRROR_HEAP"); f != "" { // a heap profile of the mirrors, for pprof
		w, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(w); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	runtime.KeepAlive(live)
}

type noFlows struct{}

func (noFlows) Invalidate(...uint64) int { return 0 }
func (noFlows) Flush() int               { return 0 }
