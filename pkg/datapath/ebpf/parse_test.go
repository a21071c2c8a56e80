//go:build linux

package ebpf

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/perf"
	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// progHarness runs port_in on frames with BPF_PROG_TEST_RUN: the real
// program and maps, loaded without attaching anything, so it needs
// CAP_BPF but no namespace.
type progHarness struct {
	t      testing.TB
	objs   datapathObjects
	reader *perf.Reader
	rec    perf.Record
}

// The port the test frames enter by: the test-run skb comes "from"
// loopback (ifindex 1) of the caller's namespace.
const (
	testIfindex = 1
	testSlot    = 1
	testInPort  = 7
	testOutSlot = 2
)

func newProgHarness(tb testing.TB) *progHarness {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("skipping: loading BPF programs needs root")
	}
	h := &progHarness{t: tb}
	if err := loadDatapathObjects(&h.objs, nil); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.objs.Close() })
	var err error
	if h.reader, err = perf.NewReader(h.objs.Upcalls, 1<<16); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.reader.Close() })
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(h.objs.PortSlots.Put(uint32(testIfindex), uint32(testSlot)))
	must(h.objs.Ports.Put(uint32(testSlot), &portInfo{Ifindex: testIfindex, Index: testInPort, MaxLen: 1 << 16}))
	must(h.objs.Ports.Put(uint32(testOutSlot), &portInfo{Ifindex: testIfindex, Index: testInPort + 1, MaxLen: 1 << 16}))
	return h
}

// skbContext is the start of struct __sk_buff up to ingress_ifindex, the
// only field the runs set.
type skbContext struct {
	_              [9]uint32
	IngressIfindex uint32
}

// verdict is what port_in did with a frame.
type verdict struct {
	ret    uint32 // TC_ACT_*
	drop   int    // the drop reason counted, 0 if none
	upcall *upcallHeader
}

const (
	tcActShot     = 2
	tcActRedirect = 7
)

// errRefused is a frame BPF_PROG_TEST_RUN itself refuses: an IPv4 or
// IPv6 frame too short for its IP header (the kernel pulls it before
// running the program; on a real port such a frame reaches the program,
// which the conformance suite's hostile-port case covers), or one longer
// than the page the harness copies it into.
var errRefused = errors.New("refused by BPF_PROG_TEST_RUN")

func (h *progHarness) run(frame []byte) (verdict, error) {
	h.t.Helper()
	before := h.drops()
	ret, err := h.objs.PortIn.Run(&ebpf.RunOptions{Data: frame, Context: skbContext{IngressIfindex: testIfindex}})
	if errors.Is(err, unix.EINVAL) {
		return verdict{}, errRefused
	}
	if err != nil {
		h.t.Fatalf("run port_in on %x: %v", frame, err)
	}
	v := verdict{ret: ret}
	after := h.drops()
	for r := range after {
		if after[r] != before[r] {
			if v.drop != 0 {
				h.t.Fatalf("frame %x counted two drop reasons, %s and %s", frame, dropName(v.drop), dropName(r))
			}
			v.drop = r
		}
	}
	if v.drop != 0 || ret != tcActShot {
		return v, nil // no upcall
	}
	h.reader.SetDeadline(time.Now().Add(time.Second))
	if err := h.reader.ReadInto(&h.rec); err == nil && len(h.rec.RawSample) >= upcallHeaderSize {
		u := *(*upcallHeader)(unsafe.Pointer(&h.rec.RawSample[0]))
		v.upcall = &u
	} else if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		h.t.Fatal(err)
	}
	return v, nil
}

func (h *progHarness) drops() [numDrops]uint64 {
	var out [numDrops]uint64
	var vals []uint64
	for r := range out {
		if err := h.objs.Drops.Lookup(uint32(r), &vals); err != nil {
			h.t.Fatal(err)
		}
		for _, x := range vals {
			out[r] += x
		}
	}
	return out
}

