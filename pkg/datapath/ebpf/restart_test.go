//go:build linux

package ebpf_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/ebpf"
	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"github.com/nagare/nagare/pkg/flow"
)

// switchHandler forwards every miss to the other of two ports, as a
// two-port bridge's simulation would.
type switchHandler struct {
	t     *testing.T
	dp    datapath.Datapath
	ports [2]datapath.PortConfig
	miss  chan flow.Key
}

func (h *switchHandler) Miss(u *datapath.Upcall) {
	out := h.ports[0]
	if u.InPort == out.Index {
		out = h.ports[1]
	}
	acts := []flow.Action{{Type: flow.ActOutput, Port: out.Index, PortID: out.PortID, Interface: out.Interface}}
	if err := h.dp.Install(&datapath.FlowSpec{Key: u.Key, Actions: acts, Tags: []uint64{1}}); err != nil {
		h.t.Errorf("Install: %v", err)
	}
	if err := h.dp.Execute(u.InPort, u.Frame, acts); err != nil {
		h.t.Errorf("Execute: %v", err)
	}
	select {
	case h.miss <- u.Key:
	default:
	}
}

// twoVMs makes a host namespace and two VM namespaces on veths p1 and p2
// (10.<subnet>.0.1 and .2), and a pin directory removed at the end.
func twoVMs(t *testing.T, tag string, subnet int) (host, vm1, vm2 *netnstest.NS, pinDir string) {
	host, vm1, vm2 = netnstest.New(t, tag+"h"), netnstest.New(t, tag+"v"), netnstest.New(t, tag+"v")
	netnstest.Veth(t, host, "p1", vm1, "eth0")
	netnstest.Veth(t, host, "p2", vm2, "eth0")
	vm1.Run(t, "ip", "addr", "add", fmt.Sprintf("10.%d.0.1/24", subnet), "dev", "eth0")
	vm2.Run(t, "ip", "addr", "add", fmt.Sprintf("10.%d.0.2/24", subnet), "dev", "eth0")
	pinDir = filepath.Join("/sys/fs/bpf", fmt.Sprintf("nagare-test-%s%d", tag, os.Getpid()))
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	return host, vm1, vm2, pinDir
}

