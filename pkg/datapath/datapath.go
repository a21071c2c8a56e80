package datapath

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/packet"
)

// Datapath is a fast path for one host: a set of bound ports, the tunnel
// endpoints towards the other hosts of the tunnel zone, and a flow table.
//
// All methods are safe for concurrent use, including from inside
// MissHandler.Miss. After Close (or after Run returns) every method returns
// ErrClosed or does nothing.
type Datapath interface {
	// AddPort attaches an existing local interface (a VM's tap or veth, an
	// uplink) as a datapath port and starts receiving on it if Run is
	// running. The port is known to flows by cfg.Index and to the tunnel by
	// cfg.TunnelKey. PortID, Index, Interface and TunnelKey must each be
	// unique among the attached ports; the error says which one clashes.
	AddPort(cfg PortConfig) error

	// RemovePort detaches a port: its receiver stops, frames are no longer
	// sent out of it, and every flow entering by it or outputting to it is
	// removed (counted in Stats.FlowsRemoved). The interface itself is left
	// as it was. Removing an unknown port returns ErrUnknownPort.
	RemovePort(portID string) error

	// SetTunnels sets the local tunnel endpoint and the tunnel-zone peers.
	// It may be called again at any time: a change of peers takes effect at
	// once, a change of address, port or enabled encapsulations reopens the
	// sockets. Frames from an address not in Peers are dropped and counted
	// (DropTunnelUnknownPeer).
	SetTunnels(cfg TunnelConfig) error

	// Install adds an exact-match flow, replacing any flow with the same
	// key. The actions are checked against the attached ports: an output
	// to a port that is not attached is an error and installs nothing.
	// The datapath keeps its own copy of spec's slices. If the table is
	// full, an old idle flow is evicted (Stats.FlowsEvicted).
	Install(spec *FlowSpec) error

	// Invalidate removes exactly the flows that carry any of tags and
	// returns how many it removed. Packets of those flows miss again.
	Invalidate(tags ...uint64) int

	// Flush removes every flow and returns how many it removed.
	Flush() int

	// Execute applies actions to a copy of frame (frame itself is not
	// modified or retained) and sends the result, before it returns. It is
	// how the first packet of a flow is forwarded after a miss, and how the
	// agent sends packets it generates (ARP and ND replies, ICMP errors,
	// DHCP). inPort is the Index of the port the frame came in by, or -1
	// for a generated packet: the userspace datapath does not need it, a
	// kernel one may (to re-inject in the right context). The error
	// reports actions that name unattached ports or a frame that could not
	// be sent; drops that a flow would also suffer (TTL expired, a pop
	// without a tag) are counted in Stats and are not errors.
	Execute(inPort int32, frame []byte, actions []flow.Action) error

	// Run starts the receivers of every attached port and tunnel socket
	// and the flow expiry, calls h for every miss, and blocks until ctx
	// is done or Close is called. It then stops every goroutine it started
	// and releases the datapath's sockets, as Close does, before returning.
	// Run may be called once.
	//
	// h.Miss is called synchronously on the receiving port's goroutine,
	// concurrently for different ports.
	Run(ctx context.Context, h MissHandler) error

	// Close stops the datapath and releases its sockets. It is idempotent,
	// and makes a running Run return.
	Close() error

	// Stats returns a snapshot of the counters.
	Stats() Stats

	// Flows calls fn once per installed flow, without holding locks that
	// would stall forwarding. fn must not retain info beyond the call or
	// modify the slices it holds.
	Flows(fn func(info *FlowInfo))

	// SetPortQoS sets the rate limits of an attached port (a zero
	// PortQoS removes them): a token bucket polices the frames entering by
	// the port's interface (what its VM sends) and one the frames sent out
	// of it, whichever host or flow they come from (what it receives). A
	// frame the bucket has no tokens for is dropped and counted
	// (DropQoSPoliced). Unknown ports are ErrUnknownPort.
	SetPortQoS(portID string, q PortQoS) error

	// SendState sends a flow-state packet (MidoNet's model: connection
	// tracking and NAT entries pushed ahead of a connection's first
	// packet) to peer, a tunnel-zone peer, over the tunnel with the
	// reserved key packet.StateTunnelKey: VXLAN if enabled, else GRE. payload is
	// opaque to the datapath and not retained; it is sent before
	// SendState returns, on the same socket as data packets, so a state
	// packet sent before a data packet to the same peer is not overtaken
	// by it in the sender.
	SendState(peer netip.Addr, payload []byte) error

	// SendProbe sends a liveness probe, or a gateway's answer to one
	// (pkg/agent/gateway), to peer, a tunnel-zone peer, over the tunnel
	// with the reserved key packet.ProbeTunnelKey, as SendState sends
	// flow-state packets: same encapsulation, same socket, payload opaque
	// and not retained. A kernel datapath must hand received probes to
	// the agent's ProbeHandler (its tunnel-ingress program passes
	// ProbeTunnelKey up as it passes StateTunnelKey) and send them from
	// the agent through the same tunnel device as data, so that a probe
	// answered proves the path data takes.
	//
	// Echo requests (packet.AppendEchoRequest) are the exception: the
	// receiving datapath answers them itself (packet.AnswerEcho, back to
	// the sender over the tunnel they came by) and its ProbeHandler never
	// sees them, so that a reply proves the peer's datapath forwards
	// whether or not its agent runs: a kernel datapath answers them in
	// the kernel, and goes on answering while its agent is dead or
	// restarting. The reply reaches the sender's ProbeHandler.
	SendProbe(peer netip.Addr, payload []byte) error
}

