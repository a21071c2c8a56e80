//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/nagare/nagare/test/e2e/harness"
)

// The fault tests break one thing at a time while traffic flows — an etcd
// member, the whole NSDB, the server mid-write, a hypervisor's underlay
// link, an agent's watch across a compaction — and check that nothing
// that should keep working stops, and that everything catches up after.
// They run in parallel with each other (each has its own environment).

// flow is a ping running in the background from one VM to another, one
// probe every 100 ms, whose losses are counted at the end.
type flow struct {
	bg      *harness.Bg
	from    *harness.VM
	to      string
	backlog uint64 // the kernel's backlog drops when it started
}

func startFlow(t *testing.T, from *harness.VM, to string) *flow {
	t.Helper()
	from.WaitPing(t, to, 15*time.Second)
	backlog, err := harness.BacklogDrops()
	if err != nil {
		t.Fatal(err)
	}
	return &flow{bg: from.Background(t, "ping", "-n", "-D", "-O", "-i", "0.1", "-W", "1", to), from: from, to: to, backlog: backlog}
}

// stop ends the ping and returns how many probes it sent and which went
// unanswered. "no answer yet" (-O) only says a reply is late; a probe is
// lost when no reply ever came (the last second's probes, whose replies
// the stop may have cut off, are not counted).
func (f *flow) stop() (sent int, lost []harness.PingEvent) {
	f.bg.Stop()
	evs := harness.ParsePingTimeline(f.bg.Output())
	if len(evs) == 0 {
		return 0, nil
	}
	end := evs[len(evs)-1].At.Add(-time.Second)
	replied, seen := map[int]bool{}, map[int]harness.PingEvent{}
	for _, ev := range evs {
		if ev.Reply {
			replied[ev.Seq] = true
		}
		if _, ok := seen[ev.Seq]; !ok && ev.At.Before(end) {
			seen[ev.Seq] = ev
		}
	}
	for seq, ev := range seen {
		if !replied[seq] {
			lost = append(lost, ev)
		}
	}
	return len(seen), lost
}

