//go:build linux

package dptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/afpacket"
	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// Factory creates the datapath under test. cfg.Netns is the namespace of
// the "host" it serves; cfg.Flows carries the test's timeouts and caps.
// The factory registers no cleanup of its own: the suite closes the
// datapath.
type Factory func(t *testing.T, cfg datapath.Config) datapath.Datapath

// Generous bounds for things that must happen; never assertions on speed.
const (
	arriveTimeout = 5 * time.Second
	// quietPeriod is how long a frame that must not arrive is waited for.
	quietPeriod = 400 * time.Millisecond
)

// host is one simulated hypervisor: a namespace with the datapath's ports
// (and underlay interface), a second namespace with the VMs' ends of the
// veth pairs, and a running datapath with a scripted miss handler.
type host struct {
	t    *testing.T
	name string
	ns   *netnstest.NS
	vms  *netnstest.NS
	dp   datapath.Datapath
	miss *handler
}

func newHost(t *testing.T, newDP Factory, name string, flows datapath.FlowConfig) *host {
	t.Helper()
	h := &host{t: t, name: name, ns: netnstest.New(t, name), vms: netnstest.New(t, name+"vm"), miss: newHandler()}
	h.dp = newDP(t, datapath.Config{Netns: h.ns.Path, Flows: flows})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.dp.Run(ctx, h.miss) }()
	// Cleanups run last-in first-out: this one runs before the namespaces
	// (registered earlier) are deleted.
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Run: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s: Run did not return 10 s after its context was cancelled", name)
		}
	})
	return h
}

// vm is a bound port and the VM end of its veth, on which the test sends
// and captures raw frames.
type vm struct {
	t   *testing.T
	cfg datapath.PortConfig
	io  *afpacket.Port
}

// addVM creates a veth pair ("t<name>" in the host, "v<name>" in the VM
// namespace), binds the host end as a port, and opens the VM end.
func (h *host) addVM(name string, index int32, key uint32) *vm {
	t := h.t
	t.Helper()
	netnstest.Veth(t, h.ns, "t"+name, h.vms, "v"+name)
	cfg := datapath.PortConfig{PortID: "port-" + name, Index: index, Interface: "t" + name, TunnelKey: key}
	if err := h.dp.AddPort(cfg); err != nil {
		t.Fatalf("%s: AddPort(%+v): %v", h.name, cfg, err)
	}
	io, err := afpacket.OpenInNetns(h.vms.Path, "v"+name, afpacket.Options{PollTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { io.Close() })
	return &vm{t: t, cfg: cfg, io: io}
}

func (v *vm) send(frames ...[]byte) {
	v.t.Helper()
	if n, err := v.io.WriteBatch(frames); err != nil || n != len(frames) {
		v.t.Fatalf("send on %s: sent %d of %d: %v", v.cfg.Interface, n, len(frames), err)
	}
}

// recv returns the next test frame (one from a test MAC) arriving at the
// VM within d, or nil. The kernel sends nothing on these links (no
// addresses, IPv6 off), but the filter keeps stray frames from mattering.
func (v *vm) recv(d time.Duration) []byte {
	bufs, sizes := [][]byte{make([]byte, 9216)}, []int{0}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n, err := v.io.ReadBatch(bufs, sizes)
		if errors.Is(err, afpacket.ErrTimeout) {
			continue
		}
		if err != nil {
			v.t.Fatalf("receive on %s: %v", v.cfg.Interface, err)
		}
		if n == 1 && isTestFrame(bufs[0][:sizes[0]]) {
			return append([]byte(nil), bufs[0][:sizes[0]]...)
		}
	}
	return nil
}

// expect waits for want to arrive, byte for byte.
func (v *vm) expect(what string, want []byte) {
	v.t.Helper()
	got := v.recv(arriveTimeout)
	switch {
	case got == nil:
		v.t.Fatalf("%s: nothing arrived at %s within %v", what, v.cfg.Interface, arriveTimeout)
	case !bytes.Equal(got, want):
		v.t.Fatalf("%s: wrong frame at %s:\n got %x\nwant %x", what, v.cfg.Interface, got, want)
	}
}

// expectNone checks that no test frame arrives for quietPeriod.
func (v *vm) expectNone(what string) {
	v.t.Helper()
	if got := v.recv(quietPeriod); got != nil {
		v.t.Fatalf("%s: unexpected frame at %s: %x", what, v.cfg.Interface, got)
	}
}

