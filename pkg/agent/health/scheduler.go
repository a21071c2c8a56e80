package health

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// Target is one member to check.
type Target struct {
	ID      string // the pool member's id
	Addr    netip.AddrPort
	Monitor Monitor
}

// Hooks receive what the scheduler sees. They are called from the check
// goroutines, concurrently; they must not block for long.
type Hooks struct {
	// Checked is called after every check; err is nil when it passed.
	Checked func(t Target, err error)
	// Changed is called when a member's status changes (including its
	// first verdict, from Unknown).
	Changed func(t Target, from, to Status, err error)
}

// Scheduler checks a set of targets, each every Monitor.Delay, in its own
// goroutine. Set replaces the set; a target whose address and monitor are
// unchanged keeps its loop and its state.
type Scheduler struct {
	dial  DialFunc
	hooks Hooks

	mu      sync.Mutex
	ctx     context.Context
	running map[string]*loop
	wg      sync.WaitGroup
}

type loop struct {
	t      Target
	cancel context.CancelFunc
	mu     sync.Mutex
	state  State
}

// NewScheduler returns a scheduler whose loops end when ctx is done.
func NewScheduler(ctx context.Context, dial DialFunc, hooks Hooks) *Scheduler {
	return &Scheduler{ctx: ctx, dial: dial, hooks: hooks, running: map[string]*loop{}}
}

// Set makes targets the set checked.
func (s *Scheduler) Set(targets []Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make(map[string]Target, len(targets))
	for _, t := range targets {
		want[t.ID] = t
	}
	for id, l := range s.running {
		if t, ok := want[id]; !ok || !sameTarget(t, l.t) {
			l.cancel()
			delete(s.running, id)
		}
	}
	for id, t := range want {
		if _, ok := s.running[id]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(s.ctx)
		l := &loop{t: t, cancel: cancel}
		s.running[id] = l
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.run(ctx, l) }()
	}
}

// Status returns a target's current verdict (Unknown if not checked).
func (s *Scheduler) Status(id string) Status {
	s.mu.Lock()
	l := s.running[id]
	s.mu.Unlock()
	if l == nil {
		return Unknown
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state.Status
}

// Stop ends every loop and waits for them.
func (s *Scheduler) Stop() {
	s.Set(nil)
	s.wg.Wait()
}

func sameTarget(a, b Target) bool {
	ma, mb := a.Monitor, b.Monitor
	if a.Addr != b.Addr || ma.Type != mb.Type || ma.Delay != mb.Delay || ma.Timeout != mb.Timeout ||
		ma.MaxRetries != mb.MaxRetries || ma.MaxRetriesDown != mb.MaxRetriesDown ||
		ma.HTTPMethod != mb.HTTPMethod || ma.URLPath != mb.URLPath || len(ma.Codes) != len(mb.Codes) {
		return false
	}
	for i := range ma.Codes {
		if ma.Codes[i] != mb.Codes[i] {
			return false
		}
	}
	return true
}

func (s *Scheduler) run(ctx context.Context, l *loop) {
	m := &l.t.Monitor
	delay := max(m.Delay, 10*time.Millisecond)
	// The first check at once (a new member gets a verdict quickly), the
	// next ones every delay, started on a ticker so that a slow check
	// does not stretch the period; a small random offset keeps many
	// members from being checked in lockstep.
	jitter := time.Duration(rand.Int64N(int64(delay/10) + 1))
	tick := time.NewTicker(delay)
	defer tick.Stop()
	first := time.NewTimer(jitter)
	defer first.Stop()
	select {
	case <-ctx.Done():
		return
	case <-first.C:
	}
	for {
		err := Check(ctx, m, s.dial, l.t.Addr)
		if ctx.Err() != nil {
			return // stopped mid-check: the result means nothing
		}
		if s.hooks.Checked != nil {
			s.hooks.Checked(l.t, err)
		}
		l.mu.Lock()
		from := l.state.Status
		to, changed := l.state.Observe(err == nil, m.MaxRetries, m.MaxRetriesDown)
		l.mu.Unlock()
		if changed && s.hooks.Changed != nil {
			s.hooks.Changed(l.t, from, to, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
