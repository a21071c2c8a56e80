package packet

import (
	"testing"
)

var (
	sinkInt  int
	sinkBool bool
	sinkSum  uint16
)

func BenchmarkDecodeTCP4(b *testing.B) {
	f := tcp4Frame()
	var p Parsed
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	for b.Loop() {
		p.Decode(f)
	}
	sinkInt = p.PayloadOff
}

func BenchmarkDecodeTCP6ExtHeaders(b *testing.B) {
	f := v6Frame(IPProtoHopByHop, ext6(IPProtoDestOpts, 0), ext6(IPProtoFragment, 0), frag6(IPProtoTCP, 0, false, 1), tcpH(c6, s6, 1, 2, 3, 4, TCPAck, nil))
	var p Parsed
	b.ReportAllocs()
	for b.Loop() {
		p.Decode(f)
	}
	sinkInt = p.PayloadOff
}

// BenchmarkDecodeVXLANInner is the receive path of an overlay packet:
// decode the outer frame, then the inner frame it carries.
func BenchmarkDecodeVXLANInner(b *testing.B) {
	f := vxlanFrame(0x1234, tcp4Frame())
	var outer, inner Parsed
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	for b.Loop() {
		outer.Decode(f)
		inner.Decode(outer.Inner())
	}
	sinkInt = inner.PayloadOff
}

func BenchmarkRewriteNAT4(b *testing.B) {
	f := tcp4Frame()
	var p Parsed
	p.Decode(f)
	a1, a2 := ap("203.0.113.1"), ap("203.0.113.2")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a := a1
		if i&1 == 1 {
			a = a2
		}
		p.SetSrcIP(a)
		p.SetSrcPort(uint16(i))
		p.SetEthDst(macB)
		f[14+8] = 64 // keep the TTL from running out
		p.TTL = 64
		sinkBool = p.DecTTL()
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	for i := range buf {
		buf[i] = byte(i)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		sinkSum = Checksum(buf, 0)
	}
}

func benchBuild(b *testing.B, fn func(dst []byte) (int, error)) {
	buf := make([]byte, 2048)
	b.ReportAllocs()
	for b.Loop() {
		n, err := fn(buf)
		if err != nil {
			b.Fatal(err)
		}
		sinkInt = n
	}
}

func BenchmarkBuildARPReply(b *testing.B) {
	req := decode(arpReqFrame())
	benchBuild(b, func(d []byte) (int, error) { return BuildARPReply(d, req, macB) })
}

func BenchmarkBuildICMPv4EchoReply(b *testing.B) {
	req := decode(echo4Frame())
	benchBuild(b, func(d []byte) (int, error) { return BuildICMPv4EchoReply(d, req) })
}

func BenchmarkBuildICMPv4FragNeeded(b *testing.B) {
	orig := decode(bigTCP4())
	src := ap("10.0.0.254")
	benchBuild(b, func(d []byte) (int, error) { return BuildICMPv4FragNeeded(d, orig, src, 1400) })
}

func BenchmarkBuildICMPv6TimeExceeded(b *testing.B) {
	orig := decode(tcp6Frame())
	src := ap("2001:db8::fe")
	benchBuild(b, func(d []byte) (int, error) { return BuildICMPv6TimeExceeded(d, orig, src) })
}

func BenchmarkBuildNeighborAdvert(b *testing.B) {
	ns := decode(nsFrame())
	benchBuild(b, func(d []byte) (int, error) { return BuildNeighborAdvert(d, ns, macB, false) })
}

func BenchmarkBuildTCPReset(b *testing.B) {
	seg := decode(tcp4Frame())
	benchBuild(b, func(d []byte) (int, error) { return BuildTCPReset(d, seg) })
}

func BenchmarkBuildUDP4(b *testing.B) {
	h := UDP4{EthSrc: macR, EthDst: macA, Src: ap(s4), Dst: ap(c4), SrcPort: 67, DstPort: 68}
	benchBuild(b, func(d []byte) (int, error) { return BuildUDP4(d, h, 300) }) // a BOOTP-sized reply
}

func BenchmarkEncapVXLAN(b *testing.B) {
	inner := tcp4Frame()
	benchBuild(b, func(d []byte) (int, error) { return EncapVXLAN(d, inner, 42) })
}

// TestZeroAllocs holds the per-packet path to zero allocations, where the
// benchmarks only report them.
func TestZeroAllocs(t *testing.T) {
	var p, inner Parsed
	buf := make([]byte, 2048)
	frames := seedFrames()
	tcp := tcp4Frame()
	req, echo, ns, seg := decode(arpReqFrame()), decode(echo4Frame()), decode(nsFrame()), decode(tcp6Frame())
	nat := ap("198.51.100.1")
	cases := map[string]func(){
		"Decode": func() {
			for _, f := range frames {
				p.Decode(f)
			}
		},
		"Decode malformed": func() {
			for _, f := range frames {
				p.Decode(f[:len(f)/2])
			}
		},
		"Decode VXLAN inner": func() {
			p.Decode(frames[8])
			inner.Decode(p.Inner())
		},
		"Drop.String": func() { sinkInt = len(DropBadGRE.String()) },
		"rewrites": func() {
			p.Decode(tcp)
			p.SetSrcIP(nat)
			p.SetDstPort(8080)
			p.SetEthSrc(macB)
			p.DecTTL()
		},
		"builders": func() {
			BuildARPReply(buf, req, macB)
			BuildICMPv4EchoReply(buf, echo)
			BuildICMPv4TimeExceeded(buf, echo, ap("10.0.0.254"))
			BuildNeighborAdvert(buf, ns, macB, true)
			BuildTCPReset(buf, seg)
			BuildICMPv6PacketTooBig(buf, seg, ap("2001:db8::fe"), 1280)
			BuildNeighborSolicit(buf, macA, ap(c6), ap(s6))
			BuildARPRequest(buf, macA, ap(c4), ap(s4))
			BuildUDP4(buf, UDP4{Src: nat, Dst: nat}, 300)
			BuildTCPReset(buf[:10], seg) // error path
		},
		"tunnels": func() {
			n, _ := EncapVXLAN(buf, tcp, 5)
			DecapVXLAN(buf[:n])
			n, _ = EncapGRE(buf, tcp, 5)
			DecapGRE(buf[:n])
		},
	}
	for name, fn := range cases {
		if a := testing.AllocsPerRun(100, fn); a != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, a)
		}
	}
}
