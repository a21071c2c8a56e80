//go:build linux

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/test/e2e/harness"
)

// Timing assertions allow this much on top of the 1 s target: the machine
// is shared, and the measurement includes starting the CLI process.
const slack = 500 * time.Millisecond

// TestRouteChange changes routes under a cross-subnet ping (every 0.2 s):
// the flows installed for it must be invalidated, so that traffic stops
// within a second of the change that cuts it and comes back within a
// second of the change that restores it.
//
// Routes are explicit (MidoNet's native model): the subnet of router port
// 10.0.2.1 is reached only through the route "dst 10.0.2.0/24", so deleting
// it cuts vm11 off from vm22 and re-adding it restores the path — the
// issue's scenario. Also covered: a route to a prefix behind a gateway VM,
// and a more specific blackhole route added and deleted.
func TestRouteChange(t *testing.T) {
	t.Parallel()
	tp := newTopology(t)
	vm11, vm22 := tp.vm["vm11"], tp.vm["vm22"]

	t.Run("DeleteAndReaddSubnetRoute", func(t *testing.T) {
		vm11.WaitPing(t, "10.0.2.12", 10*time.Second)
		flip(t, vm11, "10.0.2.12", "delete the route to 10.0.2.0/24", func() {
			tp.MustCLI(t, "router router0 delete route %s", routeAlias(t, tp, "dst 10.0.2.0/24"))
		}, "add it back", func() {
			tp.MustCLI(t, "router router0 add route dst 10.0.2.0/24 port %s", tp.rport["10.0.2.0/24"])
		}, "Net Unreachable")
	})
	t.Run("DeleteAndReaddGatewayRoute", func(t *testing.T) {
		// 10.0.3.12 lives on vm22, behind the router via gateway 10.0.2.12.
		vm22.NS.MustRun(t, "ip", "addr", "add", "10.0.3.12/32", "dev", "lo")
		tp.MustCLI(t, "router router0 add route dst 10.0.3.0/24 gw 10.0.2.12 port %s", tp.rport["10.0.2.0/24"])
		vm11.WaitPing(t, "10.0.3.12", 10*time.Second)
		var alias string
		flip(t, vm11, "10.0.3.12", "delete the route", func() {
			alias = routeAlias(t, tp, "dst 10.0.3.0/24")
			tp.MustCLI(t, "router router0 delete route %s", alias)
			if out := tp.MustCLI(t, "router router0 list route"); strings.Contains(out, "dst 10.0.3.0/24") {
				t.Fatalf("route still listed after delete:\n%s", out)
			}
		}, "add it back", func() {
			tp.MustCLI(t, "router router0 add route dst 10.0.3.0/24 gw 10.0.2.12 port %s", tp.rport["10.0.2.0/24"])
		}, "Net Unreachable")
	})
	t.Run("AddAndDeleteBlackholeRoute", func(t *testing.T) {
		vm11.WaitPing(t, "10.0.2.12", 10*time.Second)
		flip(t, vm11, "10.0.2.12", "add a blackhole route 10.0.2.12/32", func() {
			tp.MustCLI(t, "router router0 add route dst 10.0.2.12/32 type blackhole")
		}, "delete it", func() {
			tp.MustCLI(t, "router router0 delete route %s", routeAlias(t, tp, "dst 10.0.2.12/32"))
		}, "")
	})
}

// routeAlias finds the alias of router0's route whose line contains match.
func routeAlias(t *testing.T, tp *topo, match string) string {
	t.Helper()
	out := tp.MustCLI(t, "router router0 list route")
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.Contains(line+" ", match+" ") {
			return f[1]
		}
	}
	t.Fatalf("no route with %q:\n%s", match, out)
	return ""
}

