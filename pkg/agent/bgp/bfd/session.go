package bfd

import "time"

// Config are a session's timers while it is Up: packets every Interval
// both ways (it is both DesiredMinTx and RequiredMinRx), the peer down
// after Multiplier of them missed.
type Config struct {
	Interval   time.Duration
	Multiplier uint8
}

// SlowInterval is the transmit interval of a session that is not Up
// (RFC 5880 §6.8.3: at least one second).
const SlowInterval = time.Second

// Session is one BFD session's state machine (RFC 5880 §6.8). It does no
// I/O and reads no clock: the runner feeds it packets and the time, and
// sends what it asks for. It is not safe for concurrent use.
type Session struct {
	cfg   Config
	state State
	diag  uint8
	local uint32
	// What the remote system last said.
	remote                            uint32
	remoteMult                        uint8
	remoteDesiredTx, remoteRequiredRx time.Duration
	lastRx, lastTx                    time.Time
	// polling: our timers changed and the remote has not sent Final yet;
	// final: the remote polled and is owed a Final.
	polling, final bool
}

// NewSession returns a Down session with the local discriminator disc
// (non-zero, unique on the host).
func NewSession(cfg Config, disc uint32) *Session {
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.Multiplier == 0 {
		cfg.Multiplier = 3
	}
	return &Session{cfg: cfg, state: Down, local: disc}
}

// State is the session's state.
func (s *Session) State() State { return s.state }

// SetConfig changes the timers; an Up session polls its peer so that
// both apply them.
func (s *Session) SetConfig(cfg Config) {
	if cfg.Interval <= 0 || cfg.Multiplier == 0 || cfg == s.cfg {
		return
	}
	s.cfg = cfg
	if s.state == Up {
		s.polling = true
	}
}

// desiredTx is what the session advertises it wants to send at: the
// configured interval when Up, the slow one otherwise.
func (s *Session) desiredTx() time.Duration {
	if s.state == Up {
		return s.cfg.Interval
	}
	return max(s.cfg.Interval, SlowInterval)
}

// TxInterval is the time between periodic packets: the slower of what
// this system wants to send at and what the remote wants to receive at
// (RFC 5880 §6.8.7). The runner sends somewhat earlier (jitter), never
// later. Zero means send nothing periodic: the remote asked for none.
func (s *Session) TxInterval() time.Duration {
	if s.remote != 0 && s.remoteRequiredRx == 0 {
		return 0
	}
	return max(s.desiredTx(), s.remoteRequiredRx)
}

// DetectTime is how long the session waits for a packet before going
// Down (RFC 5880 §6.8.4): the remote's multiplier times the slower of
// what this system wants to receive at and what the remote sends at.
func (s *Session) DetectTime() time.Duration {
	return time.Duration(max(s.remoteMult, 1)) * max(s.cfg.Interval, s.remoteDesiredTx)
}

// Receive applies a control packet from the peer (already Decoded) at
// now. It reports whether the state changed, and whether a packet must
// go out at once: a Final the peer polled for, or the news of a change
// (so a three-way handshake takes a round trip, not three slow periods).
func (s *Session) Receive(p Packet, now time.Time) (changed, sendNow bool) {
	if p.YourDisc != 0 && p.YourDisc != s.local {
		return false, false // not this session
	}
	s.remote, s.remoteMult = p.MyDisc, p.DetectMult
	s.remoteDesiredTx, s.remoteRequiredRx = p.DesiredMinTx, p.RequiredMinRx
	s.lastRx = now
	if p.Final {
		s.polling = false
	}
	if p.Poll {
		s.final, sendNow = true, true
	}
	if s.state == AdminDown {
		return false, sendNow
	}
	old := s.state
	switch {
	case p.State == AdminDown:
		if s.state != Down {
			s.state, s.diag = Down, DiagNeighborDown
		}
	case s.state == Down && p.State == Down:
		s.state = Init
	case s.state == Down && p.State == Init, s.state == Init && (p.State == Init || p.State == Up):
		s.state, s.diag = Up, DiagNone
	case s.state == Up && p.State == Down:
		s.state, s.diag = Down, DiagNeighborDown
	}
	if s.state == old {
		return false, sendNow
	}
	if s.state == Up {
		// Up means faster timers: a Poll asks the peer to apply them.
		s.polling = true
	}
	return true, true
}

// Expiring reports whether Tick at now would take the session Down.
func (s *Session) Expiring(now time.Time) bool {
	return (s.state == Init || s.state == Up) && now.Sub(s.lastRx) > s.DetectTime()
}

// Tick expires the session at now: Init or Up without a packet for the
// detection time goes Down. It reports whether it did.
func (s *Session) Tick(now time.Time) bool {
	if !s.Expiring(now) {
		return false
	}
	s.state, s.diag, s.remote = Down, DiagTimeExpired, 0
	s.polling, s.final = false, false
	return true
}

// Due reports whether a periodic packet is due at now.
func (s *Session) Due(now time.Time) bool {
	iv := s.TxInterval()
	return iv > 0 && now.Sub(s.lastTx) >= iv*3/4
}

// Next is the packet to send now; it records that it was sent.
func (s *Session) Next(now time.Time) Packet {
	p := Packet{Diag: s.diag, State: s.state, DetectMult: s.cfg.Multiplier, MyDisc: s.local, YourDisc: s.remote,
		DesiredMinTx: s.desiredTx(), RequiredMinRx: s.cfg.Interval}
	switch {
	case s.final:
		p.Final, s.final = true, false
	case s.polling:
		p.Poll = true
	}
	s.lastTx = now
	return p
}

// Shutdown makes the session AdminDown (it tells its peer, which must
// not treat it as a failure).
func (s *Session) Shutdown() {
	s.state, s.diag = AdminDown, DiagAdministrative
}
