package identity

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
)

func newStore(t *testing.T) *nsdb.Store {
	st := nsdb.New(nsdbtest.Start(t))
	if err := st.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestBootstrap(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	if _, err := New(ctx, st, Options{BcryptCost: 4}); !errors.Is(err, ErrNoAdmin) {
		t.Fatalf("no users and no admin password: %v, want ErrNoAdmin", err)
	}
	s, err := New(ctx, st, Options{AdminPassword: "first", BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	tok, c, err := s.Login(ctx, PasswordLogin{Source: "192.0.2.1", UserName: "admin", Password: "first", ProjectName: "admin", Scoped: true})
	if err != nil || !c.IsAdmin() || c.ProjectName != "admin" || len(c.ProjectID) != 32 {
		t.Fatalf("admin login: %v %+v", err, c)
	}
	if _, err := s.Validate(ctx, tok); err != nil {
		t.Fatal(err)
	}
	// A later start with another password keeps the first (first start only).
	s2, err := New(ctx, st, Options{AdminPassword: "second", BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s2.Login(ctx, PasswordLogin{Source: "192.0.2.1", UserName: "admin", Password: "second", ProjectName: "admin", Scoped: true}); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("the second start's password works: %v", err)
	}
	if _, err := s2.Validate(ctx, tok); err != nil {
		t.Errorf("a replica sharing the NSDB does not accept the first one's token: %v", err)
	}
	// The hash is bcrypt, never the password.
	us, _, _ := st.List(ctx, UserKind, "name", "admin")
	if h := us[0].(*User).PasswordHash; h == "" || h == "first" || h[:len(hashPrefix)] != hashPrefix {
		t.Errorf("stored password hash %q", h)
	}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	s, err := New(ctx, st, Options{AdminPassword: "pw", BcryptCost: 4, TokenTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.now = func() time.Time { return now }
	for _, bad := range []struct{ user, pw, project string }{{"admin", "nope", "admin"}, {"nobody", "pw", "admin"}, {"admin", "pw", "no-such-project"}} {
		if _, _, err := s.Login(ctx, PasswordLogin{Source: "192.0.2.1", UserName: bad.user, Password: bad.pw, ProjectName: bad.project, Scoped: true}); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("login %v: %v, want ErrInvalidToken", bad, err)
		}
	}
	tok, _, err := s.Login(ctx, PasswordLogin{Source: "192.0.2.1", UserName: "admin", Password: "pw", ProjectName: "admin", Scoped: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, forged := range []string{"", "ngr1.", tok + "x", tok[:len(tok)-3] + "AAA", "gAAAAA" + tok} {
		if _, err := s.Validate(ctx, forged); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("forged token %q: %v", forged, err)
		}
	}
	// Expiry.
	now = now.Add(59 * time.Minute)
	if _, err := s.Validate(ctx, tok); err != nil {
		t.Errorf("token before expiry: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := s.Validate(ctx, tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("expired token: %v", err)
	}
	// Revocation.
	tok2, _, _ := s.Login(ctx, PasswordLogin{Source: "192.0.2.1", UserName: "admin", Password: "pw", ProjectName: "admin", Scoped: true})
	if err := s.Revoke(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Validate(ctx, tok2); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("revoked token: %v", err)
	}
	// A disabled user's tokens stop working once the cache forgets them.
	tok3, _, _ := s.Login(ctx, PasswordLogin{Source: "192.0.2.1", UserName: "admin", Password: "pw", ProjectName: "admin", Scoped: true})
	us, _, _ := st.List(ctx, UserKind, "name", "admin")
	if _, err := st.Modify(ctx, UserKind, us[0].GetMeta().ID, 0, func(o model.Object) error { o.(*User).Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	now = now.Add(31 * time.Second)
	if _, err := s.Validate(ctx, tok3); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("disabled user's token: %v", err)
	}
	if _, _, err := s.Login(ctx, PasswordLogin{Source: "192.0.2.1", UserName: "admin", Password: "pw", ProjectName: "admin", Scoped: true}); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("disabled user logs in: %v", err)
	}
	// Expired revocations are purged.
	now = now.Add(2 * time.Hour)
	if err := s.PurgeRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	if rs, _, _ := st.List(ctx, RevocationKind, "", ""); len(rs) != 0 {
		t.Errorf("%d revocations left after purge", len(rs))
	}
}
