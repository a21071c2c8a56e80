package statesync

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
	a := testSync("", "host-b", 0, flowstate.DefaultMaxEntries) // one zone may hold the whole steady state
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
		tags, _ = a.importState(netip.Addr{}, buf, tags[:0], nil)
		if len(tags) != 4 {
			b.Fatalf("%d tags: an entry was refused (%+v)", len(tags), a.table.Stats())
		}
		if i%4096 == 0 {
			now += int64(time.Second)
			a.table.Sweep(now, 0, nil)
		}
	}
	b.ReportMetric(float64(bytes), "bytes/packet")
}

// BenchmarkSaveRestoreState: saving a table of 2^19 entries (half the
// default bound) and loading it back, as an agent restart does. Saving
// holds the table's lock while the entries are encoded (misses wait).
func BenchmarkSaveRestoreState(b *testing.B) {
	const n = 1 << 19 // connections, one entry each
	a := testSync(b.TempDir(), "host-a", 0, flowstate.DefaultMaxEntries)
	now := time.Now()
	var tx flowstate.Tx
	src := netip.MustParseAddr("10.0.0.0").As16()
	base := tcpKey(7, "10.0.0.5", 0, "192.0.2.9", 443)
	for i := range n {
		fwd := base
		binary.BigEndian.PutUint32(src[12:], 0x0a000000|uint32(i)>>16)
		fwd.Src, fwd.SrcPort = src, uint16(i)
		rev := fwd.Reverse()
		rev.Zone = 9
		tx.Reset()
		tx.Add(flowstate.NewConn(fwd, rev, packet.TCPSyn))
		if err := a.table.Commit(&tx, now.UnixNano()); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("save", func(b *testing.B) {
		for b.Loop() {
			if err := a.Save(true); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(a.saver.buf))/n, "bytes/entry")
	})
	// One lock hold of the save: a chunk of saveChunk slots.
	b.Run("chunk-under-lock", func(b *testing.B) {
		buf := make([]byte, 0, 1<<20)
		put := func(e *flowstate.Entry, ttl time.Duration) bool {
			buf = binary.BigEndian.AppendUint32(buf, uint32(ttl.Milliseconds()))
			buf = flowstate.AppendEntry(buf, e)
			return true
		}
		from := 0
		for b.Loop() {
			buf = buf[:0]
			if from = a.table.RangeTTLFrom(from, saveChunk, now.UnixNano(), put); from < 0 {
				from = 0
			}
		}
	})
	b.Run("restore", func(b *testing.B) {
		for b.Loop() {
			c := testSync(a.cfg.StateDir, "host-a", 0, flowstate.DefaultMaxEntries)
			if got, _, err := c.restore(a.statePath(), now); err != nil || got != n {
				b.Fatalf("restored %d of %d: %v", got, n, err)
			}
		}
	})
}