// ProbeHandler receives probes. A MissHandler passed to Run that also
// implements ProbeHandler gets the payloads of the probe packets that
// tunnel-zone peers send; without it they are dropped and counted
// (DropTunnelProbeUnhandled).
type ProbeHandler interface {
	// Probe is called on the tunnel receiver's goroutine with the
	// sender's underlay address and the payload, which belongs to the
	// datapath and is valid only during the call. The handler must check
	// the payload and must not block.
	Probe(from netip.Addr, payload []byte)
}

// FlowLister is implemented by a datapath whose walk of the flows can
// stop early: for a sample of a large table (a status page's dump)
// without the cost of the whole walk.
type FlowLister interface {
	// FlowsUntil is Flows, stopping once fn returns false.
	FlowsUntil(fn func(info *FlowInfo) (more bool))
}

// StateLister is implemented by a datapath that can list its stateful
// flows' state keys without building a FlowInfo (and its actions) for
// every flow: the flow-state sweep reads only those, every few seconds,
// from tables of 100,000 flows.
type StateLister interface {
	// LiveState calls fn with the state keys of each flow that has some
	// and was used since since. The keys are valid only during the call.
	LiveState(since time.Time, fn func(state []flowstate.Key))
}

// LiveState calls fn with the state keys of dp's stateful flows used
// since since, through StateLister where dp implements it. dp needs only
// Flows, so that users holding a narrower view of a datapath can call it.
func LiveState(dp interface{ Flows(func(*FlowInfo)) }, since time.Time, fn func(state []flowstate.Key)) {
	if l, ok := dp.(StateLister); ok {
		l.LiveState(since, fn)
		return
	}
	dp.Flows(func(f *FlowInfo) {
		if len(f.State) > 0 && !f.LastUsed.Before(since) {
			fn(f.State)
		}
	})
}

// SomeFlows calls fn for at most n of dp's flows, stopping the walk early
// where dp can (FlowLister).
func SomeFlows(dp Datapath, n int, fn func(info *FlowInfo)) {
	if n <= 0 {
		return
	}
	seen := 0
	if l, ok := dp.(FlowLister); ok {
		l.FlowsUntil(func(f *FlowInfo) bool {
			fn(f)
			seen++
			return seen < n
		})
		return
	}
	dp.Flows(func(f *FlowInfo) {
		if seen < n {
			fn(f)
			seen++
		}
	})
}

