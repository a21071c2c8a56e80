package agent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
	"github.com/nagare/nagare/pkg/packet"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// testNSDB is a real NSDB (embedded etcd) for in-process agents.
func testNSDB(t *testing.T) *nsdb.Store {
	t.Helper()
	s := nsdb.New(nsdbtest.Start(t))
	if err := s.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// inProcess is one agent running in the test's process on an in-memory
// datapath: no root, no kernel interfaces.
type inProcess struct {
	host   *memory.Host
	dp     *memory.Datapath
	id     string
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t *testing.T, db *nsdb.Store, hub *memory.Hub, name string, tunnelIP netip.Addr) *inProcess {
	t.Helper()
	a := &inProcess{host: memory.NewHost(hub), reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	a.dp = memory.New(datapath.Config{}, a.host)
	ready := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	cfg := Config{HostName: name, TunnelIP: tunnelIP, Datapath: memory.Name, LeaseTTL: 2 * time.Second, Log: quiet}
	go func() {
		a.done <- RunWith(ctx, cfg, Options{Datapath: a.dp, NSDB: db, Registerer: a.reg, Ready: func(id string) { ready <- id }})
	}()
	select {
	case a.id = <-ready:
	case err := <-a.done:
		t.Fatalf("agent %s: %v", name, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("agent %s did not register", name)
	}
	t.Cleanup(func() { a.stop(t) })
	return a
}

func (a *inProcess) stop(t *testing.T) {
	a.cancel()
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("agent: %v", err)
		}
		a.done <- nil // a second stop finds it stopped
	case <-time.After(20 * time.Second):
		t.Error("the agent did not stop within 20 s of its context's end")
	}
}

func create[O model.Object](t *testing.T, db *nsdb.Store, o O) O {
	t.Helper()
	c, err := db.Create(context.Background(), o)
	if err != nil {
		t.Fatalf("create %T: %v", o, err)
	}
	return c.(O)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s", what)
		}
	}
}

func recv(t *testing.T, i *memory.Interface, what string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := i.Recv(ctx)
	if err != nil {
		t.Fatalf("%s: nothing out of %s: %v", what, i.Name(), err)
	}
	return f
}

