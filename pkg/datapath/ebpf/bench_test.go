//go:build linux

package ebpf

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"github.com/nagare/nagare/pkg/flow"
)

// memlock reads the kernel's account of a map's memory (fdinfo memlock,
// which for a hash map without preallocation follows its elements).
func memlock(tb testing.TB, m *ebpf.Map) uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "memlock:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatal("no memlock in fdinfo")
	return 0
}

// BenchmarkInstall installs flows (distinct 5-tuples, one shared action
// list, as a VM's connections to one server) and reports the kernel
// memory each flow takes in the flow map.
func BenchmarkInstall(b *testing.B) {
	host, vms := netnstest.New(b, "bi"), netnstest.New(b, "bv")
	netnstest.Veth(b, host, "p1", vms, "v1")
	netnstest.Veth(b, host, "p2", vms, "v2")
	dp, err := New(datapath.Config{Netns: host.Path, Flows: datapath.FlowConfig{MaxFlows: 1 << 20}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer dp.Close()
	for i, n := range []string{"p1", "p2"} {
		if err := dp.AddPort(datapath.PortConfig{PortID: n, Index: int32(i + 1), Interface: n, TunnelKey: uint32(i + 1)}); err != nil {
			b.Fatal(err)
		}
	}
	acts := []flow.Action{{Type: flow.ActSetEthDst, MAC: [6]byte{2, 0, 0, 0, 0, 2}}, {Type: flow.ActDecTTL, Count: 1},
		{Type: flow.ActOutput, Port: 2, PortID: "p2", Interface: "p2"}}
	before := memlock(b, dp.objs.Flows)
	spec := datapath.FlowSpec{Actions: acts, Tags: []uint64{1, 2, 3}}
	spec.Key.InPort = 1
	spec.Key.EtherType = 0x0800
	spec.Key.Proto = 6
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		spec.Key.SrcPort, spec.Key.DstPort = uint16(n), uint16(n>>16)
		spec.Key.SrcIP[15] = byte(n >> 32)
		if err := dp.Install(&spec); err != nil {
			b.Fatal(err)
		}
		n++
	}
	if flows := dp.Stats().Flows; flows > 0 {
		b.ReportMetric(float64(memlock(b, dp.objs.Flows)-before)/float64(flows), "kernel-bytes/flow")
	}
}