// check runs frame through port_in and the Go decoder and fails unless
// they agree: the same drop reason for a malformed frame, and for a good
// one an upcall whose key is flow.KeyOf's (or a punt for the agent's
// parser). With a flow installed for installed, a frame the program
// forwards must have exactly that key.
func (h *progHarness) check(t testing.TB, frame []byte, installed *flow.Key) {
	if len(frame) < 14 {
		return // BPF_PROG_TEST_RUN wants an Ethernet header
	}
	var p packet.Parsed
	(&packet.Decoder{}).Decode(&p, frame)
	key := flow.KeyOf(&p, testInPort)
	v, err := h.run(frame)
	if err != nil {
		// The harness copies the frame into one page.
		if p.Drop != packet.DropTruncated && len(frame) < 3000 {
			t.Fatalf("frame %x (Go: %v): %v", frame, p.Drop, err)
		}
		return
	}
	switch {
	case v.ret == tcActRedirect:
		if installed == nil || p.Drop != packet.DropNone || key != *installed {
			t.Fatalf("frame %x forwarded, but its key (drop %v) %s is not the installed flow's", frame, p.Drop, datapath.FormatKey(&key))
		}
	case v.ret != tcActShot:
		t.Fatalf("frame %x: verdict %d", frame, v.ret)
	case p.Drop != packet.DropNone:
		if v.drop != int(p.Drop) {
			t.Fatalf("frame %x: Go drops it as %v, the program %s (upcall %v)", frame, p.Drop, dropName(v.drop), v.upcall != nil)
		}
	case v.upcall == nil:
		t.Fatalf("frame %x: Go decodes it (%s), the program dropped it as %s", frame, datapath.FormatKey(&key), dropName(v.drop))
	case v.upcall.Reason == upcallPunt:
		if p.L4 != packet.L4ICMPv6 {
			t.Fatalf("frame %x punted, but it is no ND message", frame)
		}
	case fromKernelKey(&v.upcall.Key) != key:
		k := fromKernelKey(&v.upcall.Key)
		t.Fatalf("frame %x: key\nkernel %s %+v\n    Go %s %+v", frame, datapath.FormatKey(&k), k, datapath.FormatKey(&key), key)
	}
}

// seedFrames are valid frames of every kind and hostile variants of
// them: truncated headers, IPv4 options, IPv6 extension chains,
// fragments, VLAN stacks.
func seedFrames(t testing.TB) [][]byte {
	a := netip.MustParseAddr
	mac1, mac2 := packet.MAC{2, 0, 0, 0, 0, 1}, packet.MAC{2, 0, 0, 0, 0, 2}
	buf := make([]byte, 4096)
	var seeds [][]byte
	add := func(n int, err error) {
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, append([]byte(nil), buf[:n]...))
	}
	for _, src := range []netip.Addr{a("10.0.0.1"), a("fd00::1")} {
		dst := a("10.0.0.2")
		if src.Is6() {
			dst = a("fd00::2")
		}
		for _, proto := range []uint8{packet.IPProtoTCP, packet.IPProtoUDP, 0} {
			for _, vlan := range []uint16{0, 100} {
				add(packet.BuildProbe(buf, &packet.Probe{EthSrc: mac1, EthDst: mac2, VLAN: vlan, Src: src, Dst: dst, Proto: proto, SrcPort: 1000, DstPort: 80, TTL: 40, Length: 120}))
			}
		}
	}
	add(packet.BuildProbe(buf, &packet.Probe{EthSrc: mac1, EthDst: packet.BroadcastMAC, ARP: true, Src: a("10.0.0.1"), Dst: a("10.0.0.2")}))
	add(packet.BuildNeighborSolicit(buf, mac1, a("fe80::1"), a("fe80::2")))
	var tcp packet.Parsed
	(&packet.Decoder{}).Decode(&tcp, seeds[0])
	add(packet.BuildICMPv4Unreachable(buf, &tcp, a("10.0.0.254"), packet.ICMPv4PortUnreachable))
	var tcp6 packet.Parsed
	(&packet.Decoder{}).Decode(&tcp6, seeds[6])
	add(packet.BuildICMPv6PacketTooBig(buf, &tcp6, a("fd00::fe"), 1280))

	var hostile [][]byte
	for _, s := range seeds {
		for _, n := range []int{13, 14, 16, 20, 33, 34, 40, 53, 54, 60} {
			if n < len(s) {
				hostile = append(hostile, s[:n])
			}
		}
	}
	ip4 := seeds[0]
	// IPv4 options (IHL 6), a lying IHL, a lying total length.
	opt := append(append(append([]byte(nil), ip4[:34]...), 1, 1, 1, 0), ip4[34:]...)
	opt[14] = 0x46
	binary.BigEndian.PutUint16(opt[16:], uint16(len(opt)-14))
	hostile = append(hostile, opt, with(ip4, 14, 0x4f), with(ip4, 14, 0x44), with16(ip4, 16, 0xffff), with16(ip4, 16, 10))
	// Fragments: first, later, overlapping.
	hostile = append(hostile, with16(ip4, 20, 0x2000), with16(ip4, 20, 0x0010), with16(ip4, 20, 0x0003), with16(ip4, 20, 0x2003))
	// VLAN stacks: two and three tags, QinQ.
	tag := func(f []byte, tpid uint16, vid uint16) []byte {
		b := append([]byte(nil), f[:12]...)
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, vid|0x2000)
		return append(b, f[12:]...)
	}
	hostile = append(hostile, tag(ip4, 0x8100, 5), tag(tag(ip4, 0x8100, 5), 0x88a8, 6), tag(tag(tag(ip4, 0x8100, 5), 0x8100, 6), 0x8100, 7))
	// IPv6 extension chains: hop-by-hop, routing, destination options,
	// fragment headers, a chain too long, hop-by-hop out of place.
	ip6 := seeds[6]
	ext := func(f []byte, nh ...byte) []byte {
		b := append([]byte(nil), f[:54]...)
		next := b[20]
		b[20] = nh[0]
		for i, h := range nh {
			n := next
			if i+1 < len(nh) {
				n = nh[i+1]
			}
			if h == packet.IPProtoFragment {
				b = append(b, n, 0, 0, 0, 0, 0, 0, 1)
			} else {
				b = append(b, n, 0, 1, 4, 0, 0, 0, 0)
			}
		}
		b = append(b, f[54:]...)
		binary.BigEndian.PutUint16(b[18:], uint16(len(b)-54))
		return b
	}
	hostile = append(hostile, ext(ip6, 0), ext(ip6, 0, 43, 60), ext(ip6, 44), ext(ip6, 60, 0), ext(ip6, 44, 44),
		ext(ip6, 60, 60, 60, 60, 60, 60, 60, 60), ext(ip6, 60, 60, 60, 60, 60, 60, 60, 60, 60))
	fr := ext(ip6, 44)
	fr[56+2], fr[56+3] = 0x00, 0x81 // offset 16, M: a later fragment
	hostile = append(hostile, fr, with(fr, 57, 0x09))
	return append(seeds, hostile...)
}

