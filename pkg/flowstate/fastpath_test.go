package flowstate

import (
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/packet"
)

func TestStateMerge(t *testing.T) {
	est := State(PhaseEstablished) | replied
	cases := []struct {
		name    string
		a, b    State
		want    State
		wantPh  Phase
		replied bool
	}{
		{"same", est, est, est, PhaseEstablished, true},
		{"new and replied", State(PhaseNew), est, est, PhaseEstablished, true},
		{"a reply bit alone establishes", State(PhaseNew), replied, est, PhaseEstablished, true},
		{"fin each side is time-wait", State(PhaseFinWait) | finFwd | replied, State(PhaseFinWait) | finRev | replied,
			State(PhaseTimeWait) | finFwd | finRev | replied, PhaseTimeWait, true},
		{"a fin moves established on", est, State(PhaseFinWait) | finFwd, State(PhaseFinWait) | finFwd | replied, PhaseFinWait, true},
		{"closed stays closed", State(PhaseClosed) | replied, State(PhaseFinWait) | finFwd | finRev,
			State(PhaseClosed) | finFwd | finRev | replied, PhaseClosed, true},
		{"unanswered stays new", State(PhaseNew), State(PhaseNew), State(PhaseNew), PhaseNew, false},
	}
	for _, c := range cases {
		for _, order := range [][2]State{{c.a, c.b}, {c.b, c.a}} {
			got := order[0].Merge(order[1])
			if got != c.want || got.Phase() != c.wantPh || got.Replied() != c.replied {
				t.Errorf("%s: %#x.Merge(%#x) = %#x (%s), want %#x (%s)", c.name, order[0], order[1], got, got.Phase(), c.want, c.wantPh)
			}
		}
	}
}

// TestTimeoutClasses checks the exported class view against the
// timeouts the table applies.
func TestTimeoutClasses(t *testing.T) {
	to := Timeouts{TCPEstablished: time.Hour, UDPNew: 7 * time.Second}
	by := to.ByClass()
	def := DefaultTimeouts()
	cases := []struct {
		proto uint8
		s     State
		want  time.Duration
	}{
		{packet.IPProtoTCP, State(PhaseNew), def.TCPSynSent},
		{packet.IPProtoTCP, State(PhaseEstablished), time.Hour},
		{packet.IPProtoTCP, State(PhaseFinWait), def.TCPFinWait},
		{packet.IPProtoTCP, State(PhaseTimeWait), def.TCPTimeWait},
		{packet.IPProtoTCP, State(PhaseClosed), def.TCPClosed},
		{packet.IPProtoUDP, State(PhaseNew), 7 * time.Second},
		{packet.IPProtoUDP, State(PhaseEstablished) | replied, def.UDPEstablished},
		{packet.IPProtoICMPv4, State(PhaseNew), def.ICMPNew},
		{packet.IPProtoICMPv6, State(PhaseEstablished), def.ICMPReplied},
		{packet.IPProtoGRE, State(PhaseNew), def.OtherNew},
		{packet.IPProtoGRE, State(PhaseEstablished), def.OtherReplied},
	}
	for _, c := range cases {
		if got := by[TimeoutClass(c.proto, c.s)]; got != c.want {
			t.Errorf("proto %d %s: %s, want %s", c.proto, c.s.Phase(), got, c.want)
		}
	}
}

// TestSeenAndLifetime: a fast path's observations refresh the entry and
// merge its state; an entry the table no longer holds is reported stale.
func TestSeenAndLifetime(t *testing.T) {
	tb := New(Config{})
	fwd := tcp(1, "10.0.0.1", 1000, "10.0.0.2", 80)
	if err := conn(tb, fwd, 2, packet.TCPSyn, 0); err != nil {
		t.Fatal(err)
	}
	fwd.Type = KeyConn
	e, exp, ok := tb.Lifetime(&fwd, sec)
	if !ok || exp != 30*sec || e.State.Phase() != PhaseNew {
		t.Fatalf("Lifetime after a SYN: %v %d %v, want new, 30 s", ok, exp, e.State.Phase())
	}
	// The fast path saw the SYN-ACK and a FIN 20 s later.
	seen := e
	seen.State = State(PhaseFinWait) | finRev | replied
	if alive, changed := tb.Seen(&seen, 20*sec); !alive || !changed {
		t.Fatalf("Seen: alive %v changed %v, want both", alive, changed)
	}
	e, exp, ok = tb.Lifetime(&fwd, 21*sec)
	if !ok || e.State.Phase() != PhaseFinWait || !e.State.Replied() || exp != 20*sec+int64(DefaultTimeouts().TCPFinWait) {
		t.Fatalf("after Seen: %v %s replied %v expires %d", ok, e.State.Phase(), e.State.Replied(), exp)
	}
	// An older observation changes the state but not the lifetime.
	old := e
	old.State = State(PhaseClosed)
	if alive, _ := tb.Seen(&old, 5*sec); !alive {
		t.Fatal("Seen: entry reported gone")
	}
	if alive, changed := tb.Seen(&old, 5*sec); !alive || changed {
		t.Errorf("Seen of what the table already knows: alive %v changed %v, want alive and unchanged", alive, changed)
	}
	e, _, _ = tb.Lifetime(&fwd, 21*sec)
	if e.State.Phase() != PhaseClosed {
		t.Errorf("phase %s after a RST seen, want closed", e.State.Phase())
	}
	if _, exp2, _ := tb.Lifetime(&fwd, 21*sec); exp2 != 20*sec+int64(DefaultTimeouts().TCPClosed) {
		t.Errorf("closed entry expires at %d, want 10 s after the last packet", exp2)
	}
	// The reverse key alone, or another entry's keys, are not this entry.
	rev := e
	rev.Fwd, rev.Rev = e.Rev, e.Fwd
	if alive, _ := tb.Seen(&rev, 21*sec); alive {
		t.Error("Seen accepted the entry's keys swapped")
	}
	if _, ok := tb.Remove(&fwd, 22*sec); !ok {
		t.Fatal("Remove")
	}
	if alive, _ := tb.Seen(&e, 22*sec); alive {
		t.Error("Seen of a removed entry reported it alive")
	}
	if _, _, ok := tb.Lifetime(&fwd, 22*sec); ok {
		t.Error("Lifetime of a removed entry")
	}
	if err := tb.check(); err != nil {
		t.Fatal(err)
	}
}
