//go:build linux

package ebpf

import (
	"reflect"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/nagare/nagare/pkg/flow"
)

// TestFlowKeyLayout checks that flow.Key and the C struct flow_key, as
// the compiled object's BTF describes it, have the same size and every
// field at the same offset with the same size: the kernel datapath looks
// Go keys up byte for byte.
func TestFlowKeyLayout(t *testing.T) {
	spec, err := loadDatapath()
	if err != nil {
		t.Fatal(err)
	}
	var st *btf.Struct
	if err := spec.Types.TypeByName("flow_key", &st); err != nil {
		t.Fatalf("flow_key not in the object's BTF: %v", err)
	}
	gt := reflect.TypeOf(flow.Key{})
	if uint32(gt.Size()) != st.Size {
		t.Fatalf("flow.Key is %d bytes, C flow_key %d", gt.Size(), st.Size)
	}
	// Go field name -> C member name.
	names := map[string]string{"SrcIP": "src_ip", "DstIP": "dst_ip", "InPort": "in_port", "TunnelID": "tunnel_id",
		"EthSrc": "eth_src", "EthDst": "eth_dst", "EtherType": "ether_type", "VLAN": "vlan", "SrcPort": "src_port",
		"DstPort": "dst_port", "Proto": "proto", "TOS": "tos", "TTLClass": "ttl_class", "Frag": "frag", "pad": "pad"}
	members := map[string]btf.Member{}
	for _, m := range st.Members {
		members[m.Name] = m
	}
	if len(members) != gt.NumField() {
		t.Errorf("flow.Key has %d fields, C flow_key %d members", gt.NumField(), len(members))
	}
	for i := range gt.NumField() {
		f := gt.Field(i)
		m, ok := members[names[f.Name]]
		if !ok {
			t.Errorf("flow.Key.%s has no C member (want %q)", f.Name, names[f.Name])
			continue
		}
		size, err := btf.Sizeof(m.Type)
		if err != nil {
			t.Fatal(err)
		}
		if uint32(f.Offset) != m.Offset.Bytes() || int(f.Type.Size()) != size {
			t.Errorf("flow.Key.%s at %d (%d bytes), C %s at %d (%d bytes)", f.Name, f.Offset, f.Type.Size(), m.Name, m.Offset.Bytes(), size)
		}
	}
}

// TestSharedConstants checks the constants Go and C both define.
func TestSharedConstants(t *testing.T) {
	spec, err := loadDatapath()
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int{"counters": numCounters, "drops": numDrops, "exec_slots": execSlots, "ports": maxPorts}
	for name, want := range sizes {
		if got := int(spec.Maps[name].MaxEntries); got != want {
			t.Errorf("map %s has %d entries in C, Go expects %d", name, got, want)
		}
	}
	if n := len(actionList{}.Acts); n != maxActs {
		t.Errorf("C MAX_ACTS %d, Go maxActs %d", n, maxActs)
	}
}