func with(f []byte, off int, v byte) []byte {
	b := append([]byte(nil), f...)
	b[off] = v
	return b
}

func with16(f []byte, off int, v uint16) []byte {
	b := append([]byte(nil), f...)
	binary.BigEndian.PutUint16(b[off:], v)
	return b
}

// TestKernelParserMatchesGo runs the seed corpus through the kernel
// parser (port_in, by BPF_PROG_TEST_RUN) and the Go decoder.
func TestKernelParserMatchesGo(t *testing.T) {
	h := newProgHarness(t)
	for _, f := range seedFrames(t) {
		h.check(t, f, nil)
	}
}

// TestKernelForwardsOnlyItsKey installs a flow and checks that exactly
// the frames with its key are forwarded, and that the hostile frames are
// counted by reason.
func TestKernelForwardsOnlyItsKey(t *testing.T) {
	h := newProgHarness(t)
	seeds := seedFrames(t)
	var p packet.Parsed
	(&packet.Decoder{}).Decode(&p, seeds[0])
	key := flow.KeyOf(&p, testInPort)
	list := actionList{N: 1, LastOut: 0}
	list.Acts[0] = kernelAction{Type: uint8(flow.ActOutput), W: testIfindex, H: testOutSlot}
	if err := h.objs.Actions.Put(uint32(1), &list); err != nil {
		t.Fatal(err)
	}
	if err := h.objs.Flows.Put(toKernelKey(&key), &flowValue{Acts: 1}); err != nil {
		t.Fatal(err)
	}
	if v, err := h.run(seeds[0]); err != nil || v.ret != tcActRedirect {
		t.Fatalf("the flow's own frame: verdict %d, drop %s", v.ret, dropName(v.drop))
	}
	reasons := map[int]bool{}
	for _, f := range seeds {
		h.check(t, f, &key)
		var q packet.Parsed
		(&packet.Decoder{}).Decode(&q, f)
		if q.Drop != packet.DropNone {
			reasons[int(q.Drop)] = true
		}
	}
	if len(reasons) < 8 {
		t.Errorf("the hostile corpus exercises only %d drop reasons", len(reasons))
	}
}

// FuzzKernelParser holds the kernel parser to the Go decoder on any
// frame: same drop reason, same key, and nothing forwarded but the
// installed flow's key.
func FuzzKernelParser(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("skipping: loading BPF programs needs root")
	}
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	h := newProgHarness(f)
	seeds := seedFrames(f)
	var p packet.Parsed
	(&packet.Decoder{}).Decode(&p, seeds[0])
	key := flow.KeyOf(&p, testInPort)
	list := actionList{N: 1, LastOut: 0}
	list.Acts[0] = kernelAction{Type: uint8(flow.ActOutput), W: testIfindex, H: testOutSlot}
	if err := h.objs.Actions.Put(uint32(1), &list); err != nil {
		f.Fatal(err)
	}
	if err := h.objs.Flows.Put(toKernelKey(&key), &flowValue{Acts: 1}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		h.t = t
		h.check(t, frame, &key)
	})
}
