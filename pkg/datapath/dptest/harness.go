//go:build linux

package dptest

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// Factory creates a datapath of the kernel's interfaces under test.
// cfg.Netns is the namespace of the "host" it serves; cfg.Flows carries
// the test's timeouts and caps. The factory registers no cleanup of its
// own: the suite closes the datapath.
type Factory func(t *testing.T, cfg datapath.Config) datapath.Datapath

// Fixture makes the simulated hosts the suite runs one datapath
// implementation on: real network namespaces joined by veth pairs for a
// datapath of the kernel's interfaces (Namespaces), in-memory hosts on an
// in-memory underlay for the in-memory datapath (Memory). The cases are
// the same for both.
type Fixture interface {
	// Name names the implementation in the test's name.
	Name() string
	// newHost returns a datapath serving a new host, and the host.
	newHost(t *testing.T, name string, flows datapath.FlowConfig) (datapath.Datapath, hostEnv)
	// joinUnderlay connects a's and b's underlays: underA is a's address,
	// underB and underBad are b's.
	joinUnderlay(t *testing.T, a, b hostEnv)
}

// hostEnv is one simulated host's world around its datapath.
type hostEnv interface {
	// addInterface makes the interface a port binds ("t"+name) and returns
	// it and its VM's end.
	addInterface(t *testing.T, name string) (ifname string, vm vmEnd)
	// capture records the tunnel packets arriving on the host's underlay.
	capture(t *testing.T) wireCapture
	// sendRaw sends one tunnel datagram from the host's address from to
	// underA: a UDP datagram to the VXLAN port, or a GRE packet.
	sendRaw(t *testing.T, from netip.Addr, gre bool, data []byte)
	// tcpdump starts tcpdump on the underlay for one tunnel packet, or
	// returns nil where there is no wire to watch or no tcpdump.
	tcpdump(t *testing.T, kind packet.Tunnel) *tcpdump
}

// vmEnd is the VM's side of a bound interface.
type vmEnd interface {
	send(frames [][]byte) error
	// recv returns the next frame within d, or nil.
	recv(d time.Duration) ([]byte, error)
}

// wireCapture returns the next tunnel packet of a kind seen on an
// underlay, or fails the test.
type wireCapture interface {
	tunnelPacket(t *testing.T, kind packet.Tunnel) *wirePacket
}

// wirePacket is a tunnel packet as seen on the underlay.
type wirePacket struct {
	Src, Dst netip.Addr
	Key      uint32
	GREProto uint16 // GRE's protocol type
	Inner    []byte
}

// Generous bounds for things that must happen; never assertions on speed.
const (
	arriveTimeout = 5 * time.Second
	// quietPeriod is how long a frame that must not arrive is waited for.
	quietPeriod = 400 * time.Millisecond
)

// host is one simulated hypervisor: its world (env: the datapath's
// interfaces and underlay, the VMs' ends) and a running datapath with a
// scripted miss handler.
type host struct {
	t    *testing.T
	name string
	env  hostEnv
	dp   datapath.Datapath
	miss *handler
}

func newHost(t *testing.T, fx Fixture, name string, flows datapath.FlowConfig) *host {
	t.Helper()
	h := &host{t: t, name: name, miss: newHandler()}
	h.dp, h.env = fx.newHost(t, name, flows)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.dp.Run(ctx, h.miss) }()
	// Cleanups run last-in first-out: this one runs before the host's
	// world (registered earlier) is removed.
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

// vm is a bound port and its VM's end, on which the test sends and
// receives raw frames.
type vm struct {
	t   *testing.T
	cfg datapath.PortConfig
	io  vmEnd
}

// addVM makes an interface on the host, binds it as a port and returns
// its VM end.
func (h *host) addVM(name string, index int32, key uint32) *vm {
	t := h.t
	t.Helper()
	ifname, io := h.env.addInterface(t, name)
	cfg := datapath.PortConfig{PortID: "port-" + name, Index: index, Interface: ifname, TunnelKey: key}
	if err := h.dp.AddPort(cfg); err != nil {
		t.Fatalf("%s: AddPort(%+v): %v", h.name, cfg, err)
	}
	return &vm{t: t, cfg: cfg, io: io}
}

func (v *vm) send(frames ...[]byte) {
	v.t.Helper()
	if err := v.io.send(frames); err != nil {
		v.t.Fatalf("send on %s: %v", v.cfg.Interface, err)
	}
}

// recv returns the next test frame (one from a test MAC) arriving at the
// VM within d, or nil. The kernel sends nothing on these links (no
// addresses, IPv6 off), but the filter keeps stray frames from mattering.
func (v *vm) recv(d time.Duration) []byte {
	deadline := time.Now().Add(d)
	for left := d; left > 0; left = time.Until(deadline) {
		f, err := v.io.recv(left)
		if err != nil {
			v.t.Fatalf("receive on %s: %v", v.cfg.Interface, err)
		}
		if f != nil && isTestFrame(f) {
			return f
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
	mu     sync.Mutex
	script func(u *datapath.Upcall)
	// gate is held (read) while a script runs; quiesce takes it to stop
	// scripts for good once a test's body is over.
	gate    sync.RWMutex
	stopped bool
	upcalls chan upcall
	states  chan stateMsg
	probes  chan stateMsg
}

func newHandler() *handler {
	return &handler{upcalls: make(chan upcall, 4096), states: make(chan stateMsg, 64), probes: make(chan stateMsg, 64)}
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

// Probe implements datapath.ProbeHandler: it records the packet.
func (h *handler) Probe(from netip.Addr, payload []byte) {
	select {
	case h.probes <- stateMsg{from, append([]byte(nil), payload...)}:
	default:
	}
}

func (h *handler) Miss(u *datapath.Upcall) {
	select {
	case h.upcalls <- upcall{u.InPort, u.PortID, u.Key, append([]byte(nil), u.Frame...)}:
	default:
	}
	h.gate.RLock()
	defer h.gate.RUnlock()
	if h.stopped {
		return
	}
	h.mu.Lock()
	s := h.script
	h.mu.Unlock()
	if s != nil {
		s(u)
	}
}

// quiesce waits for a running script to return and runs none after it:
// upcalls from a host being torn down are recorded, not acted on.
func (h *handler) quiesce() {
	h.gate.Lock()
	h.stopped = true
	h.gate.Unlock()
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
