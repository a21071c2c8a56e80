package agent

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/packet"
)

// BenchmarkStatePacketNewConnection: what a new masqueraded connection
// costs the agents beyond the simulation: the ingress host encodes the
// walk's entries (a tracked connection and an SNAT binding) into a state
// packet, the peer decodes and imports them into its table. The table is
// swept as the agent's sweeper would, so it stays at a steady size.
func BenchmarkStatePacketNewConnection(b *testing.B) {
	a := testAgent("", "host-b")
	a.cfg.ConntrackZoneMax = flowstate.DefaultMaxEntries
	a.fs = a.newFlowState() // one zone may hold the whole steady state
	buf := make([]byte, 0, 256)
	tags := make([]uint64, 0, 16)
	src := netip.MustParseAddr("10.0.0.5").As16()
	now := time.Now().UnixNano()
	base := tcpKey(7, "10.0.0.5", 0, "192.0.2.9", 443)
	pub := netip.MustParseAddr("203.0.113.1").As16()
	var bytes int
	b.ReportAllocs()
	i := uint32(0)
	for b.Loop() {
		i++
		fwd := base
		binary.BigEndian.PutUint32(src[12:], 0x0a000000|i>>16)
		fwd.Src, fwd.SrcPort = src, uint16(i)
		rev := fwd.Reverse()
		rev.Zone = 9
		conn := flowstate.NewConn(fwd, rev, packet.TCPSyn)
		// The SNAT binding of the same connection on router zone 9.
		snat := flowstate.Entry{Fwd: fwd, Rev: fwd.Reverse(), State: conn.State}
		snat.Fwd.Zone, snat.Rev.Zone = 9, 9
		snat.Fwd.Type, snat.Rev.Type = flowstate.KeyFwdSNAT, flowstate.KeyRevSNAT
		snat.Rev.Dst, snat.Rev.DstPort = pub, uint16(i%64000)+1024
		binary.BigEndian.PutUint16(snat.Rev.Dst[14:], uint16(i/64000))
		buf, _ = flowstate.AppendStatePacket(buf[:0], []flowstate.Entry{conn, snat})
		bytes = len(buf)
		tags = a.importState(netip.Addr{}, buf, tags[:0])
		if len(tags) != 4 {
			b.Fatalf("%d tags: an entry was refused (%+v)", len(tags), a.fs.Stats())
		}
		if i%4096 == 0 {
			now += int64(time.Second)
			a.fs.Sweep(now, 0, nil)
		}
	}
	b.ReportMetric(float64(bytes), "bytes/packet")
}
