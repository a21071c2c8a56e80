package flowstate

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/packet"
)

const (
	zoneA = 0xa
	zoneB = 0xb
	zoneR = 0x1
)

func TestConnForwardAndReply(t *testing.T) {
	tb := New(Config{})
	fwd := tcp(zoneA, "10.0.0.5", 40000, "192.0.2.9", 80)
	if m := look(tb, fwd, packet.TCPSyn, 0); m.Found {
		t.Fatal("found before commit")
	}
	if err := conn(tb, fwd, zoneB, packet.TCPSyn, 0); err != nil {
		t.Fatal(err)
	}
	m := look(tb, fwd, packet.TCPSyn, 1)
	if !m.Found || m.Reply || m.Conn() != CTNew || m.State.Phase() != PhaseNew {
		t.Fatalf("forward lookup: %+v conn %v", m, m.Conn())
	}
	// The reply enters zone B with the reversed tuple.
	rep := fwd.Reverse()
	rep.Zone = zoneB
	m = look(tb, rep, packet.TCPSyn|packet.TCPAck, 2)
	if !m.Found || !m.Reply || m.Conn() != CTEstablished || m.State.Phase() != PhaseEstablished {
		t.Fatalf("reply lookup: %+v conn %v", m, m.Conn())
	}
	// Now the forward direction is established too.
	if m := look(tb, fwd, packet.TCPAck, 3); m.Conn() != CTEstablished {
		t.Fatalf("forward after reply: %v", m.Conn())
	}
	// The reversed tuple in zone A is not the reply: zones separate.
	wrong := fwd.Reverse()
	if m := look(tb, wrong, packet.TCPAck, 4); m.Found {
		t.Fatal("reply tuple found in the forward zone")
	}
	if err := tb.check(); err != nil {
		t.Fatal(err)
	}
}

func TestTimeoutsByPhase(t *testing.T) {
	to := DefaultTimeouts()
	cases := []struct {
		name   string
		fwd    Key
		flags  uint8
		reply  uint8 // flags of a reply, 0xff = no reply
		closer uint8 // flags of a later forward packet, 0 = none
		life   time.Duration
	}{
		{"tcp syn unanswered", tcp(zoneA, "10.0.0.5", 1, "192.0.2.9", 80), packet.TCPSyn, 0xff, 0, to.TCPSynSent},
		{"tcp established", tcp(zoneA, "10.0.0.5", 2, "192.0.2.9", 80), packet.TCPSyn, packet.TCPSyn | packet.TCPAck, 0, to.TCPEstablished},
		{"tcp fin", tcp(zoneA, "10.0.0.5", 3, "192.0.2.9", 80), packet.TCPSyn, packet.TCPSyn | packet.TCPAck, packet.TCPFin | packet.TCPAck, to.TCPFinWait},
		{"tcp rst", tcp(zoneA, "10.0.0.5", 4, "192.0.2.9", 80), packet.TCPSyn, packet.TCPSyn | packet.TCPAck, packet.TCPRst, to.TCPClosed},
		{"udp one way", udp(zoneA, "10.0.0.5", 5, "192.0.2.9", 53), 0, 0xff, 0, to.UDPNew},
		{"udp both ways", udp(zoneA, "10.0.0.5", 6, "192.0.2.9", 53), 0, 0, 0, to.UDPEstablished},
		{"gre", key(zoneA, packet.IPProtoGRE, "10.0.0.5", 0, "192.0.2.9", 0), 0, 0xff, 0, to.OtherNew},
	}
	for _, c := range cases {
		tb := New(Config{})
		if err := conn(tb, c.fwd, zoneA, c.flags, 0); err != nil {
			t.Fatal(err)
		}
		now := int64(0)
		if c.reply != 0xff {
			now++
			look(tb, c.fwd.Reverse(), c.reply, now)
		}
		if c.closer != 0 {
			now++
			look(tb, c.fwd, c.closer, now)
		}
		life := int64(c.life)
		if m := look(tb, c.fwd, 0, now+life-1); !m.Found {
			t.Errorf("%s: gone before its %v timeout", c.name, c.life)
			continue
		}
		// That lookup refreshed it: it lives one full timeout from then.
		if m := look(tb, c.fwd, 0, now+2*life); m.Found {
			t.Errorf("%s: alive %v after its last packet, timeout %v", c.name, time.Duration(life+1), c.life)
		}
		if tb.Len() != 0 || tb.Stats().Expired != 1 {
			t.Errorf("%s: %d entries left, %d expired", c.name, tb.Len(), tb.Stats().Expired)
		}
	}
}

