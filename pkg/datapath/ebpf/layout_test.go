//go:build linux

package ebpf

import (
	"reflect"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/sim"
)

// TestKeyLayouts checks that flow.Key and flowstate.Key have the layout
// of the C structs flow_key and ct_key, as the compiled object's BTF
// describes them: the same size, and every field at the same offset with
// the same size. The kernel datapath looks Go flow keys up byte for byte,
// and hands connection keys back and forth the same way.
func TestKeyLayouts(t *testing.T) {
	spec, err := loadDatapath()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		c     string
		go_   reflect.Type
		names map[string]string // Go field name -> C member name
	}{
		{"flow_key", reflect.TypeOf(flow.Key{}), map[string]string{"SrcIP": "src_ip", "DstIP": "dst_ip", "InPort": "in_port",
			"TunnelID": "tunnel_id", "EthSrc": "eth_src", "EthDst": "eth_dst", "EtherType": "ether_type", "VLAN": "vlan",
			"SrcPort": "src_port", "DstPort": "dst_port", "Proto": "proto", "TOS": "tos", "TTLClass": "ttl_class",
			"Frag": "frag", "pad": "pad"}},
		{"ct_key", reflect.TypeOf(flowstate.Key{}), map[string]string{"Src": "src", "Dst": "dst", "Zone": "zone",
			"SrcPort": "src_port", "DstPort": "dst_port", "Proto": "proto", "Type": "type", "Echo": "echo", "Family": "family"}},
	}
	for _, c := range cases {
		var st *btf.Struct
		if err := spec.Types.TypeByName(c.c, &st); err != nil {
			t.Fatalf("%s not in the object's BTF: %v", c.c, err)
		}
		gt := c.go_
		if uint32(gt.Size()) != st.Size {
			t.Fatalf("%s is %d bytes, C %s %d", gt, gt.Size(), c.c, st.Size)
		}
		members := map[string]btf.Member{}
		for _, m := range st.Members {
			members[m.Name] = m
		}
		if len(members) != gt.NumField() {
			t.Errorf("%s has %d fields, C %s %d members", gt, gt.NumField(), c.c, len(members))
		}
		for i := range gt.NumField() {
			f := gt.Field(i)
			m, ok := members[c.names[f.Name]]
			if !ok {
				t.Errorf("%s.%s has no C member (want %q)", gt, f.Name, c.names[f.Name])
				continue
			}
			size, err := btf.Sizeof(m.Type)
			if err != nil {
				t.Fatal(err)
			}
			if uint32(f.Offset) != m.Offset.Bytes() || int(f.Type.Size()) != size {
				t.Errorf("%s.%s at %d (%d bytes), C %s at %d (%d bytes)", gt, f.Name, f.Offset, f.Type.Size(), m.Name, m.Offset.Bytes(), size)
			}
		}
	}
}

// TestSharedConstants checks the constants Go and C both define.
func TestSharedConstants(t *testing.T) {
	spec, err := loadDatapath()
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int{"counters": numCounters, "drops": numDrops, "exec_slots": execSlots, "ports": maxPorts, "policers": 2 * maxPorts}
	for name, want := range sizes {
		if got := int(spec.Maps[name].MaxEntries); got != want {
			t.Errorf("map %s has %d entries in C, Go expects %d", name, got, want)
		}
	}
	if n := len(actionList{}.Acts); n != maxActs {
		t.Errorf("C MAX_ACTS %d, Go maxActs %d", n, maxActs)
	}
	if n := len(flowValue{}.Ct); n != ctRefs || n < sim.MaxStateKeys {
		t.Errorf("C CT_REFS %d, Go ctRefs %d: a flow must name every entry a walk can read (%d)", n, ctRefs, sim.MaxStateKeys)
	}
	if n := len(kernelConfig{}.CtTimeout); n != flowstate.NumTimeoutClasses {
		t.Errorf("C CT_CLASSES %d, flowstate has %d timeout classes", n, flowstate.NumTimeoutClasses)
	}
}