// flip pings dst from vm every 0.2 s, cuts the path 2 s in, restores it 3 s
// later, and checks that the replies stop within 1 s (+slack) of the cut
// and resume within 1 s (+slack) of the restore. When answer is set, the
// router must have said so (e.g. "Net Unreachable") during the cut.
func flip(t *testing.T, vm *harness.VM, dst, cutWhat string, cut func(), restoreWhat string, restore func(), answer string) {
	t.Helper()
	ping := vm.Background(t, "ping", "-n", "-D", "-O", "-i", "0.2", "-W", "1", "-c", "40", dst)
	time.Sleep(2 * time.Second)
	tCut := time.Now()
	cut()
	cutTook := time.Since(tCut)
	time.Sleep(3 * time.Second)
	tRestore := time.Now()
	restore()
	restoreTook := time.Since(tRestore)
	if err := ping.Wait(30 * time.Second); err != nil && !strings.Contains(ping.Output(), "packets transmitted") {
		t.Fatalf("ping: %v\n%s", err, ping.Output())
	}
	var lastBefore, firstAfter time.Time
	answers, late := 0, 0
	for _, ev := range harness.ParsePingTimeline(ping.Output()) {
		switch {
		case ev.Reply && ev.At.Before(tRestore):
			lastBefore = ev.At
			if ev.At.After(tCut.Add(time.Second + slack)) {
				late++
			}
		case ev.Reply && firstAfter.IsZero():
			firstAfter = ev.At
		case answer != "" && strings.Contains(ev.Text, answer):
			answers++
		}
	}
	t.Logf("%s at +0 (CLI %s): last reply %+.2fs; %s at %+.2fs (CLI %s): first reply %+.2fs after",
		cutWhat, cutTook.Round(time.Millisecond), lastBefore.Sub(tCut).Seconds(), restoreWhat,
		tRestore.Sub(tCut).Seconds(), restoreTook.Round(time.Millisecond), firstAfter.Sub(tRestore).Seconds())
	if lastBefore.IsZero() || lastBefore.Before(tCut.Add(-time.Second)) {
		t.Errorf("no replies just before the change (last at %v): the ping did not run as planned", lastBefore)
	}
	if late > 0 {
		t.Errorf("traffic did not stop within 1 s (+%s slack) after we %s: last reply %.2fs after, %d replies later than that",
			slack, cutWhat, lastBefore.Sub(tCut).Seconds(), late)
	}
	if answer != "" && answers == 0 {
		t.Errorf("no %q answer from the router while the path was cut", answer)
	}
	if firstAfter.IsZero() || firstAfter.After(tRestore.Add(time.Second+slack)) {
		t.Errorf("traffic did not resume within 1 s (+%s slack) after we %s: first reply %.2fs after",
			slack, restoreWhat, firstAfter.Sub(tRestore).Seconds())
	}
	if t.Failed() {
		t.Logf("ping output:\n%s", ping.Output())
	}
}