func probe(t *testing.T, p packet.Probe) []byte {
	t.Helper()
	b := make([]byte, 256)
	n, err := packet.BuildProbe(b, &p)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

// twoSubnets creates bridges on 10.0.1.0/24 and 10.0.2.0/24 joined by
// router r (created as given), and a VM port on each bound to host's
// interfaces vm1 and vm2. It returns the router's ports, .1 of each.
func twoSubnets(t *testing.T, db *nsdb.Store, host string, r *model.Router) (ra, rb *model.Port) {
	t.Helper()
	ba := create(t, db, &model.Bridge{Name: "a"})
	bb := create(t, db, &model.Bridge{Name: "b"})
	r = create(t, db, r)
	ra = create(t, db, &model.Port{RouterID: r.ID, Address: ip("10.0.1.1"), Network: netip.MustParsePrefix("10.0.1.0/24")})
	rb = create(t, db, &model.Port{RouterID: r.ID, Address: ip("10.0.2.1"), Network: netip.MustParsePrefix("10.0.2.0/24")})
	create(t, db, &model.Port{BridgeID: ba.ID, PeerID: ra.ID})
	create(t, db, &model.Port{BridgeID: bb.ID, PeerID: rb.ID})
	create(t, db, &model.Route{RouterID: r.ID, Dst: netip.MustParsePrefix("10.0.1.0/24"), PortID: ra.ID})
	create(t, db, &model.Route{RouterID: r.ID, Dst: netip.MustParsePrefix("10.0.2.0/24"), PortID: rb.ID})
	create(t, db, &model.Port{BridgeID: ba.ID, HostID: host, InterfaceName: "vm1"})
	create(t, db, &model.Port{BridgeID: bb.ID, HostID: host, InterfaceName: "vm2"})
	return ra, rb
}

// addVMs adds the interfaces vm1 and vm2 to a's host and waits until
// both are attached to the ports bound to them.
func (a *inProcess) addVMs(t *testing.T) (vm1, vm2 *memory.Interface) {
	t.Helper()
	vm1, err := a.host.AddInterface("vm1")
	if err != nil {
		t.Fatal(err)
	}
	vm2, err = a.host.AddInterface("vm2")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both VM ports attached", func() bool { return len(a.dp.Stats().Ports) == 2 })
	return vm1, vm2
}

// answerARP sends out of vm the reply, from mac, to the ARP request req
// and returns it.
func answerARP(t *testing.T, vm *memory.Interface, req *packet.Parsed, mac packet.MAC) []byte {
	t.Helper()
	reply := make([]byte, 64)
	n, err := packet.BuildARPReply(reply, req, mac)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Send(reply[:n]); err != nil {
		t.Fatal(err)
	}
	return reply[:n]
}

// TestAgentRoutesInMemory runs a whole agent in the test's process over
// a memory datapath and a real NSDB: two bridges joined by a router, a
// VM on each, bound to this host before their interfaces exist. The
// router answers the first VM's ARP; a ping to the second VM waits for
// the router's ARP request to be answered, then arrives rewritten.
func TestAgentRoutesInMemory(t *testing.T) {
	db := testNSDB(t)
	a := startAgent(t, db, nil, "hv1", netip.Addr{})
	ra, rb := twoSubnets(t, db, a.id, &model.Router{Name: "r"})
	// The VMs' interfaces appear after their bindings, as taps do.
	time.Sleep(200 * time.Millisecond)
	vm1, vm2 := a.addVMs(t)

	mac1, mac2 := packet.MAC{2, 0, 0, 0, 1, 1}, packet.MAC{2, 0, 0, 0, 2, 2}
	arp := probe(t, packet.Probe{EthSrc: mac1, EthDst: packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ARP: true, Src: ip("10.0.1.11"), Dst: ip("10.0.1.1")})
	if err := vm1.Send(arp); err != nil {
		t.Fatal(err)
	}
	var p packet.Parsed
	p.Decode(recv(t, vm1, "the router's ARP reply"))
	if p.L3 != packet.L3ARP || p.ARPOp != 2 || p.ARPSenderIP != ip("10.0.1.1") || p.ARPSenderMAC != ra.MAC {
		t.Fatalf("not the router's reply: %+v", p)
	}

	ping := probe(t, packet.Probe{EthSrc: mac1, EthDst: ra.MAC, Src: ip("10.0.1.11"), Dst: ip("10.0.2.12"), Proto: packet.IPProtoICMPv4, SrcPort: 9})
	if err := vm1.Send(ping); err != nil {
		t.Fatal(err)
	}
	p.Decode(recv(t, vm2, "the router's ARP request"))
	if p.L3 != packet.L3ARP || p.ARPOp != 1 || p.ARPTargetIP != ip("10.0.2.12") {
		t.Fatalf("not the router's request for 10.0.2.12: %+v", p)
	}
	answerARP(t, vm2, &p, mac2)
	want := probe(t, packet.Probe{EthSrc: rb.MAC, EthDst: mac2, Src: ip("10.0.1.11"), Dst: ip("10.0.2.12"),
		Proto: packet.IPProtoICMPv4, SrcPort: 9, TTL: 63})
	if got := recv(t, vm2, "the routed ping"); !bytes.Equal(got, want) {
		t.Fatalf("routed ping\n got %x\nwant %x", got, want)
	}
	// The agent's metrics are in the registry it was given.
	mfs, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"nagare_agent_upcalls_total", "nagare_datapath_hits_total", "nagare_flowstate_entries", "nagare_agent_flows_invalidated_total"} {
		if !names[n] {
			t.Errorf("metric %s not registered", n)
		}
	}
	st, err := db.DatapathStatus(context.Background(), a.id)
	for err != nil || len(st.Ports) != 2 {
		time.Sleep(100 * time.Millisecond)
		st, err = db.DatapathStatus(context.Background(), a.id)
	}
	if st.Datapath != memory.Name || st.Misses == 0 {
		t.Errorf("published status %+v", st)
	}
}

