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
// CPU 1. It reports flows installed per second over one-second windows,
// and the agent side's CPU time per flow (the process's less the
// generator thread's), which a busy machine disturbs far less;
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
	var (
		start          uint64
		agentCPU       time.Duration // the process's CPU time less the generator thread's
		agentFlows     uint64
		genCPU, procT0 time.Duration
	)
	for b.Loop() {
		gen := make(chan error, 1)
		first := dp.Stats()
		procT0 = processCPU(b)
		go func() {
			gen <- vms.Do(func() error {
				var set unix.CPUSet
				set.Set(0)
				if err := unix.SchedSetaffinity(0, &set); err != nil {
					return err
				}
				t0 := threadCPU(b)
				_, err := bench.RunFlowGen(ctx, bench.FlowGenConfig{Interface: "v1", DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
					SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, SrcIP: netip.MustParseAddr("10.9.0.1"), DstIP: netip.MustParseAddr("10.9.0.2"),
					Duration: 1500 * time.Millisecond, Start: start})
				genCPU = threadCPU(b) - t0
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
		// The agent's CPU per flow over the generator's whole run and the
		// upcalls it left behind: on a shared machine the rate above is
		// what CPU the process got, this is what a flow costs.
		time.Sleep(100 * time.Millisecond)
		agentCPU += processCPU(b) - procT0 - genCPU
		agentFlows += dp.Stats().FlowsInstalled - first.FlowsInstalled
		dt := t1.Sub(t0).Seconds()
		b.ReportMetric(float64(after.FlowsInstalled-before.FlowsInstalled)/dt, "flows/s")
		b.ReportMetric(float64(after.Misses-before.Misses)/dt, "misses/s")
		b.ReportMetric(float64(after.Lost-before.Lost)/dt, "lost/s")
	}
	if agentFlows > 0 {
		perFlow := float64(agentCPU.Nanoseconds()) / float64(agentFlows)
		b.ReportMetric(perFlow/1000, "agent-µs/flow")
		b.ReportMetric(1e9/perFlow, "flows/s/agent-core")
	}
	if errs > 0 {
		b.Errorf("%d Install or Execute errors", errs)
	}
}

// processCPU returns the CPU time (user and system) of the process.
func processCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// threadCPU returns the CPU time of the calling thread.
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
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