// TestUnbindRebind unbinds VM ports (with the CLI, and with the API) while
// they are in use: their traffic must stop; binding them again restores it.
func TestUnbindRebind(t *testing.T) {
	t.Parallel()
	tp := newTopology(t)
	src, dst := tp.vm["vm11"], tp.vm["vm12"] // on hv1 and hv2
	src.WaitPing(t, dst.Addr, 10*time.Second)

	stopped := func(t *testing.T, what string) {
		t.Helper()
		// The agent learns of the change through etcd: allow a moment,
		// then demand silence.
		err := harness.Eventually(5*time.Second, func() error {
			if r := src.Ping(dst.Addr, 3, "0.2"); r.Received != 0 {
				return fmt.Errorf("%d/%d answered", r.Received, r.Sent)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("traffic still flows 5 s after %s: %v", what, err)
		}
		if r := src.Ping(dst.Addr, 5, "0.2"); r.Received != 0 {
			t.Fatalf("traffic came back after %s without a new binding:\n%s", what, r.Output)
		}
	}
	rebind := func(t *testing.T, vm *harness.VM) {
		t.Helper()
		tp.MustCLI(t, "host %s add binding interface %s port %s", vm.Host.Alias, vm.Tap, tp.port[vm.Name])
		src.WaitPing(t, dst.Addr, 10*time.Second)
		mustPing(t, src, dst.Addr, 5)
	}

	t.Run("CLI", func(t *testing.T) {
		// The destination's port, bound on the other host.
		tp.MustCLI(t, "host %s delete binding interface %s", dst.Host.Alias, dst.Tap)
		if out := tp.MustCLI(t, "host %s list binding", dst.Host.Alias); strings.Contains(out, dst.Tap) {
			t.Fatalf("binding still listed after delete:\n%s", out)
		}
		stopped(t, "unbinding "+dst.Tap)
		rebind(t, dst)
	})
	t.Run("API", func(t *testing.T) {
		// The source's port, bound on the pinger's own host.
		if err := tp.Call("DELETE", "/api/v1/hosts/"+src.Host.ID+"/bindings/"+src.Tap, nil, nil); err != nil {
			t.Fatal(err)
		}
		stopped(t, "unbinding "+src.Tap)
		rebind(t, src)
	})
}

// TestAgentRestart kills an agent with SIGKILL: its host must show alive
// false within 5 s (the liveness lease), its peers stop tunnelling to it
// once its datapath stops answering their echo probes too — at once with
// the userspace datapath, which dies with the agent; with the kernel
// datapath, which outlives it, only when its pins are removed too (its
// programs detach, as when the host dies) — traffic to its VMs stops
// while the other host's own traffic carries on, and a restarted agent
// brings everything back.
func TestAgentRestart(t *testing.T) {
	t.Parallel()
	tp := newTopology(t)
	hv2 := tp.Host("hv2")
	vm11, vm12 := tp.vm["vm11"], tp.vm["vm12"]
	vm11.WaitPing(t, vm12.Addr, 10*time.Second)
	vm11.WaitPing(t, "10.0.2.11", 10*time.Second) // vm21, on hv1 too

	alive := func() (string, error) {
		out, err := tp.CLI("list host")
		if err != nil {
			return "", err
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "name hv2 ") || strings.HasSuffix(line, "name hv2") {
				f := strings.Fields(line)
				for i := 0; i+1 < len(f); i++ {
					if f[i] == "alive" {
						return f[i+1], nil
					}
				}
				return "", fmt.Errorf("no alive column: %q", line)
			}
		}
		return "", fmt.Errorf("hv2 not listed:\n%s", out)
	}
	if a, err := alive(); err != nil || a != "true" {
		t.Fatalf("before the kill: list host says alive %q (%v)", a, err)
	}

	kill := time.Now()
	hv2.KillAgent()
	var seen time.Duration
	err := harness.Eventually(8*time.Second, func() error {
		a, err := alive()
		if err != nil {
			return err
		}
		if a != "false" {
			return fmt.Errorf("alive %s", a)
		}
		seen = time.Since(kill)
		return nil
	})
	if err != nil {
		t.Fatalf("list host after SIGKILL of hv2's agent: %v", err)
	}
	t.Logf("list host shows hv2 alive false %.1fs after the kill", seen.Seconds())
	if seen > 5*time.Second {
		t.Errorf("hv2 shown dead %.1fs after the kill, want ≤ 5 s", seen.Seconds())
	}
	t.Logf("list host:\n%s", tp.MustCLI(t, "list host"))
	toHV2 := "(udp port 4789 or ip proto 47) and dst host " + hv2.TunnelIP
	if harness.Datapath() == "ebpf" {
		// hv2's kernel datapath forwards without its agent and answers
		// hv1's echo probes: hv1 keeps tunnelling to it (the replies of
		// a new ping miss there, with no agent to simulate them).
		time.Sleep(time.Second)
		capt := harness.StartCapture(t, tp.Underlay, "br0", toHV2)
		vm11.Ping(vm12.Addr, 3, "0.2")
		if data := tunnelData(capt.Stop(t)); len(data) == 0 {
			t.Errorf("hv1 stopped tunnelling to hv2, whose kernel datapath still answers")
		}
		if !strings.Contains(tp.Host("hv1").AgentLog(), "its datapath answers: still reachable") {
			t.Errorf("hv1 did not find hv2's datapath answering:\n%s", lastLines(tp.Host("hv1").AgentLog(), 30))
		}
		// Now the datapath dies too: the probes go unanswered, and the
		// lease, ended, is the backstop.
		if err := hv2.RemoveDatapath(); err != nil {
			t.Fatal(err)
		}
	}
	// Its peers stop tunnelling to it: hv1's flows to vm12 were
	// invalidated when hv1 cut it (its lease ended and its datapath does
	// not answer: within the probes' detection time, 0.6 s), and the walks
	// that replace them (and floods) leave the dead host out. The agents
	// learn of the death from the same etcd watch as the API; a second
	// covers the delivery and the probes.
	time.Sleep(time.Second)
	capt := harness.StartCapture(t, tp.Underlay, "br0", toHV2)
	if r := vm11.Ping(vm12.Addr, 3, "0.2"); r.Received != 0 {
		t.Errorf("vm12 answers while its host's agent is dead:\n%s", r.Output)
	}
	if pkts := capt.Stop(t); len(pkts) != 0 {
		t.Errorf("hv1 still tunnels to dead hv2 (%d packets), e.g. %s", len(pkts), pkts[0])
	}
	mustPing(t, vm11, "10.0.2.11", 3) // hv1 alone is unaffected

	restart := time.Now()
	hv2.StartAgent(t)
	if a, err := alive(); err != nil || a != "true" {
		t.Errorf("after the restart: list host says alive %q (%v)", a, err)
	}
	vm11.WaitPing(t, vm12.Addr, 15*time.Second)
	t.Logf("traffic to vm12 back %.1fs after the agent restarted", time.Since(restart).Seconds())
	mustPing(t, vm11, vm12.Addr, 5)
	mustPing(t, tp.vm["vm22"], "10.0.1.11", 5) // routed, from the restarted host
}

// tunnelData are the tunnel packets of pkts that carry data: not the
// agents' probes or flow state, whose keys are the two highest of 24 bits.
func tunnelData(pkts []harness.Encap) []harness.Encap {
	var out []harness.Encap
	for _, p := range pkts {
		if p.Key != 0 && p.Key < 1<<24-2 {
			out = append(out, p)
		}
	}
	return out
}
