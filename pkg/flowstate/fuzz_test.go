package flowstate

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/nagare/nagare/pkg/packet"
)

// checkPAT verifies that the ports marked in use are exactly those of the
// local SNAT bindings, each held once.
func (t *Table) checkPAT() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	type wire struct {
		zone  uint64
		ip    [16]byte
		sp    int
		port  uint16
		proto uint8
	}
	held := map[wire]bool{}
	for i := range t.top {
		e := t.ent(i)
		if e.flags&fUsed == 0 || e.flags&fOwnsPort == 0 {
			continue
		}
		w := wire{e.fwd.Zone, e.rev.Dst, spaceOf(e.fwd.Proto), e.rev.DstPort, 0}
		if held[w] {
			return fmt.Errorf("port %d of %v held twice", w.port, netip.AddrFrom16(w.ip))
		}
		held[w] = true
		p := t.pools[poolKey{w.zone, w.ip}]
		if p == nil {
			return fmt.Errorf("binding %v has no pool", e.fwd)
		}
		found := false
		for _, b := range p.blocks {
			if b.num == w.port/BlockSize && b.used[w.sp]&(1<<(w.port%BlockSize)) != 0 {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("binding %v: port %d not marked in use", e.fwd, w.port)
		}
	}
	if n, _ := t.portsInUse(); n != len(held) {
		return fmt.Errorf("%d ports marked in use, %d held by bindings", n, len(held))
	}
	return nil
}

func fuzzSeeds(f *testing.F) {
	buf := make([]byte, 256)
	add := func(ops ...[]byte) {
		var in []byte
		for _, o := range ops {
			in = append(in, o...)
		}
		f.Add(in)
	}
	rec := func(op, dt byte, p packet.Probe) []byte {
		n, err := packet.BuildProbe(buf, &p)
		if err != nil {
			panic(err)
		}
		return append([]byte{op, dt, byte(n)}, buf[:n]...)
	}
	syn := packet.Probe{Src: a4, Dst: b4, Proto: packet.IPProtoTCP, SrcPort: 1000, DstPort: 80}
	synack := packet.Probe{Src: b4, Dst: a4, Proto: packet.IPProtoTCP, SrcPort: 80, DstPort: 1000, TCPFlags: packet.TCPSyn | packet.TCPAck}
	u6 := packet.Probe{Src: a6, Dst: b6, Proto: packet.IPProtoUDP, SrcPort: 5, DstPort: 53}
	echo := packet.Probe{Src: a4, Dst: b4, SrcPort: 9}
	add(rec(0, 0, syn), rec(0, 1, synack), rec(3, 200, syn))
	add(rec(1, 0, syn), rec(1, 0, u6), rec(1, 0, echo), rec(4, 0, syn), rec(3, 255, u6))
	add(rec(0, 0, u6), rec(5, 0, u6), rec(6, 10, u6), rec(2, 0, echo))
}

// FuzzConntrack drives a small table with a sequence of arbitrary frames,
// each applied as one operation (track as the simulation would, translate,
// look up as a related ICMP error, sweep, remove, import, touch) after a
// clock step, and checks the table's invariants after every one: both keys
// of every entry indexed, lists and counts consistent, the bounds held,
// every SNAT port held by one binding only.
func FuzzConntrack(f *testing.F) {
	fuzzSeeds(f)
	targets := []Target{{From: netip.MustParseAddr("203.0.113.1"), To: netip.MustParseAddr("203.0.113.2"), PortFrom: 1024, PortTo: 1151},
		{From: netip.MustParseAddr("2001:db8:ff::1"), PortFrom: 5000, PortTo: 5063}}
	f.Fuzz(func(t *testing.T, data []byte) {
		tb := New(Config{MaxEntries: 64, MaxPerZone: 24})
		var p packet.Parsed
		var tx Tx
		now := int64(0)
		for len(data) >= 3 {
			op, dt, n := data[0], data[1], int(data[2])
			data = data[3:]
			n = min(n, len(data))
			fr := data[:n]
			data = data[n:]
			now += int64(dt) * sec
			p.Decode(fr)
			zone := uint64(op>>4) % 3
			k, ok := KeyOf(&p)
			k.Zone = zone
			switch op % 7 {
			case 0: // conntrack as the simulation does it
				if !ok {
					break
				}
				k.Type = KeyConn
				if m := tb.Lookup(&k, p.TCPFlags, now); !m.Found {
					rev := k.Reverse()
					rev.Zone = (zone + 1) % 3
					tx.Reset()
					tx.Add(NewConn(k, rev, p.TCPFlags))
					if err := tb.Commit(&tx, now); err != nil && !errors.Is(err, ErrExists) && !errors.Is(err, ErrZoneFull) && !errors.Is(err, ErrTableFull) {
						t.Fatal(err)
					}
				}
			case 1: // source NAT
				if !ok {
					break
				}
				k.Type = KeyFwdSNAT
				if tb.Lookup(&k, p.TCPFlags, now).Found {
					break
				}
				tx.Reset()
				if _, err := tb.AllocSNAT(&tx, "r", &k, targets, p.TCPFlags, now); err != nil {
					break
				}
				if op&8 != 0 {
					tb.Abort(&tx, now)
				} else {
					_ = tb.Commit(&tx, now)
				}
			case 2: // an ICMP error: related if it quotes a tracked packet
				if ik, ok := InnerKeyOf(&p); ok {
					rk := ik.Reverse()
					rk.Zone, rk.Type = zone, KeyConn
					tb.Lookup(&rk, 0, now)
				}
			case 3:
				tb.Sweep(now, int(dt%8), nil)
			case 4:
				k.Type = KeyConn
				tb.Remove(&k, now)
			case 5: // a peer's push
				if ok {
					rev := k.Reverse()
					rev.Zone = zone + 1
					e := NewConn(k, rev, p.TCPFlags)
					_ = tb.Import(&e, now)
				}
			case 6:
				k.Type = KeyConn
				tb.Touch(&k, now)
			}
			if err := tb.check(); err != nil {
				t.Fatal(err)
			}
			if err := tb.checkPAT(); err != nil {
				t.Fatal(err)
			}
			if tb.Len() > 64 || tb.ZoneLen(0) > 24 || tb.ZoneLen(1) > 24 || tb.ZoneLen(2) > 24 {
				t.Fatalf("bounds exceeded: %d entries, zones %d/%d/%d", tb.Len(), tb.ZoneLen(0), tb.ZoneLen(1), tb.ZoneLen(2))
			}
		}
	})
}
