//go:build linux

package ebpf_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/bench"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/ebpf"
	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"github.com/nagare/nagare/pkg/flow"
)

// BenchmarkFlowSetup measures the upcall path alone: a VM sends frames
// that each carry a new 5-tuple as fast as its socket takes them, and a
// miss handler that does what the agent does after simulating (install a
// flow, execute the packet) handles them. As nagare-bench's split
// placement, the generator runs on CPU 0 and the rest of the process on
// CPU 1. It reports flows installed per second over one-second windows;
// profile it with -cpuprofile to see where the agent side of flow setup
// goes (nagare-bench datapath's flow-setup rows measure the whole agent).
func BenchmarkFlowSetup(b *testing.B) {
	host, vms := netnstest.New(b, "fh"), netnstest.New(b, "fv")
	netnstest.Veth(b, host, "p1", vms, "v1")
	netnstest.Veth(b, host, "p2", vms, "v2")
	dp, err := ebpf.New(datapath.Config{Netns: host.Path, Flows: datapath.FlowConfig{MaxFlows: 1 << 20}}, ebpf.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ports := []datapath.PortConfig{{PortID: "p1", Index: 1, Interface: "p1", TunnelKey: 1}, {PortID: "p2", Index: 2, Interface: "p2", TunnelKey: 2}}
	for _, p := range ports {
		if err := dp.AddPort(p); err != nil {
			b.Fatal(err)
		}
	}
	acts := []flow.Action{{Type: flow.ActOutput, Port: 2, PortID: "p2", Interface: "p2"}}
	var errs int
	h := datapath.MissFunc(func(u *datapath.Upcall) {
		if dp.Install(&datapath.FlowSpec{Key: u.Key, Actions: acts, Tags: []uint64{1, 2, 3}}) != nil {
			errs++
		}
		if dp.Execute(u.InPort, u.Frame, acts) != nil {
			errs++
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dp.Run(ctx, h) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	if err := pinThreads(1); err != nil {
		b.Skip(err)
	}
	var start uint64
	for b.Loop() {
		gen := make(chan error, 1)
		go func() {
			gen <- vms.Do(func() error {
				var set unix.CPUSet
				set.Set(0)
				if err := unix.SchedSetaffinity(0, &set); err != nil {
					return err
				}
				_, err := bench.RunFlowGen(ctx, bench.FlowGenConfig{Interface: "v1", DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
					SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, SrcIP: netip.MustParseAddr("10.9.0.1"), DstIP: netip.MustParseAddr("10.9.0.2"),
					Duration: 1500 * time.Millisecond, Start: start})
				return err
			})
		}()
		start += 10_000_000
		time.Sleep(500 * time.Millisecond)
		before, t0 := dp.Stats(), time.Now()
		time.Sleep(time.Second)
		after, t1 := dp.Stats(), time.Now()
		if err := <-gen; err != nil {
			b.Fatal(err)
		}
		dt := t1.Sub(t0).Seconds()
		b.ReportMetric(float64(after.FlowsInstalled-before.FlowsInstalled)/dt, "flows/s")
		b.ReportMetric(float64(after.Misses-before.Misses)/dt, "misses/s")
		b.ReportMetric(float64(after.Lost-before.Lost)/dt, "lost/s")
	}
	if errs > 0 {
		b.Errorf("%d Install or Execute errors", errs)
	}
}

// pinThreads pins every thread of the process to cpu (threads made later
// inherit it from the thread that makes them).
func pinThreads(cpu int) error {
	if runtime.NumCPU() < 2 {
		return fmt.Errorf("needs 2 CPUs, have %d", runtime.NumCPU())
	}
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return err
		}
	}
	return nil
}