// PortAdopter is implemented by a datapath that took over the forwarding
// state a predecessor left (the kernel datapath's pinned maps): its
// adopted flows go on matching packets by the indexes the predecessor
// gave its ports. A port attached again at another index would have every
// established flow entering by it miss at once, while the agent is still
// starting (and another port given the old index would match them): the
// agent attaches each port again at the index it had.
type PortAdopter interface {
	// AdoptedPorts are the ports the predecessor had attached.
	AdoptedPorts() []AdoptedPort
}

// AdoptedPort is a port a datapath found attached when it adopted its
// predecessor's state.
type AdoptedPort struct {
	Interface string // its interface's name
	Index     int32  // PortConfig.Index: the in-port of its adopted flows
	TunnelKey uint32 // PortConfig.TunnelKey: which virtual port it was
}

// StateHandler receives flow-state packets. A MissHandler passed to Run
// that also implements StateHandler gets the payloads of the state packets
// that tunnel-zone peers send; without it they are dropped and counted
// (DropTunnelStateUnhandled).
type StateHandler interface {
	// State is called on the tunnel receiver's goroutine with the sender's
	// underlay address and the payload, which belongs to the datapath and
	// is valid only during the call. The handler must check the payload
	// (it comes from the network) and must not block.
	State(from netip.Addr, payload []byte)
}

// Errors common to implementations.
var (
	ErrClosed      = errors.New("datapath: closed")
	ErrUnknownPort = errors.New("datapath: unknown port")
	ErrRunning     = errors.New("datapath: already running")
	// ErrUnsupported: the implementation does not do this (yet).
	ErrUnsupported = errors.New("datapath: not supported by this implementation")
)

// PortConfig describes a bound port: a local interface that frames of one
// virtual port enter and leave by.
type PortConfig struct {
	// PortID is the virtual port's UUID.
	PortID string
	// Index is the port's index in the simulator's Topology. It is the
	// FlowKey.InPort of frames entering by the port and the Port of
	// flow.Actions that output to it.
	Index int32
	// Interface is the host interface name, in the datapath's network
	// namespace. It must already exist.
	Interface string
	// TunnelKey is the port's 24-bit tunnel key: frames arriving over the
	// tunnel with this VNI or GRE key leave by this port. Zero means the
	// port is not reached through tunnels: an interface of the agent's
	// own (a BGP speaker's) that only local flows use; any number of
	// ports may have it.
	TunnelKey uint32
	// MTU is the interface's IP MTU (default 1500). It sizes the receive
	// buffers; frames whose IP packet is longer (for a GSO super-frame:
	// whose segments would be) are dropped on receive and counted
	// (DropRxOverMTU).
	MTU int
}

// PortQoS is a port's rate limits, in kbit/s with bursts in kbit; a zero
// rate is no limit, a zero burst 80% of a second at the rate (Neutron's
// default). Egress and ingress are the VM's: what it sends, what it
// receives.
type PortQoS struct {
	EgressKbps, EgressBurstKbit   uint32
	IngressKbps, IngressBurstKbit uint32
}

// TunnelConfig is the host's tunnel endpoint in the underlay.
type TunnelConfig struct {
	// LocalIP is this host's underlay address; tunnel sockets bind to it.
	// Only IPv4 is supported for now.
	LocalIP netip.Addr
	// VXLAN enables the VXLAN endpoint, a UDP socket on LocalIP:VXLANPort.
	VXLAN bool
	// VXLANPort is the UDP port of VXLAN on every host (default 4789).
	VXLANPort uint16
	// GRE enables the GRE endpoint, a raw IP socket of protocol 47.
	GRE bool
	// Peers are the underlay addresses of the other tunnel-zone members.
	// Tunnel packets from any other address are dropped and counted.
	Peers []netip.Addr
}

// FlowClass picks a flow's idle timeout.
type FlowClass uint8

const (
	// ClassNormal is a forwarding flow (default idle timeout 10 s).
	ClassNormal FlowClass = iota
	// ClassDrop is a flow that drops its packets, installed so that a
	// flood of unwanted packets does not reach the simulator (default idle
	// timeout 5 s, short so that a cured error condition heals quickly).
	ClassDrop
	// NumFlowClasses is the number of classes.
	NumFlowClasses
)

func (c FlowClass) String() string {
	switch c {
	case ClassNormal:
		return "normal"
	case ClassDrop:
		return "drop"
	}
	return "invalid"
}