func TestTCPStateMachine(t *testing.T) {
	type step struct {
		reply bool
		flags uint8
		want  Phase
	}
	S, A, F, R := packet.TCPSyn, packet.TCPAck, packet.TCPFin, packet.TCPRst
	cases := []struct {
		name  string
		steps []step
	}{
		{"handshake", []step{{false, S, PhaseNew}, {true, S | A, PhaseEstablished}, {false, A, PhaseEstablished}}},
		{"close both ways", []step{{false, S, PhaseNew}, {true, S | A, PhaseEstablished}, {false, F | A, PhaseFinWait}, {true, F | A, PhaseTimeWait}, {false, A, PhaseTimeWait}}},
		{"reset", []step{{false, S, PhaseNew}, {true, R | A, PhaseClosed}}},
		{"port reuse after close", []step{{false, S, PhaseNew}, {true, S | A, PhaseEstablished}, {false, R, PhaseClosed}, {false, S, PhaseNew}}},
		{"reply without syn-ack (missed)", []step{{false, S, PhaseNew}, {true, A, PhaseEstablished}}},
		{"retransmitted syn", []step{{false, S, PhaseNew}, {false, S, PhaseNew}}},
		{"fin before reply", []step{{false, S, PhaseNew}, {false, F, PhaseFinWait}}},
	}
	for _, c := range cases {
		var s State
		for i, st := range c.steps {
			if i == 0 {
				s = initialState(packet.IPProtoTCP, st.flags)
			} else {
				s = s.advance(packet.IPProtoTCP, st.flags, st.reply)
			}
			if s.Phase() != st.want {
				t.Errorf("%s step %d: phase %v, want %v", c.name, i, s.Phase(), st.want)
			}
		}
	}
}