// Test MACs are locally administered with a fixed prefix, 02:d7:...
var (
	macVM1  = packet.MAC{0x02, 0xd7, 0, 0, 0, 1}
	macVM2  = packet.MAC{0x02, 0xd7, 0, 0, 0, 2}
	macRtr  = packet.MAC{0x02, 0xd7, 0, 0, 0xfe, 1}
	macRtr2 = packet.MAC{0x02, 0xd7, 0, 0, 0xfe, 2}
)

func isTestFrame(f []byte) bool {
	return len(f) >= 12 && f[6] == 0x02 && f[7] == 0xd7
}

// flowFrame returns a distinct test flow's frame: flows differ by UDP
// source port.
func flowFrame(sport uint16) []byte {
	return UDP{SrcMAC: macVM1, DstMAC: macVM2, Src: netip.MustParseAddr("10.0.0.1"),
		Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: sport, DstPort: 7}.Frame()
}

// upcall is a recorded miss.
type upcall struct {
	InPort int32
	PortID string
	Key    flow.Key
	Frame  []byte
}

// handler is the scripted MissHandler: it records every miss and then runs
// the current script, which usually installs a flow and executes the
// packet, as the agent would after simulating.
type handler struct {
	mu      sync.Mutex
	script  func(u *datapath.Upcall)
	upcalls chan upcall
	states  chan stateMsg
}

func newHandler() *handler {
	return &handler{upcalls: make(chan upcall, 4096), states: make(chan stateMsg, 64)}
}

// stateMsg is a flow-state packet the handler received.
type stateMsg struct {
	from    netip.Addr
	payload []byte
}

// State implements datapath.StateHandler: it records the packet.
func (h *handler) State(from netip.Addr, payload []byte) {
	select {
	case h.states <- stateMsg{from, append([]byte(nil), payload...)}:
	default:
	}
}

func (h *handler) Miss(u *datapath.Upcall) {
	select {
	case h.upcalls <- upcall{u.InPort, u.PortID, u.Key, append([]byte(nil), u.Frame...)}:
	default:
	}
	h.mu.Lock()
	s := h.script
	h.mu.Unlock()
	if s != nil {
		s(u)
	}
}

func (h *handler) setScript(s func(u *datapath.Upcall)) {
	h.mu.Lock()
	h.script = s
	h.mu.Unlock()
}

// next waits for the next upcall.
func (h *handler) next(t *testing.T, what string) upcall {
	t.Helper()
	select {
	case u := <-h.upcalls:
		return u
	case <-time.After(arriveTimeout):
		t.Fatalf("%s: no upcall within %v", what, arriveTimeout)
		return upcall{}
	}
}

// none checks that no upcall happens for quietPeriod.
func (h *handler) none(t *testing.T, what string) {
	t.Helper()
	select {
	case u := <-h.upcalls:
		t.Fatalf("%s: unexpected upcall on port %d: %x", what, u.InPort, u.Frame)
	case <-time.After(quietPeriod):
	}
}

// forward returns a script that installs a flow with acts (and tags) for
// every miss and executes the packet with them.
func forward(t *testing.T, dp datapath.Datapath, class datapath.FlowClass, tags []uint64, acts ...flow.Action) func(u *datapath.Upcall) {
	return func(u *datapath.Upcall) {
		if err := dp.Install(&datapath.FlowSpec{Key: u.Key, Actions: acts, Tags: tags, Class: class}); err != nil {
			t.Errorf("Install: %v", err)
		}
		if err := dp.Execute(u.InPort, u.Frame, acts); err != nil {
			t.Errorf("Execute: %v", err)
		}
	}
}

func output(v *vm) flow.Action {
	return flow.Action{Type: flow.ActOutput, Port: v.cfg.Index, PortID: v.cfg.PortID, Interface: v.cfg.Interface}
}

// eventually polls cond until it holds or arriveTimeout passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(2 * arriveTimeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %v: %s", what, 2*arriveTimeout, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flowByKey returns the installed flow with key k.
func flowByKey(dp datapath.Datapath, k flow.Key) (datapath.FlowInfo, bool) {
	var found datapath.FlowInfo
	ok := false
	dp.Flows(func(f *datapath.FlowInfo) {
		if f.Key == k {
			found, ok = *f, true
		}
	})
	return found, ok
}

func dropsString(s datapath.Stats) string { return fmt.Sprintf("drops %v", s.Drops) }
