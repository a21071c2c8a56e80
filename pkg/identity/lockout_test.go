package identity

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestLockoutTable(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	type step struct {
		at           time.Duration // since t0
		user, source string
		fail         bool // a failure; otherwise a success
		wantLocked   bool // Locked before the step
	}
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"three failures lock the user from that source only", []step{
			{0, "u", "a", true, false}, {1, "u", "a", true, false}, {2, "u", "a", true, false},
			{3, "u", "a", false, true}, {3, "u", "b", false, false}, {3, "v", "a", false, false},
		}},
		{"the lock ends after the duration", []step{
			{0, "u", "a", true, false}, {1, "u", "a", true, false}, {2, "u", "a", true, false},
			{2 + 59, "u", "a", false, true}, {2 + 61, "u", "a", false, false},
		}},
		{"a success clears the count", []step{
			{0, "u", "a", true, false}, {1, "u", "a", true, false}, {2, "u", "a", false, false},
			{3, "u", "a", true, false}, {4, "u", "a", true, false}, {5, "u", "a", false, false},
		}},
		{"old failures are forgotten", []step{
			{0, "u", "a", true, false}, {1, "u", "a", true, false},
			{100, "u", "a", true, false}, {101, "u", "a", false, false},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := NewLockout(3, time.Minute)
			for i, s := range c.steps {
				now := t0.Add(s.at * time.Second)
				if got := l.Locked(s.user, s.source, now) > 0; got != s.wantLocked {
					t.Fatalf("step %d %+v: locked %v", i, s, got)
				}
				if s.fail {
					l.Failed(s.user, s.source, now)
				} else if !s.wantLocked {
					l.Succeeded(s.user, s.source)
				}
			}
		})
	}
	// Spraying: a source failing against many users is locked for all.
	l := NewLockout(3, time.Minute)
	for i := range 3 * sourceFactor {
		if l.Locked(fmt.Sprint("user", i), "a", t0) > 0 {
			t.Fatalf("source locked after %d failures against distinct users", i)
		}
		l.Failed(fmt.Sprint("user", i), "a", t0)
	}
	if l.Locked("anyone", "a", t0) == 0 || l.Locked("anyone", "b", t0) != 0 {
		t.Error("a spraying source is not locked, or another source is")
	}
	if NewLockout(0, time.Minute) != nil || NewLockout(-1, time.Minute).Locked("u", "a", t0) != 0 {
		t.Error("lockout off still locks")
	}
}

// TestLoginLockout: after the failures the right password is refused
// (before it is checked) from that address, accepted from another, and
// accepted again after the lockout duration.
func TestLoginLockout(t *testing.T) {
	ctx := context.Background()
	s, err := New(ctx, newStore(t), Options{AdminPassword: "pw", BcryptCost: 4, LockoutFailureAttempts: 2, LockoutDuration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.now = func() time.Time { return now }
	login := func(source, pw string) error {
		_, _, err := s.Login(ctx, PasswordLogin{Source: source, UserName: "admin", Password: pw, ProjectName: "admin", Scoped: true})
		return err
	}
	for range 2 {
		if err := login("192.0.2.1", "wrong"); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("wrong password: %v", err)
		}
	}
	err = login("192.0.2.1", "pw")
	if e := AsError(err); e.Class != Unauthorized || errors.Is(err, ErrInvalidToken) {
		t.Fatalf("the right password while locked: %v, want a lockout refusal (401)", err)
	}
	if err := login("192.0.2.2", "pw"); err != nil {
		t.Errorf("another address while the first is locked: %v", err)
	}
	now = now.Add(time.Minute + time.Second)
	if err := login("192.0.2.1", "pw"); err != nil {
		t.Errorf("after the lockout: %v", err)
	}
	off, err := New(ctx, newStore(t), Options{AdminPassword: "pw", BcryptCost: 4, LockoutFailureAttempts: -1})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, _, err := off.Login(ctx, PasswordLogin{Source: "a", UserName: "admin", Password: "wrong"}); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("wrong password, lockout off: %v", err)
		}
	}
	if _, _, err := off.Login(ctx, PasswordLogin{Source: "a", UserName: "admin", Password: "pw", ProjectName: "admin", Scoped: true}); err != nil {
		t.Errorf("lockout off: %v", err)
	}
}
