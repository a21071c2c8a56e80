package bench

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// The lab touches the host: namespaces, veths, processes. These tests run
// as root only, and check that what a run sets up works and that nothing
// is left behind; they assert no timings.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	if testing.Short() {
		t.Skip("creates network namespaces")
	}
}

func labNamespaces(prefix string) []string {
	entries, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestLabTopologySetupAndTeardown(t *testing.T) {
	needRoot(t)
	l, err := newLab(t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	tb, err := kernelBridge(l) // pings across the bridge before it returns
	if err != nil {
		t.Fatal(err)
	}
	if got := labNamespaces(l.prefix); len(got) != 3 {
		t.Fatalf("namespaces %v, want the bridge case's 3", got)
	}
	rx0, _, err := l.devStats(tb.dst.NS, tb.dst.Dev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.exec(tb.src.NS, "ping", "-c", "3", "-i", "0.05", "-q", tb.dst.IP); err != nil {
		t.Fatal(err)
	}
	rx1, _, err := l.devStats(tb.dst.NS, tb.dst.Dev)
	if err != nil {
		t.Fatal(err)
	}
	if rx1 < rx0+3 {
		t.Errorf("sink rx_packets went from %d to %d over 3 pings", rx0, rx1)
	}
	if err := tb.place(l, ModeSplit); err != nil {
		t.Fatal(err)
	}
	if out, _ := l.exec(tb.rps[0].ns, "cat", "/sys/class/net/"+tb.rps[0].dev+"/queues/rx-0/rps_cpus"); !strings.Contains(out, "2") {
		t.Errorf("split mode: rps_cpus of %v = %q, want CPU1", tb.rps[0], out)
	}

	p, err := l.start("sleeper", tb.src.NS, "0", nil, "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if !p.exited() {
		t.Error("Close left a process running")
	}
	if got := labNamespaces(l.prefix); len(got) != 0 {
		t.Errorf("Close left namespaces %v", got)
	}
}

func TestLabRemovesNamespacesOfDeadRuns(t *testing.T) {
	needRoot(t)
	dead := 0
	for pid := 4194000; pid > 100000; pid-- {
		if unix.Kill(pid, 0) == unix.ESRCH {
			dead = pid
			break
		}
	}
	stale := fmt.Sprintf("nbench%d-stale", dead)
	if err := run("ip", "netns", "add", stale); err != nil {
		t.Fatal(err)
	}
	defer run("ip", "netns", "del", stale) //nolint:errcheck // already gone when the test passes
	l, err := newLab(t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := labNamespaces(stale); len(got) != 0 {
		t.Errorf("namespace %s of dead run %d not removed", stale, dead)
	}
}

func TestFlowGenSendsANewFlowPerFrame(t *testing.T) {
	needRoot(t)
	l, err := newLab(t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := l.netns("fg-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.netns("fg-b")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.veth(a, "tx", b, "rx", 0); err != nil {
		t.Fatal(err)
	}
	cfg := FlowGenConfig{Interface: "tx", DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		SrcIP: netip.MustParseAddr("10.9.0.1"), DstIP: netip.MustParseAddr("10.9.0.2"), Rate: 10000, Duration: 200 * time.Millisecond}
	var res FlowGenResult
	err = inNetns(a, func() error {
		var err error
		res, err = RunFlowGen(t.Context(), cfg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Sent > 4000 {
		t.Errorf("paced at 10k/s for 0.2 s, sent %d", res.Sent)
	}
	rx, _, err := l.devStats(b, "rx")
	if err != nil {
		t.Fatal(err)
	}
	// A few more: the interfaces' own IPv6 neighbour discovery.
	if rx < res.Sent || rx > res.Sent+20 {
		t.Errorf("peer received %d frames, generator sent %d", rx, res.Sent)
	}
}

func TestFlowFramesAreValidAndDistinct(t *testing.T) {
	f := make([]byte, flowGenLen)
	writeFlowFrame(f, net.HardwareAddr{2, 0, 0, 0, 0, 2}, net.HardwareAddr{2, 0, 0, 0, 0, 1}, [4]byte{10, 1, 0, 1}, [4]byte{10, 1, 0, 2})
	seen := map[flow.Key]uint64{}
	for _, n := range []uint64{0, 1, 2, flowGenPorts - 1, flowGenPorts, flowGenPorts + 1, 5 * flowGenPorts, uint64(len(flowGenHosts))*flowGenPorts - 1} {
		setFlow(f, n)
		var p packet.Parsed
		p.Decode(f)
		if p.Drop != packet.DropNone || p.L4 != packet.L4UDP || p.DstPort != 9 {
			t.Fatalf("flow %d: decoded %v, L4 %v, dport %d", n, p.Drop, p.L4, p.DstPort)
		}
		if ipChecksum(f[14:34]) != 0 {
			t.Errorf("flow %d: bad IP header checksum", n)
		}
		if a := p.SrcIP.As4(); a[0] != 10 || a[1] != 1 || a[2] != 0 {
			t.Errorf("flow %d: source %s left 10.1.0.0/24", n, p.SrcIP)
		}
		k := flow.KeyOf(&p, 1)
		if prev, dup := seen[k]; dup {
			t.Errorf("flows %d and %d have the same key", prev, n)
		}
		seen[k] = n
	}
}

func TestTableHelpers(t *testing.T) {
	if s := newStat([]float64{3, 1, 2}); s.Median != 2 || s.Min != 1 || s.Max != 3 {
		t.Errorf("newStat odd: %+v", s)
	}
	if s := newStat([]float64{4, 1, 2, 3}); s.Median != 2.5 {
		t.Errorf("newStat even: median %v", s.Median)
	}
	m := benchMetrics("BenchmarkSimulateBridgeRouterBridge-2   	 1437598	       834.2 ns/op	   1198737 walks/s	       0 B/op	       0 allocs/op")
	if m["ns/op"] != 834.2 || m["allocs/op"] != 0 || m["walks/s"] != 1198737 {
		t.Errorf("benchMetrics: %v", m)
	}
	for v, want := range map[float64]string{1234567: "1.23M", 123456: "123k", 1234: "1.2k", 12: "12"} {
		if got := fmtCount(v); got != want {
			t.Errorf("fmtCount(%v) = %s, want %s", v, got, want)
		}
	}
}

func TestForeignCPU(t *testing.T) {
	// Two CPUs, 100 ticks each over the window.
	cpus := func(user, sys uint64) [][8]uint64 {
		return [][8]uint64{{user, 0, sys, 100 - user - sys}, {0, 0, 0, 100}}
	}
	a := cpuSnap{cpus: [][8]uint64{{}, {}}, ownUser: 0, others: map[int]uint64{7: 50, 8: 0}}
	for _, c := range []struct {
		name string
		b    cpuSnap
		want float64
	}{
		{"our agent's user time is not foreign", cpuSnap{cpus: cpus(40, 20), ownUser: 40, others: map[int]uint64{7: 50}}, 0},
		{"a compiler that came and went", cpuSnap{cpus: cpus(30, 0), others: map[int]uint64{7: 50}}, 15},
		{"another datapath's system time", cpuSnap{cpus: cpus(0, 60), others: map[int]uint64{7: 50, 8: 40}}, 20},
		{"a process started in the window", cpuSnap{cpus: cpus(0, 60), others: map[int]uint64{7: 50, 9: 10}}, 5},
	} {
		if got := a.to(c.b).Foreign; got != c.want {
			t.Errorf("%s: foreign %.1f%%, want %.1f%%", c.name, got, c.want)
		}
	}
}
