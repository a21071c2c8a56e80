package sim

import (
	"net/netip"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// Capacities of a Result. They bound the work of one walk, so a pathological
// topology cannot make the per-packet path allocate or run away.
const (
	// MaxActions is the number of flow actions (a flood to many ports
	// needs one or two per port).
	MaxActions = 256
	// MaxGenerated is the number of packets one walk may generate.
	MaxGenerated = 4
	// MaxGeneratedActions is the number of actions of all generated
	// packets together (an ARP request flooded on a bridge needs many).
	MaxGeneratedActions = 128
	// MaxTags is the number of distinct tags a Result records.
	MaxTags = 128
	// DefaultBufSize is the size of the buffer NewResult gives a Result
	// for generated packets: an ICMPv6 error of 1280 bytes, an echo reply
	// to a jumbo frame, and room to spare.
	DefaultBufSize = 16 << 10
)

// Verdict is what the datapath does with the packet.
type Verdict uint8

const (
	// VerdictNone is the zero value; Simulate never returns it.
	VerdictNone Verdict = iota
	// Forward: apply Actions. A flow may be installed.
	Forward
	// Drop: drop the packet, for Reason. Generated packets (ICMP errors,
	// TCP resets) must still be sent. If there are none, a drop flow may
	// be installed; if there are, the agent should not install one (or a
	// short-lived one), or later packets of the flow would be lost without
	// the error the first one got.
	Drop
	// Consumed: the packet was answered locally (ARP reply, echo reply,
	// neighbor advertisement) or was addressed to a virtual device (an ARP
	// reply to a router). Send the generated packets; install no flow,
	// since every such packet needs its own answer.
	Consumed
	// NeedARP: the next hop's MAC is unknown. Park the packet, send the
	// generated ARP request (or IPv6 neighbor solicitation), and simulate
	// the packet again from scratch when the answer arrives
	// (Result.Learned of that answer names it) or drop it after a timeout.
	NeedARP
)

var verdictNames = [...]string{VerdictNone: "none", Forward: "forward", Drop: "drop", Consumed: "consumed", NeedARP: "need-arp"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "invalid"
}

// DropReason says why a packet was dropped. Its String is a metrics label
// and stable.
type DropReason uint8

const (
	DropNone                     DropReason = iota
	DropMalformed                           // the frame did not decode (packet.Parsed.Drop) or no packet was given
	DropUnknownPort                         // the in-port is not in the topology
	DropPortDown                            // a port on the path is administratively down
	DropDeviceDown                          // a bridge or router on the path is administratively down
	DropLoop                                // more than MaxDevices devices on one path, or the walk's budget spent
	DropVLANMismatch                        // a frame's VLAN is not carried by the port it enters or leaves by
	DropRuleDrop                            // a drop rule matched
	DropRuleReject                          // a reject rule matched (a reset or ICMP error is generated)
	DropChainLoop                           // jump rules nested deeper than maxJumpDepth
	DropNoRoute                             // no route (ICMP net unreachable is generated)
	DropBlackhole                           // a blackhole route matched
	DropRejectRoute                         // a reject route matched (ICMP admin prohibited is generated)
	DropTTLExpired                          // TTL or hop limit ran out (ICMP time exceeded is generated)
	DropFragNeeded                          // larger than the egress MTU with DF, or IPv6 (frag-needed / packet too big is generated)
	DropFragmentationUnsupported            // larger than the egress MTU without DF: Nagare does not fragment
	DropMTUExceeded                         // larger than the egress MTU on a bridged path, where no ICMP can be sent
	DropNotForRouter                        // a frame reached a router with a destination MAC that is not the port's
	DropRouterLocal                         // a packet to a router address that the router does not answer
	DropUnsupported                         // a frame a device does not handle (non-IP to a router, IP broadcast or multicast routing)
	DropSamePort                            // a bridge would send the frame back out of the port it came in by
	DropNoOutputs                           // a flood found no port to send to
	DropNoTunnel                            // the egress port's host shares no tunnel zone with this host
	DropNoAddress                           // a router port without a usable address had to source an ARP/ND request
	DropTooManyOutputs                      // the result's action capacity was exhausted
	DropUnplugged                           // the path reached a port that is neither linked nor bound
	DropFlowStateFull                       // the connection or NAT binding could not be created: a table or zone bound was reached
	DropFlowStateConflict                   // the connection's state clashes with another connection's (a NAT tuple in use)
	DropNATExhausted                        // no NAT port (or echo identifier) was free
	DropNoLBMember                          // a VIP's pool has no usable member (a TCP reset or ICMP port unreachable is generated)
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	DropNone:                     "none",
	DropMalformed:                "malformed",
	DropUnknownPort:              "unknown-port",
	DropPortDown:                 "port-down",
	DropDeviceDown:               "device-down",
	DropLoop:                     "loop",
	DropVLANMismatch:             "vlan-mismatch",
	DropRuleDrop:                 "rule-drop",
	DropRuleReject:               "rule-reject",
	DropChainLoop:                "chain-loop",
	DropNoRoute:                  "no-route",
	DropBlackhole:                "blackhole",
	DropRejectRoute:              "reject-route",
	DropTTLExpired:               "ttl-expired",
	DropFragNeeded:               "frag-needed",
	DropFragmentationUnsupported: "fragmentation-unsupported",
	DropMTUExceeded:              "mtu-exceeded",
	DropNotForRouter:             "not-for-router",
	DropRouterLocal:              "router-local",
	DropUnsupported:              "unsupported",
	DropSamePort:                 "same-port",
	DropNoOutputs:                "no-outputs",
	DropNoTunnel:                 "no-tunnel",
	DropNoAddress:                "no-address",
	DropTooManyOutputs:           "too-many-outputs",
	DropUnplugged:                "unplugged",
	DropFlowStateFull:            "flow-state-full",
	DropFlowStateConflict:        "flow-state-conflict",
	DropNATExhausted:             "nat-exhausted",
	DropNoLBMember:               "lb-no-member",
}

// String returns the metrics label. It does not allocate.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropReasonNames[r]
	}
	return "unknown"
}

