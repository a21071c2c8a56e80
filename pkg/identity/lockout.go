package identity

import (
	"sync"
	"time"
)

// Lockout refuses password logins for a while after too many failures:
// Keystone's [security_compliance] lockout_failure_attempts and
// lockout_duration, counted per user and source address rather than per
// user alone, so that a stranger guessing the admin's password locks out
// himself and not the admin. A source that fails against many users
// (password spraying) is locked for all of them after sourceFactor times
// as many failures. A locked login is refused before its password is
// hashed, so guessing costs the server nothing while locked.
//
// Failures are counted in the memory of each server replica (a failed
// login writes nothing to the NSDB, which unauthenticated clients must not
// be able to fill): with N replicas behind a balancer without source
// affinity, a source gets up to N times the attempts. Failures older than
// the lockout duration are forgotten; a successful login clears the
// user's count from that source.
type Lockout struct {
	attempts int
	duration time.Duration
	mu       sync.Mutex
	entries  map[lockKey]*failures
}

// Keystone's lockout_duration default (1800 s); its failure attempts are
// unset (off) by default, Nagare's are 6 (PCI DSS 8.1.6).
const (
	DefaultLockoutFailureAttempts = 6
	DefaultLockoutDuration        = 30 * time.Minute
	// sourceFactor: failures a source may have across users, in units of
	// the per-user limit.
	sourceFactor = 5
	// maxLockEntries bounds the memory a flood of distinct names or
	// addresses can take (about 100 bytes each).
	maxLockEntries = 100000
)

type lockKey struct {
	user, source string // user "" counts the source's failures across users
}

type failures struct {
	n     int
	last  time.Time
	until time.Time // locked until then
}

// NewLockout returns a lockout after attempts failures for duration;
// attempts <= 0 returns nil, which locks nothing.
func NewLockout(attempts int, duration time.Duration) *Lockout {
	if attempts <= 0 {
		return nil
	}
	return &Lockout{attempts: attempts, duration: duration, entries: map[lockKey]*failures{}}
}

// Locked returns how long logins of user from source stay refused (0:
// they are not).
func (l *Lockout) Locked(user, source string, now time.Time) time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, k := range []lockKey{{user, source}, {"", source}} {
		if f := l.entries[k]; f != nil && now.Before(f.until) {
			wait = max(wait, f.until.Sub(now))
		}
	}
	return wait
}

// Failed counts a failed login; it reports whether the user (or the
// source) is locked by it.
func (l *Lockout) Failed(user, source string, now time.Time) bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	locked := false
	for _, k := range []lockKey{{user, source}, {"", source}} {
		limit := l.attempts
		if k.user == "" {
			limit *= sourceFactor
		}
		f := l.entries[k]
		if f == nil {
			l.makeRoom(now)
			f = &failures{}
			l.entries[k] = f
		}
		if now.Sub(f.last) > l.duration {
			f.n = 0 // old failures are forgotten
		}
		f.n++
		f.last = now
		if f.n >= limit {
			f.until, f.n = now.Add(l.duration), 0
			locked = true
		}
	}
	return locked
}

// Succeeded clears the user's failures from source.
func (l *Lockout) Succeeded(user, source string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	delete(l.entries, lockKey{user, source})
	l.mu.Unlock()
}

// makeRoom keeps the table bounded: stale entries go first, then those
// that lock nothing; locks are kept.
func (l *Lockout) makeRoom(now time.Time) {
	if len(l.entries) < maxLockEntries {
		return
	}
	for k, f := range l.entries {
		if now.After(f.until) && now.Sub(f.last) > l.duration {
			delete(l.entries, k)
		}
	}
	for k, f := range l.entries {
		if len(l.entries) < maxLockEntries {
			return
		}
		if now.After(f.until) {
			delete(l.entries, k)
		}
	}
}