// noLoss fails the test if the flow lost any probe. The failure says
// whether the kernel dropped packets in its shared input backlog
// meanwhile (other processes' traffic can fill it; see
// harness.BacklogDrops), which points at the machine rather than at
// Nagare.
func (f *flow) noLoss(t *testing.T, what string) {
	t.Helper()
	sent, lost := f.stop()
	if sent < 10 || len(lost) > 0 {
		slices.SortFunc(lost, func(a, b harness.PingEvent) int { return a.At.Compare(b.At) })
		var when []string
		for _, ev := range lost {
			when = append(when, ev.At.Format("15:04:05.0")+" "+ev.Text)
		}
		backlog := "unknown"
		if n, err := harness.BacklogDrops(); err == nil {
			backlog = strconv.FormatUint(n-f.backlog, 10)
		}
		t.Errorf("%s → %s during %s: %d probes, %d lost (the kernel's input backlog dropped %s packets meanwhile, anyone's):\n%s",
			f.from.Name, f.to, what, sent, len(lost), backlog, strings.Join(when, "\n"))
		return
	}
	t.Logf("%s → %s during %s: %d probes, none lost", f.from.Name, f.to, what, sent)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestFaultEtcdMemberKilled: one of three etcd members is SIGKILLed and
// restarted while traffic flows: the API keeps answering writes, the
// agents keep watching (a port bound during the outage forwards), and no
// probe is lost.
func TestFaultEtcdMemberKilled(t *testing.T) {
	t.Parallel()
	tp := newTopologyWith(t, harness.Options{EtcdCluster: 3})
	vm11, vm12, vm22 := tp.vm["vm11"], tp.vm["vm12"], tp.vm["vm22"]
	f := startFlow(t, vm11, vm12.Addr)
	for member := range tp.Etcd.Size() {
		if err := tp.Etcd.Kill(member); err != nil {
			t.Fatal(err)
		}
		// Writes go on (an election may take a moment: the server answers
		// 503 meanwhile and the client tries again).
		var br struct{ ID string }
		if err := harness.Eventually(15*time.Second, func() error {
			return tp.Call("POST", "/api/v1/bridges", map[string]any{"name": fmt.Sprintf("during-outage-%d", member)}, &br)
		}); err != nil {
			t.Fatalf("member %d down: the API refuses writes: %v", member, err)
		}
		// The agents still watch: vm22's port moves to a new binding and
		// back, and traffic to it follows.
		tp.MustCLI(t, "host %s delete binding interface %s", vm22.Host.Alias, vm22.Tap)
		tp.MustCLI(t, "host %s add binding interface %s port %s", vm22.Host.Alias, vm22.Tap, tp.port["vm22"])
		vm11.WaitPing(t, vm22.Addr, 15*time.Second)
		if err := tp.Etcd.Restart(member); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := tp.Etcd.WaitHealthy(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	f.noLoss(t, "each etcd member killed and restarted in turn")
	for _, h := range tp.Hosts {
		if info, err := tp.HostByName(h.Name); err != nil || !info.Alive {
			t.Errorf("host %s after the member restarts: %+v %v", h.Name, info, err)
		}
	}
}

// TestFaultNSDBOutage: every etcd member is down for 30 s. The agents keep
// forwarding the topology they have — established flows and new ones —
// the API answers 503 (and /healthz says so), and when etcd returns the
// hosts are alive again and a change made then reaches the datapaths.
func TestFaultNSDBOutage(t *testing.T) {
	t.Parallel()
	tp := newTopologyWith(t, harness.Options{EtcdCluster: 3})
	vm11, vm12, vm21, vm22 := tp.vm["vm11"], tp.vm["vm12"], tp.vm["vm21"], tp.vm["vm22"]
	established := startFlow(t, vm11, vm12.Addr)
	for member := range tp.Etcd.Size() {
		if err := tp.Etcd.Kill(member); err != nil {
			t.Fatal(err)
		}
	}
	down := time.Now()
	t.Logf("NSDB down at %s", down.Format("15:04:05.0"))
	defer func() { t.Logf("NSDB back at %s", time.Now().Format("15:04:05.0")) }()
	if err := harness.Eventually(20*time.Second, func() error {
		if st := tp.Health(); st != 503 {
			return fmt.Errorf("/healthz %d", st)
		}
		return nil
	}); err != nil {
		t.Errorf("NSDB down: %v, want 503", err)
	}
	var he *harness.HTTPError
	if err := tp.Call("POST", "/api/v1/bridges", map[string]any{"name": "no-nsdb"}, nil); !errors.As(err, &he) || he.Status != 503 {
		t.Errorf("a write with the NSDB down: %v, want 503", err)
	}
	// A flow that did not exist before: simulated on the topology the
	// agents hold (routed, across hosts).
	newFlow := startFlow(t, vm21, vm12.Addr)
	for time.Since(down) < 30*time.Second {
		time.Sleep(time.Second)
		for _, h := range tp.Hosts {
			if h.AgentExited() {
				t.Fatalf("agent %s exited with the NSDB down:\n%s", h.Name, lastLines(h.AgentLog(), 30))
			}
		}
	}
	for member := range tp.Etcd.Size() {
		if err := tp.Etcd.Restart(member); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := tp.Etcd.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("NSDB healthy again at %s", time.Now().Format("15:04:05.0"))
	// Everything catches up while the flows go on: the hosts are alive
	// (their agents resume their leases, which etcd kept: had one lapsed,
	// its peers would stop tunnelling to it until it registered again),
	// the API writes, and a change reaches the agents (vm22 unbound:
	// traffic to it stops).
	if err := harness.Eventually(30*time.Second, func() error {
		for _, h := range tp.Hosts {
			info, err := tp.HostByName(h.Name)
			if err != nil {
				return err
			}
			if !info.Alive {
				return fmt.Errorf("host %s not alive", h.Name)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	time.Sleep(3 * time.Second) // the lease's TTL: a host that lapsed would look dead by now
	for _, h := range tp.Hosts {
		for _, l := range strings.Split(h.AgentLog(), "\n") {
			if strings.Contains(l, "liveness lease resumed") || strings.Contains(l, "liveness lease lost") {
				t.Logf("%s: %s", h.Name, l)
			}
		}
	}
	established.noLoss(t, "a 30 s NSDB outage and the catch-up (established flow)")
	newFlow.noLoss(t, "a 30 s NSDB outage and the catch-up (flow started during it)")
	vm11.WaitPing(t, vm22.Addr, 10*time.Second)
	tp.MustCLI(t, "host %s delete binding interface %s", vm22.Host.Alias, vm22.Tap)
	if err := harness.Eventually(10*time.Second, func() error {
		if r := vm11.Ping(vm22.Addr, 1, "0.2"); r.Received != 0 {
			return fmt.Errorf("still answered")
		}
		return nil
	}); err != nil {
		t.Fatalf("a change after the outage did not reach the agents: %v", err)
	}
}

// TestFaultServerKilledMidWrite: nagare-server (with its embedded etcd) is
// SIGKILLed while clients write. Every write is one etcd transaction: after
// the restart each bridge a client was told exists has its port (written
// in one request: a router port with its peer), no bridge port exists
// without its peer, and a client got either an answer or an error for
// each request, never a success for a write that is not there.
func TestFaultServerKilledMidWrite(t *testing.T) {
	t.Parallel()
	tp := newTopology(t)
	var r struct{ ID string }
	if err := tp.Call("POST", "/api/v1/routers", map[string]any{"name": "crash"}, &r); err != nil {
		t.Fatal(err)
	}
	type result struct {
		bridge, port string
	}
	var (
		mu      sync.Mutex
		done    []result
		errs    atomic.Int64
		stopped atomic.Bool
		wg      sync.WaitGroup
	)
	for c := range 4 {
		wg.Go(func() {
			for i := 0; !stopped.Load(); i++ {
				// A linked pair: the router port and a bridge port whose
				// peer it is, created in one request (one transaction).
				var br, rp, bp struct{ ID string }
				if err := tp.Call("POST", "/api/v1/bridges", map[string]any{"name": fmt.Sprintf("c%d-%d", c, i)}, &br); err != nil {
					errs.Add(1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				if err := tp.Call("POST", "/api/v1/routers/"+r.ID+"/ports", map[string]any{"address": fmt.Sprintf("10.%d.%d.1", 100+c, i%250),
					"network": fmt.Sprintf("10.%d.%d.0/24", 100+c, i%250)}, &rp); err != nil {
					errs.Add(1)
					continue
				}
				if err := tp.Call("POST", "/api/v1/bridges/"+br.ID+"/ports", map[string]any{"peer_id": rp.ID}, &bp); err != nil {
					errs.Add(1)
					continue
				}
				mu.Lock()
				done = append(done, result{br.ID, bp.ID})
				mu.Unlock()
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	tp.KillServer()
	time.Sleep(500 * time.Millisecond)
	stopped.Store(true)
	wg.Wait()
	tp.RestartServer(t)
	t.Logf("%d linked pairs confirmed before the kill, %d requests failed", len(done), errs.Load())
	if len(done) == 0 {
		t.Fatal("no write completed before the kill: the test proves nothing")
	}
	// Every confirmed write is there, linked both ways.
	for _, d := range done {
		var bp struct {
			PeerID string `json:"peer_id"`
		}
		if err := tp.Call("GET", "/api/v1/ports/"+d.port, nil, &bp); err != nil {
			t.Fatalf("confirmed port %s lost: %v", d.port, err)
		}
		var rp struct {
			PeerID string `json:"peer_id"`
		}
		if err := tp.Call("GET", "/api/v1/ports/"+bp.PeerID, nil, &rp); err != nil || rp.PeerID != d.port {
			t.Fatalf("confirmed link %s ↔ %s half there: %+v %v", d.port, bp.PeerID, rp, err)
		}
	}
	// No half-written link anywhere: every port with a peer is its peer's.
	var ports []struct {
		ID     string `json:"id"`
		PeerID string `json:"peer_id"`
	}
	if err := tp.Call("GET", "/api/v1/ports", nil, &ports); err != nil {
		t.Fatal(err)
	}
	peer := map[string]string{}
	for _, p := range ports {
		peer[p.ID] = p.PeerID
	}
	for id, q := range peer {
		if q != "" && peer[q] != id {
			t.Errorf("port %s names peer %s, which names %q: a partial write", id, q, peer[q])
		}
	}
	// And the agents, which lost their NSDB with the server, carry on.
	tp.vm["vm11"].WaitPing(t, tp.vm["vm22"].Addr, 20*time.Second)
}

// TestFaultUnderlayFlap: a hypervisor's underlay link goes down and up
// three times; traffic across hosts stops while it is down and comes back
// each time, with the flows the agents had.
func TestFaultUnderlayFlap(t *testing.T) {
	t.Parallel()
	tp := newTopology(t)
	vm11, vm12 := tp.vm["vm11"], tp.vm["vm12"]
	hv2 := tp.Host("hv2")
	vm11.WaitPing(t, vm12.Addr, 10*time.Second)
	for flap := range 3 {
		if err := hv2.SetUnderlay(false); err != nil {
			t.Fatal(err)
		}
		if r := vm11.Ping(vm12.Addr, 3, "0.2"); r.Received != 0 {
			t.Fatalf("flap %d: answers with hv2's underlay down:\n%s", flap, r.Output)
		}
		if err := hv2.SetUnderlay(true); err != nil {
			t.Fatal(err)
		}
		vm11.WaitPing(t, vm12.Addr, 10*time.Second)
		if r := vm11.Ping(vm12.Addr, 10, "0.1"); r.Received != r.Sent || r.Sent == 0 {
			t.Fatalf("flap %d: after the link came back, %d of %d answered:\n%s", flap, r.Received, r.Sent, r.Output)
		}
	}
	if hv2.AgentExited() {
		t.Fatal("hv2's agent exited over the flaps")
	}
}

// TestFaultCompactionRelist: an agent is frozen (its watch and lease stop)
// while the topology changes, the NSDB restarts (its watch stream is cut)
// and etcd compacts the history it would resume from. Thawed, it finds the
// history gone, lists again, and forwards by the topology as it now is.
func TestFaultCompactionRelist(t *testing.T) {
	t.Parallel()
	tp := newTopology(t)
	vm11, vm12, vm22 := tp.vm["vm11"], tp.vm["vm12"], tp.vm["vm22"]
	hv2 := tp.Host("hv2")
	vm12.WaitPing(t, vm11.Addr, 10*time.Second)
	if err := hv2.FreezeAgent(); err != nil {
		t.Fatal(err)
	}
	thawed := false
	defer func() {
		if !thawed {
			_ = hv2.ThawAgent()
		}
	}()
	// While hv2's agent sleeps: vm11's port (on hv1) is unbound, and many
	// writes push the revision on; then etcd compacts everything before.
	tp.MustCLI(t, "host %s delete binding interface %s", vm11.Host.Alias, vm11.Tap)
	for i := range 20 {
		tp.MustCLI(t, "create bridge name filler%d", i)
	}
	// A frozen watcher's stream stays open and etcd would deliver it the
	// events it kept: the restart cuts it, so the agent must resume.
	tp.KillServer()
	tp.RestartServer(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{tp.EtcdURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rev, err := cli.Get(ctx, "compact-me")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, rev.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if err := hv2.ThawAgent(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	// The relisted topology has vm11 unbound: hv2 no longer reaches it.
	// Before, its flows and topology said vm11 was on hv1.
	if err := harness.Eventually(20*time.Second, func() error {
		if r := vm12.Ping(vm11.Addr, 1, "0.2"); r.Received != 0 {
			return fmt.Errorf("vm12 still reaches vm11")
		}
		return nil
	}); err != nil {
		t.Fatalf("after the relist: %v\n%s", err, lastLines(hv2.AgentLog(), 20))
	}
	if !strings.Contains(hv2.AgentLog(), "compacted") {
		t.Errorf("hv2's agent did not log the compaction it relisted after:\n%s", lastLines(hv2.AgentLog(), 20))
	}
	// And it follows changes again: vm11 bound back, reached from hv2.
	tp.MustCLI(t, "host %s add binding interface %s port %s", vm11.Host.Alias, vm11.Tap, tp.port["vm11"])
	vm12.WaitPing(t, vm11.Addr, 15*time.Second)
	vm22.WaitPing(t, vm11.Addr, 15*time.Second)
}
