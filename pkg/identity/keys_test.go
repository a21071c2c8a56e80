package identity

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/model"
)

func adminLogin(t *testing.T, s *Service) string {
	t.Helper()
	tok, _, err := s.Login(context.Background(), PasswordLogin{Source: "192.0.2.1", UserName: "admin", Password: "pw", ProjectName: "admin", Scoped: true})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func keyIDOf(t *testing.T, tok string) string {
	t.Helper()
	payload, _, err := splitToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c.KeyID
}

// TestKeyRotation: two replicas share the key ring. A rotation on one
// makes a new primary; tokens signed before it keep validating on both
// until they expire, tokens signed after it validate on the replica that
// has not re-read the ring yet; a key retired longer than a token lives
// is dropped by the next rotation, and its tokens are refused.
func TestKeyRotation(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	a, err := New(ctx, st, Options{AdminPassword: "pw", BcryptCost: 4, TokenTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(ctx, st, Options{BcryptCost: 4, TokenTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a.now = func() time.Time { return now }
	b.now = func() time.Time { return now }
	old := adminLogin(t, a)
	k0 := keyIDOf(t, old)
	if rotated, err := a.RotateKeys(ctx, 24*time.Hour); err != nil || rotated {
		t.Fatalf("rotation of a fresh key with a 24 h period: %v %v, want none", rotated, err)
	}
	if rotated, err := a.RotateKeys(ctx, 0); err != nil || !rotated {
		t.Fatalf("rotate: %v %v", rotated, err)
	}
	fresh := adminLogin(t, a)
	k1 := keyIDOf(t, fresh)
	if k1 == k0 || k1 == "" {
		t.Fatalf("the token after the rotation is signed with key %q (before: %q)", k1, k0)
	}
	for name, s := range map[string]*Service{"a": a, "b": b} {
		for what, tok := range map[string]string{"old": old, "new": fresh} {
			s.cache.Drop(tok)
			if _, err := s.Validate(ctx, tok); err != nil {
				t.Errorf("replica %s refuses the %s token: %v", name, what, err)
			}
		}
	}
	// b signs with the new key once it has re-read the ring.
	if k := keyIDOf(t, adminLogin(t, b)); k != k1 {
		t.Errorf("replica b signs with key %q after seeing the rotation, want %q", k, k1)
	}
	admin := &Context{Roles: []string{RoleAdmin}}
	infos, err := a.Keys(ctx, admin)
	if err != nil || len(infos) != 2 || infos[0].ID != k0 || infos[0].Primary || infos[0].ValidUntil.IsZero() || !infos[1].Primary {
		t.Fatalf("keys %+v, %v", infos, err)
	}
	if _, err := a.Keys(ctx, &Context{Roles: []string{RoleMember}}); AsError(err).Class != Forbidden {
		t.Errorf("a member lists the keys: %v", err)
	}
	// Past the old key's tokens' lifetime, the next rotation drops it.
	now = now.Add(time.Hour + 2*KeyRefresh + time.Second)
	if _, err := a.RotateKeys(ctx, 0); err != nil {
		t.Fatal(err)
	}
	infos, err = a.Keys(ctx, admin)
	if err != nil || len(infos) != 2 || infos[0].ID != k1 {
		t.Fatalf("keys after the second rotation %+v, %v: want k1 retired and a new primary", infos, err)
	}
	// A token of the dropped key (forged to look unexpired) is refused.
	c := &claims{UserID: "x", ExpiresAt: now.Add(time.Hour).UnixMilli()}
	if _, err := a.Validate(ctx, sign(SigningKey{ID: k0, Key: []byte("guess")}, c)); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a token of a dropped key: %v", err)
	}
}

// TestKeyMigration: a data directory from before rotation has one key
// and tokens without a key id; they keep working.
func TestKeyMigration(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	legacy := newKey()
	if _, err := st.Create(ctx, &Secret{Meta: model.Meta{ID: secretID}, Key: legacy}); err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, st, Options{AdminPassword: "pw", BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	us, _, err := st.List(ctx, UserKind, "name", "admin")
	if err != nil || len(us) != 1 {
		t.Fatal(us, err)
	}
	// A token as the old binary signed it: no key id.
	c := &claims{UserID: us[0].GetMeta().ID, Methods: []string{"password"}, ExpiresAt: time.Now().Add(time.Hour).UnixMilli(), AuditID: "a"}
	tok := sign(SigningKey{Key: legacy}, c)
	if keyIDOf(t, tok) != "" {
		t.Fatal("the legacy token names a key")
	}
	if _, err := s.Validate(ctx, tok); err != nil {
		t.Errorf("a token signed before keys rotated: %v", err)
	}
	if _, err := s.RotateKeys(ctx, 0); err != nil {
		t.Fatal(err)
	}
	s.cache.Drop(tok)
	if _, err := s.Validate(ctx, tok); err != nil {
		t.Errorf("the legacy token after a rotation: %v", err)
	}
}
