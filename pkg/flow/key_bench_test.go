package flow

import (
	"testing"

	"github.com/nagare/nagare/pkg/packet"
)

var (
	sinkKey Key
	sinkInt int
)

func BenchmarkKeyOf(b *testing.B) {
	var p packet.Parsed
	p.Decode(tcp4(&testing.T{}, 40000, nil, "hello"))
	b.ReportAllocs()
	for b.Loop() {
		sinkKey = KeyOf(&p, 7)
	}
}

// BenchmarkKeyMapLookup is the per-packet flow-table hit: decode, key,
// lookup.
func BenchmarkKeyMapLookup(b *testing.B) {
	f := tcp4(&testing.T{}, 40000, nil, "hello")
	var p packet.Parsed
	p.Decode(f)
	table := map[Key]int{}
	for i := range 10000 {
		table[KeyOf(&p, uint32(i))] = i
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Decode(f)
		sinkInt = table[KeyOf(&p, 5000)]
	}
}

// TestKeyOfAllocs: computing a key is on the per-packet path.
func TestKeyOfAllocs(t *testing.T) {
	var p packet.Parsed
	p.Decode(tcp4(t, 40000, nil, "hello"))
	if n := testing.AllocsPerRun(100, func() { sinkKey = KeyOf(&p, 1) }); n != 0 {
		t.Errorf("KeyOf allocates %v times", n)
	}
}