// Generated is a packet the walk produced, stored in Result.Buf.
type Generated struct {
	off, n       int
	actLo, actHi int
	Reason       GenReason
}

// GenReason says what a generated packet is, for counters and traces.
type GenReason uint8

const (
	GenARPReply GenReason = iota + 1
	GenARPRequest
	GenNeighborAdvert
	GenNeighborSolicit
	GenEchoReply
	GenICMPError
	GenTCPReset
)

var genNames = [...]string{0: "none", GenARPReply: "arp-reply", GenARPRequest: "arp-request", GenNeighborAdvert: "neighbor-advert",
	GenNeighborSolicit: "neighbor-solicit", GenEchoReply: "echo-reply", GenICMPError: "icmp-error", GenTCPReset: "tcp-reset"}

func (g GenReason) String() string {
	if int(g) < len(genNames) {
		return genNames[g]
	}
	return "invalid"
}

// Neighbor is an IP→MAC binding a router learned from an ARP or ND message
// addressed to it. The agent writes it to the router's ARP table and
// re-simulates the packets parked on it.
type Neighbor struct {
	RouterID string
	IP       netip.Addr
	MAC      packet.MAC
}

// Result is the outcome of one walk. It is owned and reused by the caller:
// Simulate starts with Reset and writes only into the fixed-size arrays and
// Buf, so a warm Result makes the walk allocation-free. The slices its
// methods return alias the Result and are valid until the next Reset.
type Result struct {
	// Verdict is what to do with the packet.
	Verdict Verdict
	// Reason is why, when Verdict is Drop.
	Reason DropReason
	// MTU is the largest IP datagram (IP header included) the flow's
	// actions may carry, 0 if unlimited (non-IP, consumed). The datapath
	// must send longer packets of the flow to the slow path instead of
	// applying the actions: the exact-match key does not include the
	// length, and a longer packet needs frag-needed, not forwarding.
	MTU int
	// NextHop is the address being resolved when Verdict is NeedARP, and
	// NextHopRouter the router resolving it.
	NextHop       netip.Addr
	NextHopRouter string
	// Learned is set (Learned.RouterID != "") when a router received an
	// ARP or ND message telling it a neighbor's MAC.
	Learned Neighbor
	// TagsOverflowed reports that more than MaxTags distinct objects were
	// read: the flow cannot be invalidated precisely, so the agent must
	// not install it (execute the actions for this packet only).
	TagsOverflowed bool
	// SlowPath reports a decision that depends on more than the flow key:
	// an ICMP error's quote (related or not, its reverse NAT) or the TCP
	// flags of a segment with no connection. The agent executes the
	// actions for this packet and installs no flow, not even a drop flow.
	SlowPath bool
	// GenFailed counts packets that should have been generated but did
	// not fit in Buf or the generated-action capacity.
	GenFailed int
	// Buf receives generated packets. NewResult sets it; a caller may
	// provide its own. A Result without Buf generates nothing (and counts
	// GenFailed).
	Buf []byte

	bufUsed  int
	nActions int
	nGen     int
	nGenActs int
	nTags    int
	bloom    uint64
	actions  [MaxActions]flow.Action
	gen      [MaxGenerated]Generated
	genActs  [MaxGeneratedActions]flow.Action
	tags     [MaxTags]uint64
	st       stateResult
}

