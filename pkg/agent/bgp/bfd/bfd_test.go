package bfd

import (
	"bytes"
	"testing"
	"time"
)

func TestWire(t *testing.T) {
	p := Packet{Diag: DiagTimeExpired, State: Up, Poll: true, DetectMult: 3, MyDisc: 7, YourDisc: 9,
		DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 50 * time.Millisecond}
	b := Append(nil, p)
	if len(b) != PacketLen {
		t.Fatalf("%d bytes", len(b))
	}
	got, err := Decode(b)
	if err != nil || got != p {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, p)
	}
	mod := func(b []byte, f func(b []byte)) []byte { c := bytes.Clone(b); f(c); return c }
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"short", b[:23]},
		{"version 0", mod(b, func(b []byte) { b[0] &^= 0xe0 })},
		{"length below 24", mod(b, func(b []byte) { b[3] = 20 })},
		{"length past the datagram", mod(b, func(b []byte) { b[3] = 48 })},
		{"authentication", mod(b, func(b []byte) { b[1] |= 0x04 })},
		{"multipoint", mod(b, func(b []byte) { b[1] |= 0x01 })},
		{"poll and final", mod(b, func(b []byte) { b[1] |= 0x30 })},
		{"detect mult 0", mod(b, func(b []byte) { b[2] = 0 })},
		{"my discriminator 0", mod(b, func(b []byte) { copy(b[4:8], []byte{0, 0, 0, 0}) })},
		{"up without your discriminator", mod(b, func(b []byte) { copy(b[8:12], []byte{0, 0, 0, 0}) })},
	} {
		if p, err := Decode(c.b); err == nil {
			t.Errorf("%s: decoded as %+v", c.name, p)
		}
	}
	down := p
	down.State, down.YourDisc, down.Poll = Down, 0, false
	if _, err := Decode(Append(nil, down)); err != nil {
		t.Errorf("down without your discriminator: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Append(nil, Packet{State: Down, DetectMult: 3, MyDisc: 1, DesiredMinTx: time.Second, RequiredMinRx: 100 * time.Millisecond}))
	f.Add(Append(nil, Packet{State: Up, Final: true, DetectMult: 1, MyDisc: 1, YourDisc: 2}))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes encodes back to the same first 20 bytes (the echo
		// interval and any padding are not kept), modulo the flags this
		// implementation does not carry (C, D).
		again, err := Decode(Append(nil, p))
		if err != nil || again != p {
			t.Fatalf("%x decoded to %+v, which does not survive a round trip: %+v %v", b, p, again, err)
		}
	})
}

// link carries packets between two sessions with a simulated clock.
type link struct {
	a, b     *Session
	now      time.Time
	aOK, bOK bool // whether each side's packets arrive
}

// run advances the clock in steps of 10 ms for d, delivering packets.
func (l *link) run(d time.Duration) {
	for end := l.now.Add(d); l.now.Before(end); l.now = l.now.Add(10 * time.Millisecond) {
		l.a.Tick(l.now)
		l.b.Tick(l.now)
		l.step(l.a, l.b, l.aOK)
		l.step(l.b, l.a, l.bOK)
	}
}

func (l *link) step(from, to *Session, ok bool) {
	for from.Due(l.now) {
		p := from.Next(l.now)
		if !ok {
			continue
		}
		_, now := to.Receive(mustRoundTrip(p), l.now)
		for now {
			q := to.Next(l.now)
			_, now = from.Receive(mustRoundTrip(q), l.now)
		}
	}
}

func mustRoundTrip(p Packet) Packet {
	q, err := Decode(Append(nil, p))
	if err != nil {
		panic(err)
	}
	return q
}

func TestSession(t *testing.T) {
	cfg := Config{Interval: 100 * time.Millisecond, Multiplier: 3}
	l := &link{a: NewSession(cfg, 1), b: NewSession(cfg, 2), now: time.Unix(1000, 0), aOK: true, bOK: true}
	if l.a.TxInterval() != SlowInterval {
		t.Errorf("a Down session sends every %s", l.a.TxInterval())
	}
	// The handshake completes within one slow period and a round trip.
	l.run(1100 * time.Millisecond)
	if l.a.State() != Up || l.b.State() != Up {
		t.Fatalf("after the handshake: %s, %s", l.a.State(), l.b.State())
	}
	l.run(time.Second)
	if l.a.TxInterval() != cfg.Interval || l.a.DetectTime() != 300*time.Millisecond {
		t.Errorf("up: tx every %s, detect in %s", l.a.TxInterval(), l.a.DetectTime())
	}
	// b dies: a notices within its detection time, not before.
	l.bOK = false
	l.run(250 * time.Millisecond)
	if l.a.State() != Up {
		t.Fatalf("a went %s before its detection time", l.a.State())
	}
	l.run(100 * time.Millisecond)
	if l.a.State() != Down {
		t.Fatalf("a still %s after the detection time", l.a.State())
	}
	// b comes back (restarted: a new discriminator): Up again, without
	// a expiring while it waits for the slow peer.
	l.b, l.bOK = NewSession(cfg, 3), true
	l.run(2500 * time.Millisecond)
	if l.a.State() != Up || l.b.State() != Up {
		t.Fatalf("after the restart: %s, %s", l.a.State(), l.b.State())
	}
	// b shuts down administratively: a goes Down (the peer said so).
	l.b.Shutdown()
	l.run(1100 * time.Millisecond)
	if l.a.State() != Down {
		t.Fatalf("a %s after its peer's admin down", l.a.State())
	}
	// A new timer in Up is polled for, and the peer answers at once.
	l.b = NewSession(cfg, 4)
	l.run(2 * time.Second)
	l.a.SetConfig(Config{Interval: 200 * time.Millisecond, Multiplier: 3})
	p := l.a.Next(l.now)
	if !p.Poll {
		t.Fatal("a timer change is not polled")
	}
	if _, now := l.b.Receive(p, l.now); !now || !l.b.Next(l.now).Final {
		t.Fatal("a poll is not answered with a final at once")
	}
}

// An Init session that the peer stops answering goes back Down, and
// never was Up (the controller resets nothing for it).
func TestSessionInitExpiry(t *testing.T) {
	s := NewSession(Config{Interval: 100 * time.Millisecond, Multiplier: 3}, 1)
	now := time.Unix(0, 0)
	if changed, _ := s.Receive(Packet{State: Down, DetectMult: 3, MyDisc: 9, DesiredMinTx: time.Second, RequiredMinRx: time.Second}, now); !changed || s.State() != Init {
		t.Fatalf("Down + Down: %s", s.State())
	}
	// The peer sends every second while Down: its detection time is 3 s.
	if s.Tick(now.Add(2 * time.Second)) {
		t.Fatal("an Init session expired before three of its peer's slow periods")
	}
	if !s.Tick(now.Add(4*time.Second)) || s.State() != Down {
		t.Fatalf("an Init session without packets is %s", s.State())
	}
	// Packets for another session are not ours.
	if changed, _ := s.Receive(Packet{State: Up, DetectMult: 3, MyDisc: 9, YourDisc: 77}, now); changed {
		t.Fatal("a packet for another discriminator changed the session")
	}
}
