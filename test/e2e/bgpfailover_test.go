//go:build linux

package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/test/e2e/harness"
)

// The failover scenario: with three uplinks up, one uplink at a time is
// cut in one of four ways and brought back, while every VM pings the
// internet every 10 ms with two ICMP identifiers (16 flows, spread by
// ECMP). The gap of a flow is the longest time between two of its
// answers; the test prints, per event, the worst gap of the flows that
// crossed the cut uplink (found with tcpdump on the upstream's side just
// before the cut) and of the others, for the failover and the failback,
// and fails above maxGap.
const maxGap = time.Second

// failoverEvent cuts uplink k (1-based) one way and restores it.
type failoverEvent struct {
	name    string
	k       int
	hold    time.Duration // how long the uplink stays cut
	cut     func(t *testing.T, bt *bgpTopo)
	restore func(t *testing.T, bt *bgpTopo)
}

var failoverEvents = []failoverEvent{
	{name: "link down", k: 1, hold: 4 * time.Second,
		// The upstream's end of the wire goes down: the gateway's eth1
		// loses its carrier.
		cut:     func(t *testing.T, bt *bgpTopo) { bt.upstream[0].NS.MustRun(t, "ip", "link", "set", "eth0", "down") },
		restore: func(t *testing.T, bt *bgpTopo) { bt.upstream[0].NS.MustRun(t, "ip", "link", "set", "eth0", "up") }},
	// The upstream router's daemons crash: SIGKILLed. Its kernel closes
	// bgpd's session (the gateway sees it end) and BFD falls silent,
	// whichever the gateway notices first.
	upstreamDown("upstream killed", 2, (*harness.FRR).Kill, func(t *testing.T, f *harness.FRR) {
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
	}),
	// The upstream hangs: its daemons stopped (no FIN, no RST, no BFD:
	// only BFD's silence tells the gateway).
	upstreamDown("upstream frozen", 2, (*harness.FRR).Freeze, func(_ *testing.T, f *harness.FRR) { f.Thaw() }),
	{name: "gateway agent SIGKILLed", k: 3, hold: 4 * time.Second,
		cut:     func(t *testing.T, bt *bgpTopo) { bt.gws[2].KillAgent() },
		restore: func(t *testing.T, bt *bgpTopo) { bt.gws[2].StartAgent(t) }},
	{name: "gateway cut from etcd", k: 1, hold: 6 * time.Second, // past its 3 s lease
		cut: func(t *testing.T, bt *bgpTopo) { bt.gws[0].NSDB.Cut() },
		restore: func(t *testing.T, bt *bgpTopo) {
			if err := bt.gws[0].NSDB.Restore(); err != nil {
				t.Fatal(err)
			}
		}},
}

