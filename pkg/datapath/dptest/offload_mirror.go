//go:build linux

package dptest

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// testOffloadMirror: a VM's TCP stream whose flow also mirrors to a
// remote endpoint (a tap mirror). The peer VM gets the stream, and the
// copies leave as the underlay carries them: a GSO super-frame is cut
// into complete segments first, each copy one unfragmented GRE packet
// within the underlay's MTU (a 64 KiB copy, sent with DF, would be
// refused). Offload case: it runs on the namespace fixture.
func testOffloadMirror(t *testing.T, fx Fixture) {
	p := newPair(t, fx)
	// The VMs' MTU is an overlay network's, as Neutron sets it (the
	// underlay's 1500 less VXLAN's 50), which leaves the mirror's GRE room.
	a := p.a.addTCPVM("a", 1, 101, offA, macVM1, 1450)
	b := p.a.addTCPVM("b", 2, 102, offB, macVM2, 1450)
	a.neighbor(offB, macVM2)
	b.neighbor(offA, macVM1)
	const key = 4242
	p.a.miss.setScript(installBoth(t, p.a.dp, 0, nil, func(u *datapath.Upcall) []flow.Action {
		if u.InPort == a.cfg.Index {
			return []flow.Action{{Type: flow.ActMirror, Tunnel: packet.TunnelGRE, Underlay: underB, TunnelKey: key}, b.output()}
		}
		return []flow.Action{a.output()}
	}))
	capt, ok := p.b.env.capture(t).(*capture)
	if !ok {
		t.Fatal("the namespace fixture's capture is not an afpacket capture")
	}
	b.listen(5001)
	copies, bad := make(chan int, 1), make(chan string, 1)
	stop := make(chan struct{})
	go func() { copies <- readMirrorCopies(capt, key, stop, bad) }()
	err := a.transfer(netip.AddrPortFrom(offB, 5001), 1<<20)
	time.Sleep(quietPeriod) // the last copies
	close(stop)
	n := <-copies
	if err != nil {
		t.Fatal(err)
	}
	superFrames(t, p.a.dp, a.cfg.PortID)
	select {
	case s := <-bad:
		t.Error(s)
	default:
	}
	if d := p.a.dp.Stats().Drops[datapath.DropMirrorTxError]; d > 0 || n < 100 {
		t.Errorf("%d mirror copies of a 1 MiB stream captured, %d refused by the underlay: super-frames were not cut for the mirror", n, d)
	}
	t.Logf("%d mirror copies captured", n)
}

// readMirrorCopies counts the GRE copies with key on c until stop,
// reporting the first one that is not a complete, unfragmented IPv4 TCP
// segment within a 1500-byte MTU on bad.
func readMirrorCopies(c *capture, key uint32, stop <-chan struct{}, bad chan<- string) int {
	bufs, sizes := [][]byte{make([]byte, 65536)}, []int{0}
	n := 0
	for {
		select {
		case <-stop:
			return n
		default:
		}
		k, err := c.io.ReadBatch(bufs, sizes)
		if err != nil || k == 0 {
			continue // afpacket.ErrTimeout: look at stop again
		}
		f := bufs[0][:sizes[0]]
		if len(f) < 34 || binary.BigEndian.Uint16(f[12:]) != packet.EtherTypeIPv4 || f[23] != 47 {
			continue
		}
		var o packet.Parsed
		o.Decode(append([]byte(nil), f...))
		var in packet.Parsed
		switch {
		case binary.BigEndian.Uint16(f[20:])&0x3fff != 0:
			report(bad, fmt.Sprintf("a fragmented GRE copy of %d bytes", len(f)))
		case len(f) > 1514:
			report(bad, fmt.Sprintf("a GRE copy of %d bytes on a 1500-byte underlay", len(f)))
		case o.Drop != packet.DropNone || o.Tunnel != packet.TunnelGRE:
			report(bad, fmt.Sprintf("a copy that does not decode as GRE (%v)", o.Drop))
		case o.TunnelID != key:
			continue
		default:
			in.Decode(o.Inner())
			if in.Drop != packet.DropNone || in.L4 != packet.L4TCP {
				report(bad, fmt.Sprintf("a copy whose inner frame is not a TCP segment (%v)", in.Drop))
			}
			n++
		}
	}
}

func report(bad chan<- string, s string) {
	select {
	case bad <- s:
	default:
	}
}