// NewResult returns a Result with a DefaultBufSize generation buffer.
func NewResult() *Result { return &Result{Buf: make([]byte, DefaultBufSize)} }

// Reset clears the Result for reuse, keeping Buf.
func (r *Result) Reset() {
	buf := r.Buf
	r.Verdict, r.Reason, r.MTU = VerdictNone, DropNone, 0
	r.NextHop, r.NextHopRouter, r.Learned = netip.Addr{}, "", Neighbor{}
	r.TagsOverflowed, r.GenFailed, r.SlowPath = false, 0, false
	r.st.reset()
	r.bufUsed, r.nActions, r.nGen, r.nGenActs, r.nTags, r.bloom = 0, 0, 0, 0, 0, 0
	r.Buf = buf
}

// Actions returns the flow's actions, in order.
func (r *Result) Actions() []flow.Action { return r.actions[:r.nActions] }

// Tags returns the tags of every object the walk read, without duplicates.
func (r *Result) Tags() []uint64 { return r.tags[:r.nTags] }

// HasTag reports whether t is among the tags.
func (r *Result) HasTag(t uint64) bool {
	for _, x := range r.tags[:r.nTags] {
		if x == t {
			return true
		}
	}
	return false
}

// Generated returns the packets the walk produced.
func (r *Result) Generated() []Generated { return r.gen[:r.nGen] }

// Frame returns a generated packet's bytes (a complete Ethernet frame).
func (r *Result) Frame(g Generated) []byte { return r.Buf[g.off : g.off+g.n] }

// GeneratedActions returns where a generated packet goes: outputs and
// encapsulations, with any VLAN changes before them.
func (r *Result) GeneratedActions(g Generated) []flow.Action { return r.genActs[g.actLo:g.actHi] }

// addTagIf is addTag on a Result that may be nil (a lookup outside a walk).
func (r *Result) addTagIf(t uint64) {
	if r != nil {
		r.addTag(t)
	}
}

// addTag records t once. A 64-bit Bloom word spares the linear duplicate
// scan for tags certainly not yet present, which is most of them.
func (r *Result) addTag(t uint64) {
	bit := uint64(1) << (t & 63)
	if r.bloom&bit != 0 {
		for _, x := range r.tags[:r.nTags] {
			if x == t {
				return
			}
		}
	}
	if r.nTags == MaxTags {
		r.TagsOverflowed = true
		return
	}
	r.bloom |= bit
	r.tags[r.nTags] = t
	r.nTags++
}