// Default flow table settings.
const (
	DefaultNormalIdle = 10 * time.Second
	DefaultDropIdle   = 5 * time.Second
	DefaultMaxFlows   = 1 << 18
)

// FlowConfig tunes the flow table.
type FlowConfig struct {
	// IdleTimeout is how long a flow of each class may go unused before
	// the datapath removes it. Zero entries take the defaults.
	IdleTimeout [NumFlowClasses]time.Duration
	// MaxFlows caps the number of flows (default DefaultMaxFlows). At the
	// cap, Install evicts a flow first.
	MaxFlows int
}

// WithDefaults returns c with zero fields replaced by the defaults.
func (c FlowConfig) WithDefaults() FlowConfig {
	defs := [NumFlowClasses]time.Duration{ClassNormal: DefaultNormalIdle, ClassDrop: DefaultDropIdle}
	for i := range c.IdleTimeout {
		if c.IdleTimeout[i] <= 0 {
			c.IdleTimeout[i] = defs[i]
		}
	}
	if c.MaxFlows <= 0 {
		c.MaxFlows = DefaultMaxFlows
	}
	return c
}

// Config is what every implementation's constructor takes.
type Config struct {
	// Netns is the path of the network namespace the datapath works in
	// (/run/netns/NAME, /proc/PID/ns/net): interfaces are looked up and
	// sockets opened there. Empty means the namespace of the caller of the
	// constructor. Tests use it to run several "hosts" in one process.
	Netns string
	// Flows tunes the flow table.
	Flows FlowConfig
	// Logger receives the rare events worth a line (a receiver failing);
	// nil means slog.Default().
	Logger *slog.Logger
	// Host is the name of the host the datapath serves. A datapath that
	// keeps state across restarts (the kernel one's pinned maps) keeps it
	// under this name; empty: it keeps none.
	Host string
}

// FlowSpec is a flow to install.
type FlowSpec struct {
	// Key is the exact match, with Key.InPort the Index of the ingress
	// port (flow.KeyOf(pkt, uint32(index))).
	Key flow.Key
	// Actions apply in order. No output or encapsulation means drop.
	Actions []flow.Action
	// Tags are the tags of every object the simulation read.
	Tags []uint64
	// Class picks the idle timeout.
	Class FlowClass
	// MTU is sim.Result.MTU: IP packets whose datagram (IP header
	// included) is longer miss instead of hitting. Zero: no limit.
	MTU int
	// State are the flow-state keys the decision read
	// (sim.Result.StateKeys). The datapath only keeps them, for FlowInfo:
	// the agent refreshes the entries of flows that are still hitting,
	// which the simulation no longer sees.
	State []flowstate.Key
}

// Upcall is a packet that missed the flow table. It and everything it
// points to belong to the datapath and are valid only during the Miss call.
type Upcall struct {
	// InPort is the Index of the port the frame entered by.
	InPort int32
	// PortID is that port's PortID.
	PortID string
	// Frame is the frame as received, or as the wire would carry it: a
	// checksum the sender left to offload is completed, and a GSO
	// super-frame is upcalled segment by segment (each looked up first),
	// so the handler never sees a frame longer than the port's MTU
	// allows. The handler may pass it to Execute.
	Frame []byte
	// Pkt is Frame decoded; Pkt.Drop is always DropNone (malformed frames
	// are dropped and counted before they get here).
	Pkt *packet.Parsed
	// Key is flow.KeyOf(Pkt, InPort).
	Key flow.Key
}

// MissHandler receives packets that missed the flow table.
type MissHandler interface {
	// Miss is called synchronously on the receiving port's goroutine, and
	// concurrently for different ports. It typically simulates u.Pkt, then
	// calls Install and Execute. Until it returns, that port receives
	// nothing more, so it must not block on I/O: park work that needs
	// I/O and return.
	Miss(u *Upcall)
}

// MissFunc adapts a function to MissHandler.
type MissFunc func(u *Upcall)

// Miss calls f(u).
func (f MissFunc) Miss(u *Upcall) { f(u) }