// TestTwoAgentsInMemory runs two agents in one process, each with a
// memory datapath on one in-memory underlay: a broadcast from a VM on one
// host reaches the VM of the same bridge on the other through a VXLAN
// tunnel with the egress port's key, and the answer comes back unicast.
func TestTwoAgentsInMemory(t *testing.T) {
	db := testNSDB(t)
	hub := memory.NewHub()
	u1, u2 := ip("10.99.0.1"), ip("10.99.0.2")
	h1, h2 := startAgent(t, db, hub, "hv1", u1), startAgent(t, db, hub, "hv2", u2)
	tz := create(t, db, &model.TunnelZone{Name: "tz", Type: model.TunnelVXLAN})
	create(t, db, &model.TunnelZoneMember{TunnelZoneID: tz.ID, HostID: h1.id, Address: u1})
	create(t, db, &model.TunnelZoneMember{TunnelZoneID: tz.ID, HostID: h2.id, Address: u2})
	br := create(t, db, &model.Bridge{Name: "net"})
	vm1, err := h1.host.AddInterface("tapvm1")
	if err != nil {
		t.Fatal(err)
	}
	vm2, err := h2.host.AddInterface("tapvm2")
	if err != nil {
		t.Fatal(err)
	}
	create(t, db, &model.Port{BridgeID: br.ID, HostID: h1.id, InterfaceName: "tapvm1"})
	p2 := create(t, db, &model.Port{BridgeID: br.ID, HostID: h2.id, InterfaceName: "tapvm2"})
	waitFor(t, "ports attached on both hosts", func() bool {
		return len(h1.dp.Stats().Ports) == 1 && len(h2.dp.Stats().Ports) == 1
	})

	mac1, mac2 := packet.MAC{2, 0, 0, 0, 1, 1}, packet.MAC{2, 0, 0, 0, 2, 2}
	capture := hub.Capture()
	defer capture.Close()
	arp := probe(t, packet.Probe{EthSrc: mac1, EthDst: packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ARP: true, Src: ip("10.0.0.1"), Dst: ip("10.0.0.2")})
	// Until both agents have their tunnels, the flood has nowhere to go.
	var got []byte
	waitFor(t, "the broadcast reaches the other host's VM", func() bool {
		if err := vm1.Send(arp); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		got, err = vm2.Recv(ctx)
		return err == nil
	})
	if !bytes.Equal(got, arp) {
		t.Fatalf("flooded %x, want %x", got, arp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		d, err := capture.Next(ctx)
		if err != nil {
			t.Fatal("no VXLAN datagram seen on the underlay")
		}
		if key, inner, err := packet.DecapVXLAN(d.Payload); err == nil && bytes.Equal(inner, arp) {
			if d.Src != u1 || d.Dst != u2 || key != p2.TunnelKey {
				t.Fatalf("flood on the wire %s > %s key %d, want %s > %s key %d", d.Src, d.Dst, key, u1, u2, p2.TunnelKey)
			}
			break
		}
	}
	var p packet.Parsed
	p.Decode(arp)
	reply := answerARP(t, vm2, &p, mac2)
	if got := recv(t, vm1, "the unicast answer"); !bytes.Equal(got, reply) {
		t.Fatalf("answer %x, want %x", got, reply)
	}
	if s1, s2 := h1.dp.Stats(), h2.dp.Stats(); s1.VXLAN.TxPackets == 0 || s2.VXLAN.RxPackets == 0 || s2.VXLAN.TxPackets == 0 {
		t.Fatalf("tunnel counters: hv1 tx %d, hv2 rx %d tx %d", s1.VXLAN.TxPackets, s2.VXLAN.RxPackets, s2.VXLAN.TxPackets)
	}

	// An agent stopping stops everything it started: its host goes.
	h2.stop(t)
	waitFor(t, "hv2 no longer alive", func() bool {
		alive, err := db.AliveHosts(context.Background())
		return err == nil && !alive[h2.id] && alive[h1.id]
	})
}

// A datapath name nobody registered is refused before anything starts.
func TestUnknownDatapath(t *testing.T) {
	err := Run(context.Background(), Config{HostName: "x", Datapath: "nosuch", Log: quiet})
	if err == nil || !strings.Contains(err.Error(), `datapath "nosuch" is not available`) || !strings.Contains(err.Error(), "ebpf") {
		t.Fatalf("Run with --datapath nosuch: %v, want an error listing the datapaths there are", err)
	}
}