func TestSweepReportsTagsAndTouchKeepsAlive(t *testing.T) {
	tb := New(Config{})
	a := udp(zoneA, "10.0.0.5", 1000, "192.0.2.9", 53)
	b := udp(zoneA, "10.0.0.6", 1000, "192.0.2.9", 53)
	for _, k := range []Key{a, b} {
		if err := conn(tb, k, zoneB, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	life := int64(DefaultTimeouts().UDPNew)
	// The agent touches a's key (its flow is forwarding); b is idle.
	ka := a
	ka.Type = KeyConn
	if !tb.Touch(&ka, life-1) {
		t.Fatal("Touch did not find a")
	}
	tags, n := tb.Sweep(life, 0, nil)
	if n != 1 || len(tags) != 2 {
		t.Fatalf("sweep removed %d, %d tags; want b and its two keys", n, len(tags))
	}
	kb := b
	kb.Type = KeyConn
	rb := kb.Reverse()
	rb.Zone = zoneB
	if !slices.Contains(tags, kb.Tag()) || !slices.Contains(tags, rb.Tag()) {
		t.Fatalf("sweep tags %x do not name b's keys", tags)
	}
	if _, ok := tb.Get(&ka); !ok {
		t.Fatal("touched entry swept")
	}
	// Remove queues the tags for the next sweep.
	if _, ok := tb.Remove(&ka, life); !ok {
		t.Fatal("Remove did not find a")
	}
	if tags, _ := tb.Sweep(life, 0, nil); len(tags) != 2 || !slices.Contains(tags, ka.Tag()) {
		t.Fatalf("tags after Remove: %x", tags)
	}
	if err := tb.check(); err != nil {
		t.Fatal(err)
	}
}

func TestCommitConflicts(t *testing.T) {
	tb := New(Config{})
	fwd := tcp(zoneA, "10.0.0.5", 1, "192.0.2.9", 80)
	if err := conn(tb, fwd, zoneB, packet.TCPSyn, 0); err != nil {
		t.Fatal(err)
	}
	// The same connection committed again (two walks raced): a refresh.
	if err := conn(tb, fwd, zoneB, packet.TCPSyn, 1); err != nil {
		t.Fatalf("same entry twice: %v", err)
	}
	// A different entry claiming the same reverse key is refused.
	other := tcp(zoneA, "10.0.0.6", 1, "192.0.2.9", 80)
	rev := fwd.Reverse()
	rev.Zone = zoneB
	var tx Tx
	tx.Add(NewConn(other, rev, packet.TCPSyn))
	if err := tb.Commit(&tx, 2); !errors.Is(err, ErrExists) {
		t.Fatalf("clashing reverse key: %v", err)
	}
	// A LAND packet (source = destination) cannot be both its own keys.
	land := tcp(zoneA, "10.0.0.5", 7, "10.0.0.5", 7)
	if err := conn(tb, land, zoneA, packet.TCPSyn, 3); !errors.Is(err, ErrExists) {
		t.Fatalf("land: %v", err)
	}
	// Once expired, the clashing entry gives way.
	tx.Reset()
	tx.Add(NewConn(other, rev, packet.TCPSyn))
	if err := tb.Commit(&tx, 3+int64(DefaultTimeouts().TCPSynSent)); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if s := tb.Stats(); s.Entries != 1 || s.RefusedExists != 2 || s.Expired != 1 {
		t.Fatalf("stats %+v", s)
	}
	if err := tb.check(); err != nil {
		t.Fatal(err)
	}
}

func TestImport(t *testing.T) {
	a, b := New(Config{}), New(Config{})
	fwd := udp(zoneA, "10.0.0.5", 1, "192.0.2.9", 53)
	rev := fwd.Reverse()
	rev.Zone = zoneB
	var tx Tx
	tx.Add(NewConn(fwd, rev, 0))
	if err := a.Commit(&tx, 0); err != nil {
		t.Fatal(err)
	}
	// Host a pushes what it created; host b (where replies enter) imports.
	for _, e := range tx.Entries() {
		if err := b.Import(&e, 0); err != nil {
			t.Fatal(err)
		}
	}
	rk := rev
	rk.Type = KeyConn
	if m := b.Lookup(&rk, 0, 1); !m.Found || !m.Reply {
		t.Fatalf("imported entry: %+v", m)
	}
	// A repeated push refreshes, keeping what b learnt (the reply).
	e := tx.Entries()[0]
	if err := b.Import(&e, 2); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Get(&rk); !got.State.Replied() {
		t.Fatal("import forgot the reply")
	}
	if s := b.Stats(); s.Imported != 2 || s.Entries != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestZoneAndTableBounds(t *testing.T) {
	tb := New(Config{MaxEntries: 10, MaxPerZone: 4})
	for i := range 6 {
		err := conn(tb, udp(zoneA, "10.0.0.5", uint16(i+1), "192.0.2.9", 53), zoneA, 0, 0)
		if i < 4 && err != nil || i >= 4 && !errors.Is(err, ErrZoneFull) {
			t.Fatalf("zone A conn %d: %v", i, err)
		}
	}
	for _, z := range []uint64{zoneB, 0xc} {
		for i := range 4 {
			if err := conn(tb, udp(z, "10.0.0.5", uint16(i+1), "192.0.2.9", 53), z, 0, 0); err != nil && tb.Len() < 10 {
				t.Fatalf("zone %x conn %d: %v", z, i, err)
			}
		}
	}
	if err := conn(tb, udp(0xd, "10.0.0.5", 1, "192.0.2.9", 53), 0xd, 0, 0); !errors.Is(err, ErrTableFull) {
		t.Fatalf("11th entry: %v", err)
	}
	s := tb.Stats()
	if s.Entries != 10 || s.RefusedZoneFull != 2 || s.RefusedFull != 3 { // zone c got 2 of 4, the 11th none
		t.Fatalf("stats %+v", s)
	}
	// Expired entries make room for new ones without a sweep.
	later := int64(DefaultTimeouts().UDPNew)
	if err := conn(tb, udp(0xd, "10.0.0.5", 1, "192.0.2.9", 53), 0xd, 0, later); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if err := tb.check(); err != nil {
		t.Fatal(err)
	}
}

func TestChurnKeepsIndexConsistent(t *testing.T) {
	tb := New(Config{MaxEntries: 5000})
	now := int64(0)
	for round := range 20 {
		for i := range 3000 {
			k := udp(uint64(i%7), "10.0.0.5", uint16(i), "192.0.2.9", uint16(round))
			_ = conn(tb, k, uint64(i%5), 0, now)
		}
		now += int64(DefaultTimeouts().UDPNew) / 2
		tb.Sweep(now, 1000, nil)
		if err := tb.check(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

func TestPeekChangesNothing(t *testing.T) {
	tb := New(Config{})
	fwd := udp(zoneA, "10.0.0.5", 1, "192.0.2.9", 53)
	if err := conn(tb, fwd, zoneB, 0, 0); err != nil {
		t.Fatal(err)
	}
	rev := fwd.Reverse()
	rev.Zone, rev.Type = zoneB, KeyConn
	// An ICMP error from the server's side is a reply-direction packet:
	// peeked, it must neither establish the connection nor extend it.
	if m := tb.Peek(&rev, 5*sec); !m.Found || !m.Reply || m.State.Replied() {
		t.Fatalf("peek: %+v", m)
	}
	life := int64(DefaultTimeouts().UDPNew)
	if m := tb.Peek(&rev, life); m.Found {
		t.Fatal("peek extended the entry's life")
	}
	if e, _ := tb.Get(&rev); e.State.Replied() {
		t.Fatal("peek marked the connection replied")
	}
}