// upstreamDown is upstream k dying by stop and coming back by start:
// nothing forwarded while it is down, its link to the gateway up (only
// the sessions tell the gateway), its link to the internet dark, so that
// the internet's own convergence, which is not the gateway's, is
// immediate.
func upstreamDown(name string, k int, stop func(*harness.FRR), start func(*testing.T, *harness.FRR)) failoverEvent {
	return failoverEvent{name: name, k: k, hold: 4 * time.Second,
		cut: func(t *testing.T, bt *bgpTopo) {
			f := bt.upstream[k-1]
			f.NS.MustRun(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
			stop(f)
			f.NS.MustRun(t, "ip", "link", "set", "eth1", "down")
		},
		restore: func(t *testing.T, bt *bgpTopo) {
			f := bt.upstream[k-1]
			f.NS.MustRun(t, "ip", "link", "set", "eth1", "up")
			f.NS.MustRun(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
			start(t, f)
		}}
}

func testFailover(t *testing.T, bt *bgpTopo) {
	for k := 1; k <= 3; k++ {
		bt.bind(t, k)
	}
	bt.waitUplinks(t, 1, 2, 3)
	var report []string
	for _, ev := range failoverEvents {
		line := bt.runEvent(t, ev)
		report = append(report, line)
		t.Log(line)
	}
	t.Logf("failover gaps (ping -i 0.01, worst flow):\n  %s", strings.Join(report, "\n  "))
}

// failoverRig is a topology whose uplinks are cut under ping: the BGP
// uplinks here, the static ones (staticuplink_test.go).
type failoverRig interface {
	// waitReady waits until every uplink carries traffic again.
	waitReady(t *testing.T)
	// pingVMs are the VMs that ping serverAddr.
	pingVMs() []*harness.VM
	// wire is where uplink k's traffic shows on the upstream's side.
	wire(k int) (*harness.NS, string)
	// failbackDebug says what may explain uplink k's failed failback.
	failbackDebug(k int) string
}

func (bt *bgpTopo) waitReady(t *testing.T)           { bt.waitUplinks(t, 1, 2, 3) }
func (bt *bgpTopo) pingVMs() []*harness.VM           { return bt.vms }
func (bt *bgpTopo) wire(k int) (*harness.NS, string) { return bt.upstream[k-1].NS, "eth0" }

func (bt *bgpTopo) failbackDebug(k int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	d, _ := bt.gws[k-1].NS.Command(ctx, "tcpdump", "-l", "-v", "-n", "-i", "eth1", "udp port 3784").CombinedOutput()
	cancel()
	bfd, _ := bt.upstream[k-1].Vtysh("show bfd peers")
	// And where the way back may end: the upstream's and the
	// internet's tables.
	var tables strings.Builder
	for _, f := range []*harness.FRR{bt.upstream[k-1], bt.inet} {
		for _, c := range []string{"show ip bgp", "show ip route"} {
			out, err := f.Vtysh(c)
			fmt.Fprintf(&tables, "%s: %s (%v):\n%s\n", f.NS.Name, c, err, out)
		}
	}
	return fmt.Sprintf("BFD on the wire:\n%s\n%s\n%s", d, bfd, tables.String())
}

// runEvent cuts and restores one BGP uplink under ping.
func (bt *bgpTopo) runEvent(t *testing.T, ev failoverEvent) string {
	t.Helper()
	return measureFailover(t, bt, ev.name, ev.k, ev.hold, func(t *testing.T) { ev.cut(t, bt) }, func(t *testing.T) { ev.restore(t, bt) })
}

// measureFailover cuts and restores uplink k under ping and returns the
// line that reports its gaps.
func measureFailover(t *testing.T, rig failoverRig, name string, k int, hold time.Duration, cut, restore func(*testing.T)) string {
	t.Helper()
	flows := startPings(t, rig.pingVMs())
	defer func() {
		for _, f := range flows {
			f.bg.Stop()
		}
	}()
	// Every uplink carries traffic before the cut (and a flap while the
	// pings started has passed).
	time.Sleep(time.Second)
	rig.waitReady(t)
	through := flowsThrough(t, rig, k)
	if len(through) == 0 {
		n := 0
		for _, f := range flows {
			n += len(f.replies())
		}
		t.Fatalf("%s: no ping flow crosses uplink %d: nothing to measure (%d answers to %d flows so far)", name, k, n, len(flows))
	}
	t0 := time.Now()
	cut(t)
	cutDone := time.Now()
	time.Sleep(hold)
	// Every flow answers again while the uplink is still cut.
	for _, f := range flows {
		if last := f.lastReply(); time.Since(last) > 500*time.Millisecond {
			t.Errorf("%s on uplink %d: flow %d of %s silent for %s while the uplink is cut", name, k, f.id, f.vm.Name,
				time.Since(last).Round(time.Millisecond))
		}
	}
	t1 := time.Now()
	restore(t)
	// Failback: flows cross the uplink again.
	err := harness.Eventually(30*time.Second, func() error {
		if len(flowsThrough(t, rig, k)) == 0 {
			return fmt.Errorf("no flow crosses uplink %d again", k)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: failback: %v\n%s", name, err, rig.failbackDebug(k))
	}
	back := time.Since(t1)
	time.Sleep(time.Second)
	t2 := time.Now()
	for _, f := range flows {
		f.bg.Stop()
	}
	var downIn, downOut, upIn, upOut time.Duration
	// Where each gap over maxGap lies, in wall-clock time, to be read
	// beside the agents' and the routers' logs.
	var slow []string
	for _, f := range flows {
		r := f.replies()
		d, ds := maxGapIn(r, t0, t1)
		u, us := maxGapIn(r, t1, t2)
		if through[f.id] {
			downIn, upIn = max(downIn, d), max(upIn, u)
		} else {
			downOut, upOut = max(downOut, d), max(upOut, u)
		}
		for _, g := range []struct {
			what string
			d    time.Duration
			from time.Time
		}{{"failover", d, ds}, {"failback", u, us}} {
			if g.d > maxGap {
				slow = append(slow, fmt.Sprintf("flow %d of %s (through it: %v): %s gap %d ms from %s",
					f.id, f.vm.Name, through[f.id], g.what, g.d.Milliseconds(), g.from.UTC().Format("15:04:05.000")))
			}
		}
	}
	line := fmt.Sprintf("%-24s uplink %d: failover gap %4d ms (worst of %2d flows through it; others %3d ms), failback gap %4d ms (others %3d ms), back after %.1f s",
		name, k, downIn.Milliseconds(), len(through), downOut.Milliseconds(), upIn.Milliseconds(), upOut.Milliseconds(), back.Seconds())
	if len(slow) > 0 {
		t.Errorf("%s\n  cut from %s to %s, restored from %s, measured until %s (UTC)\n  %s", line,
			t0.UTC().Format("15:04:05.000"), cutDone.UTC().Format("15:04:05.000"), t1.UTC().Format("15:04:05.000"),
			t2.UTC().Format("15:04:05.000"), strings.Join(slow, "\n  "))
	}
	return line
}

// pingFlow is one ping of a VM, with its own ICMP identifier.
type pingFlow struct {
	vm *harness.VM
	id int
	bg *harness.Bg
}

// startPings starts two pings per VM, every 10 ms, timestamped.
func startPings(t *testing.T, vms []*harness.VM) []*pingFlow {
	t.Helper()
	var out []*pingFlow
	for i, vm := range vms {
		for j := range 2 {
			id := 1000 + 10*i + j
			out = append(out, &pingFlow{vm: vm, id: id,
				// Line-buffered: a ping stopped with SIGKILL must not take
				// its last answers with it.
				bg: vm.Background(t, "stdbuf", "-oL", "ping", "-D", "-n", "-i", "0.01", "-W", "1", "-e", strconv.Itoa(id), serverAddr)})
		}
	}
	return out
}

// replies are the times of the flow's answers.
func (f *pingFlow) replies() []time.Time {
	var out []time.Time
	for _, ev := range harness.ParsePingTimeline(f.bg.Output()) {
		if ev.Reply {
			out = append(out, ev.At)
		}
	}
	return out
}

func (f *pingFlow) lastReply() time.Time {
	r := f.replies()
	if len(r) == 0 {
		return time.Time{}
	}
	return r[len(r)-1]
}

// maxGapIn is the longest silence between answers that overlaps [from,
// to]: from the last answer before from to the first after it, and so on.
// It returns the silence and when it began.
func maxGapIn(replies []time.Time, from, to time.Time) (time.Duration, time.Time) {
	var g time.Duration
	var at time.Time
	prev := time.Time{}
	for _, r := range replies {
		if !prev.IsZero() && r.After(from) && !prev.After(to) && r.Sub(prev) > g {
			g, at = r.Sub(prev), prev
		}
		prev = r
	}
	if !prev.IsZero() && prev.Before(to) && to.Sub(prev) > g {
		g, at = to.Sub(prev), prev
	}
	return g, at
}

var icmpID = regexp.MustCompile(`ICMP echo (?:request|reply), id (\d+),`)

// flowsThrough lists the ping flows seen on uplink k's wire, either way,
// in 400 packets (or two seconds) of capture on the upstream's side.
func flowsThrough(t *testing.T, rig failoverRig, k int) map[int]bool {
	t.Helper()
	return flowsMatching(t, rig, k, "icmp")
}

// flowsMatching lists the ping flows of the packets filter (tcpdump's)
// matches on uplink k's wire.
func flowsMatching(t *testing.T, rig failoverRig, k int, filter string) map[int]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ns, iface := rig.wire(k)
	out, err := ns.Command(ctx, "tcpdump", "-l", "-n", "-c", "400", "-i", iface, filter).Output()
	if err != nil && ctx.Err() == nil { // the capture ends by its deadline
		t.Fatalf("tcpdump on %s of %s: %v", iface, ns.Name, err)
	}
	ids := map[int]bool{}
	for _, m := range icmpID.FindAllStringSubmatch(string(out), -1) {
		if id, err := strconv.Atoi(m[1]); err == nil {
			ids[id] = true
		}
	}
	return ids
}
