//go:build linux

package ebpf

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/packet"
)

// ctHarness is progHarness with one connection flow installed per
// protocol, naming connection 1.
type ctHarness struct {
	*progHarness
	timeouts [flowstate.NumTimeoutClasses]time.Duration
}

func newCTHarness(t *testing.T) *ctHarness {
	h := &ctHarness{progHarness: newProgHarness(t)}
	h.timeouts = flowstate.Timeouts{TCPEstablished: time.Hour, UDPNew: 7 * time.Second}.ByClass()
	var cfg kernelConfig
	for i, d := range h.timeouts {
		cfg.CtTimeout[i] = uint64(d)
	}
	list := actionList{N: 1, LastOut: 0}
	list.Acts[0] = kernelAction{Type: uint8(flow.ActOutput), W: testIfindex, H: testOutSlot}
	for _, err := range []error{h.objs.Config.Put(uint32(0), &cfg), h.objs.Actions.Put(uint32(1), &list)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// frame returns a packet of proto with TCP flags (TCP only) and installs
// its flow, naming connection 1 in direction reply.
func (h *ctHarness) frame(t *testing.T, proto, flags uint8, reply bool) []byte {
	b := make([]byte, 256)
	n, err := packet.BuildProbe(b, &packet.Probe{EthSrc: packet.MAC{2, 0, 0, 0, 0, 1}, EthDst: packet.MAC{2, 0, 0, 0, 0, 2},
		Src: netip.MustParseAddr("10.1.0.1"), Dst: netip.MustParseAddr("10.1.0.2"), Proto: proto, SrcPort: 4000, DstPort: 80,
		TCPFlags: flags})
	if err != nil {
		t.Fatal(err)
	}
	var p packet.Parsed
	p.Decode(b[:n])
	k := flow.KeyOf(&p, testInPort)
	v := flowValue{Acts: 1, Flags: flowCT, Ct: [ctRefs]uint32{1}}
	if reply {
		v.CtDir = 1
	}
	if err := h.objs.Flows.Put(toKernelKey(&k), &v); err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

func (h *ctHarness) putConn(t *testing.T, proto uint8, st flowstate.State, expires uint64) {
	e := ctEntry{Fwd: ctKey{Proto: proto, Family: 4, Type: uint8(flowstate.KeyConn)}, Rev: ctKey{Proto: proto, Family: 4,
		Type: uint8(flowstate.KeyConn), Zone: 1}, State: uint8(st), Used: monoNow() - uint64(time.Second), Expires: expires}
	if err := h.objs.Ct.Put(uint32(1), &e); err != nil {
		t.Fatal(err)
	}
}

// TestConntrackStateMachine runs every state, TCP flag combination and
// direction through a connection flow and checks that the program leaves
// the entry where flowstate's State.Advance does, with the lifetime of
// the new state's class from the packet on.
func TestConntrackStateMachine(t *testing.T) {
	h := newCTHarness(t)
	var states []flowstate.State
	for phase := range flowstate.PhaseClosed + 1 {
		for bits := range 8 {
			states = append(states, flowstate.State(phase)|flowstate.State(bits)<<4)
		}
	}
	type pkt struct {
		proto, flags uint8
	}
	var pkts []pkt
	for _, f := range []uint8{packet.TCPSyn, packet.TCPSyn | packet.TCPAck, packet.TCPAck, packet.TCPFin | packet.TCPAck,
		packet.TCPRst, packet.TCPRst | packet.TCPAck, packet.TCPFin | packet.TCPSyn, packet.TCPPsh | packet.TCPAck} {
		pkts = append(pkts, pkt{packet.IPProtoTCP, f})
	}
	pkts = append(pkts, pkt{packet.IPProtoUDP, 0}, pkt{packet.IPProtoICMPv4, 0})
	far := monoNow() + uint64(time.Hour)
	for _, pk := range pkts {
		for _, reply := range []bool{false, true} {
			f := h.frame(t, pk.proto, pk.flags, reply)
			for _, st := range states {
				h.putConn(t, pk.proto, st, far)
				before := monoNow()
				v, err := h.run(f)
				if err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("proto %d flags %#x reply %v from %#x", pk.proto, pk.flags, reply, st)
				if v.ret != tcActRedirect {
					t.Fatalf("%s: verdict %d (drop %s, upcall %v), want forwarded", name, v.ret, dropName(v.drop), v.upcall != nil)
				}
				var e ctEntry
				if err := h.objs.Ct.Lookup(uint32(1), &e); err != nil {
					t.Fatal(err)
				}
				want := st.Advance(pk.proto, pk.flags, reply)
				if flowstate.State(e.State) != want {
					t.Errorf("%s: kernel state %#x, flowstate %#x", name, e.State, want)
					continue
				}
				life := h.timeouts[flowstate.TimeoutClass(pk.proto, want)]
				if e.Used < before || e.Expires != e.Used+uint64(life) {
					t.Errorf("%s: used %d (run at %d), expires %d, want used + %v", name, e.Used, before, e.Expires, life)
				}
			}
		}
	}
}

// TestConntrackRecheck: a packet of a connection whose entry ran out, or
// is gone from the map, goes to the agent and is counted; a live one is
// forwarded.
func TestConntrackRecheck(t *testing.T) {
	h := newCTHarness(t)
	f := h.frame(t, packet.IPProtoUDP, 0, false)
	counter := func(i int) uint64 {
		var vals []uint64
		if err := h.objs.Counters.Lookup(uint32(i), &vals); err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, v := range vals {
			n += v
		}
		return n
	}
	for _, c := range []struct {
		name    string
		put     bool
		expires uint64
		counter int
	}{
		{"live", true, monoNow() + uint64(time.Hour), -1},
		{"expired", true, monoNow() - 1, cCtExpired},
		{"missing", false, 0, cCtMissing},
	} {
		if c.put {
			h.putConn(t, packet.IPProtoUDP, flowstate.State(flowstate.PhaseEstablished), c.expires)
		} else if err := h.objs.Ct.Delete(uint32(1)); err != nil {
			t.Fatal(err)
		}
		before := [2]uint64{counter(cCtExpired), counter(cCtMissing)}
		v, err := h.run(f)
		if err != nil {
			t.Fatal(err)
		}
		after := [2]uint64{counter(cCtExpired), counter(cCtMissing)}
		if c.counter < 0 {
			if v.ret != tcActRedirect || after != before {
				t.Errorf("%s: verdict %d, counters %v -> %v: want forwarded, nothing counted", c.name, v.ret, before, after)
			}
			continue
		}
		if v.upcall == nil || v.upcall.Reason != upcallRecheck {
			t.Errorf("%s: verdict %d, upcall %+v: want a recheck upcall", c.name, v.ret, v.upcall)
		}
		i := map[int]int{cCtExpired: 0, cCtMissing: 1}[c.counter]
		if after[i] != before[i]+1 || after[1-i] != before[1-i] {
			t.Errorf("%s: counters (expired, missing) %v -> %v", c.name, before, after)
		}
	}
}