// TestRestartKeepsForwarding stops a pinned datapath without unpinning
// it, checks that the kernel goes on forwarding real traffic (ping between
// two namespaces) with no agent at all, and that a new instance adopts
// the flows, ports and counters, then takes over.
func TestRestartKeepsForwarding(t *testing.T) {
	host, vm1, _, pinDir := twoVMs(t, "r", 77)
	ports := [2]datapath.PortConfig{{PortID: "p1", Index: 1, Interface: "p1", TunnelKey: 1}, {PortID: "p2", Index: 2, Interface: "p2", TunnelKey: 2}}

	start := func(grace time.Duration) (*ebpf.Datapath, *switchHandler, func()) {
		dp, err := ebpf.New(datapath.Config{Netns: host.Path}, ebpf.Options{PinDir: pinDir, AdoptGrace: grace})
		if err != nil {
			t.Fatal(err)
		}
		h := &switchHandler{t: t, dp: dp, ports: ports, miss: make(chan flow.Key, 64)}
		for _, p := range ports {
			if err := dp.AddPort(p); err != nil {
				t.Fatal(err)
			}
		}
		return dp, h, runDP(t, dp, h)
	}
	// One ping process across both agents and the gap between them: its
	// echo identifier, part of the flow key, stays the same.
	pingDone := make(chan []byte, 1)
	startPing := func() {
		go func() {
			out, err := vm1.Exec("ping", "-c", "50", "-i", "0.1", "-W", "1", "10.77.0.2")
			if err != nil {
				out = append(out, []byte(err.Error())...)
			}
			pingDone <- out
		}()
	}

	dp1, _, stop1 := start(time.Hour)
	startPing()
	time.Sleep(time.Second)
	before := dp1.Stats()
	if before.Flows < 2 {
		t.Fatalf("%d flows after a second of ping, want at least 2 (ICMP both ways)", before.Flows)
	}
	stop1() // Run returns and closes the datapath, pins kept
	// No agent at all for two seconds: the kernel forwards on its own.
	time.Sleep(2 * time.Second)
	if s := dp1.Stats(); s.Flows != 0 {
		t.Errorf("a closed datapath reports %d flows", s.Flows)
	}

	dp2, h2, stop2 := start(500 * time.Millisecond)
	defer func() {
		stop2()
		if err := dp2.Destroy(); err != nil {
			t.Errorf("Destroy: %v", err)
		}
		if _, err := os.Stat(pinDir); !os.IsNotExist(err) {
			t.Errorf("pins left after Destroy: %v", err)
		}
	}()
	if s := dp2.Stats(); s.Flows < before.Flows || s.Hits < before.Hits {
		t.Fatalf("adopted %d flows and %d hits, the first agent had %d and %d", s.Flows, s.Hits, before.Flows, before.Hits)
	}
	// After the grace period the adopted flows go, and are learned again
	// from the misses that follow: the ping loses nothing throughout.
	out := <-pingDone
	if !strings.Contains(string(out), " 0% packet loss") {
		t.Fatalf("ping across the restart lost packets:\n%s", out)
	}
	// The ping may end before the grace period does (loading the programs
	// takes seconds on a loaded machine): traffic after it must miss.
	deadline := time.Now().Add(10 * time.Second)
	for missed := false; !missed; {
		select {
		case <-h2.miss:
			missed = true
		default:
			if time.Now().After(deadline) {
				t.Fatal("no miss after the adopted flows' grace period")
			}
			if out, err := vm1.Exec("ping", "-c", "1", "-W", "1", "10.77.0.2"); err != nil {
				t.Fatalf("ping after the grace period: %v\n%s", err, out)
			}
		}
	}
	if n := dp2.Invalidate(1); n < 2 {
		t.Errorf("Invalidate of the new flows' tag removed %d, want the ICMP flows both ways", n)
	}
}

// TestRestartMigratesLayout starts a pinned datapath, then successors
// whose pinned maps do not fit: one of another layout version (its pins
// moved under an old version's directory) and one with another flow-table
// size. Each rebuilds its maps, takes over the interfaces, and forwards.
func TestRestartMigratesLayout(t *testing.T) {
	host, vm1, _, pinDir := twoVMs(t, "m", 78)
	ports := [2]datapath.PortConfig{{PortID: "p1", Index: 1, Interface: "p1", TunnelKey: 1}, {PortID: "p2", Index: 2, Interface: "p2", TunnelKey: 2}}
	run := func(maxFlows int, last bool) {
		dp, err := ebpf.New(datapath.Config{Netns: host.Path, Flows: datapath.FlowConfig{MaxFlows: maxFlows}},
			ebpf.Options{PinDir: pinDir, AdoptGrace: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		h := &switchHandler{t: t, dp: dp, ports: ports, miss: make(chan flow.Key, 64)}
		for _, p := range ports {
			if err := dp.AddPort(p); err != nil {
				t.Fatal(err)
			}
		}
		stop := runDP(t, dp, h)
		if out, err := vm1.Exec("ping", "-c", "3", "-i", "0.1", "-W", "1", "10.78.0.2"); err != nil {
			t.Fatalf("max flows %d: ping: %v\n%s", maxFlows, err, out)
		}
		if s := dp.Stats(); s.Flows < 2 {
			t.Errorf("max flows %d: %d flows", maxFlows, s.Flows)
		}
		// Old layouts' pins go after the grace period.
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := os.Stat(filepath.Join(pinDir, "v0")); os.IsNotExist(err) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		stop()
		if last {
			if err := dp.Destroy(); err != nil {
				t.Error(err)
			}
		}
	}
	run(0, false)
	// An older layout: what the first instance pinned, under v0.
	cur, err := filepath.Glob(filepath.Join(pinDir, "v*"))
	if err != nil || len(cur) != 1 {
		t.Fatalf("pin directories %v (%v), want one", cur, err)
	}
	if err := os.Rename(cur[0], filepath.Join(pinDir, "v0")); err != nil {
		t.Fatal(err)
	}
	run(0, false)
	if _, err := os.Stat(filepath.Join(pinDir, "v0")); !os.IsNotExist(err) {
		t.Errorf("the old layout's pins are still there: %v", err)
	}
	run(1000, true)
}

// TestRestartKeepsPortIndexes restarts a pinned datapath in the middle of
// a steady stream (ping every 2 ms), as an agent does after a crash: the
// successor reports the ports it adopted (AdoptedPorts) and they are
// attached again at those indexes, in the other order, while the stream
// runs. The stream loses nothing and none of its packets misses: the
// adopted flows, which match on the indexes, forward throughout the
// successor's start (map rewrites, program replacement, port attachment).
func TestRestartKeepsPortIndexes(t *testing.T) {
	host, vm1, _, pinDir := twoVMs(t, "i", 79)
	ports := [2]datapath.PortConfig{{PortID: "p1", Index: 7, Interface: "p1", TunnelKey: 21}, {PortID: "p2", Index: 3, Interface: "p2", TunnelKey: 22}}

	dp1, err := ebpf.New(datapath.Config{Netns: host.Path}, ebpf.Options{PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if err := dp1.AddPort(p); err != nil {
			t.Fatal(err)
		}
	}
	if got := dp1.AdoptedPorts(); len(got) != 0 {
		t.Errorf("a first datapath reports adopted ports %v", got)
	}
	stop1 := runDP(t, dp1, &switchHandler{t: t, dp: dp1, ports: ports, miss: make(chan flow.Key, 64)})
	vm1.Run(t, "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.79.0.2") // ARP and ICMP flows both ways
	pingDone := make(chan []byte, 1)
	go func() {
		out, err := vm1.Exec("ping", "-c", "1500", "-i", "0.002", "-W", "1", "10.79.0.2")
		if err != nil {
			out = append(out, []byte(err.Error())...)
		}
		pingDone <- out
	}()
	time.Sleep(500 * time.Millisecond)
	stop1() // as a crash: the kernel forwards on, pins kept

	dp2, err := ebpf.New(datapath.Config{Netns: host.Path}, ebpf.Options{PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := dp2.Destroy(); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	}()
	adopted := dp2.AdoptedPorts()
	slices.SortFunc(adopted, func(a, b datapath.AdoptedPort) int { return strings.Compare(a.Interface, b.Interface) })
	want := []datapath.AdoptedPort{{Interface: "p1", Index: 7, TunnelKey: 21}, {Interface: "p2", Index: 3, TunnelKey: 22}}
	if !slices.Equal(adopted, want) {
		t.Fatalf("adopted ports %v, want %v", adopted, want)
	}
	h2 := &switchHandler{t: t, dp: dp2, ports: ports, miss: make(chan flow.Key, 64)}
	// Running before the ports come, as the agent's datapath does.
	defer runDP(t, dp2, h2)()
	for _, i := range []int{1, 0} {
		p := ports[i]
		for _, a := range adopted {
			if a.Interface == p.Interface {
				p.Index = a.Index
			}
		}
		if err := dp2.AddPort(p); err != nil {
			t.Fatal(err)
		}
	}
	out := <-pingDone
	if !strings.Contains(string(out), " 0% packet loss") {
		t.Errorf("the stream across the restart lost packets:\n%s", lastLine(out))
	}
	for {
		select {
		case k := <-h2.miss:
			if k.EtherType == 0x0800 && k.Proto == 1 { // ICMP, not ARP (a neighbour check may come any time)
				t.Errorf("the stream missed in the successor: %s", datapath.FormatKey(&k))
			}
			continue
		default:
		}
		break
	}
}

// runDP runs dp with h until the returned stop is called, which waits for
// Run to return (and close the datapath, leaving its pins).
func runDP(t *testing.T, dp *ebpf.Datapath, h datapath.MissHandler) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dp.Run(ctx, h) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// lastLine is ping's summary line.
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Join(lines[max(0, len(lines)-2):], "\n")
}
