package identity

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Tokens are signed, not stored (Keystone's Fernet tokens work alike): a
// login writes nothing to the NSDB, and any server replica validates a
// token with the shared keys (keys.go: they rotate). A token carries who and which project, never
// roles: those are read when the token is validated (and cached briefly),
// so removing a role takes effect without waiting for the token to expire.
// Revoking a token records its audit id until it would have expired.

const tokenPrefix = "ngr1."

type claims struct {
	UserID    string   `json:"u"`
	ProjectID string   `json:"p,omitempty"`
	Methods   []string `json:"m"`
	IssuedAt  int64    `json:"i"` // unix milliseconds
	ExpiresAt int64    `json:"e"`
	AuditID   string   `json:"a"`
	KeyID     string   `json:"k,omitempty"` // the signing key; "" for the key before rotation
}

func (c *claims) expires() time.Time { return time.UnixMilli(c.ExpiresAt).UTC() }
func (c *claims) issued() time.Time  { return time.UnixMilli(c.IssuedAt).UTC() }

func sign(key SigningKey, c *claims) string {
	c.KeyID = key.ID
	payload, _ := json.Marshal(c)
	m := hmac.New(sha256.New, key.Key)
	m.Write(payload)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// verify checks the signature, with the key the token names, and the
// expiry.
func (s *Service) verify(ctx context.Context, tok string, now time.Time) (*claims, error) {
	payload, sig, err := splitToken(tok)
	if err != nil {
		return nil, err
	}
	// The key id is read before the signature is checked (as a JWT's
	// header is): it only picks the key, and a wrong one fails the MAC.
	var unverified struct {
		KeyID string `json:"k"`
	}
	if json.Unmarshal(payload, &unverified) != nil {
		return nil, ErrInvalidToken
	}
	key, ok := s.keyFor(ctx, unverified.KeyID)
	if !ok {
		return nil, ErrInvalidToken
	}
	if key.Retired != 0 && now.Sub(time.UnixMilli(key.Retired)) > s.validFor() {
		return nil, ErrInvalidToken
	}
	m := hmac.New(sha256.New, key.Key)
	m.Write(payload)
	if !hmac.Equal(sig, m.Sum(nil)) {
		return nil, ErrInvalidToken
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil || c.UserID == "" {
		return nil, ErrInvalidToken
	}
	if !now.Before(c.expires()) {
		return nil, ErrInvalidToken
	}
	return &c, nil
}

// splitToken decodes a token's payload and signature.
func splitToken(tok string) (payload, sig []byte, err error) {
	rest, ok := strings.CutPrefix(tok, tokenPrefix)
	if !ok {
		return nil, nil, ErrInvalidToken
	}
	p, q, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, nil, ErrInvalidToken
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	sig, err2 := base64.RawURLEncoding.DecodeString(q)
	if err1 != nil || err2 != nil {
		return nil, nil, ErrInvalidToken
	}
	return payload, sig, nil
}

func newAuditID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func newKey() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// Passwords are hashed with bcrypt (cost 12, Keystone's default) over the
// password's SHA-256: bcrypt alone ignores everything past 72 bytes.
const hashPrefix = "bcrypt-sha256$"

func prehash(password string) []byte {
	sum := sha256.Sum256([]byte(password))
	return []byte(hex.EncodeToString(sum[:]))
}

func hashPassword(password string, cost int) (string, error) {
	h, err := bcrypt.GenerateFromPassword(prehash(password), cost)
	if err != nil {
		return "", err
	}
	return hashPrefix + string(h), nil
}

// checkPassword compares a password with a stored hash. With no hash (no
// such user) it still spends one bcrypt comparison, so a login takes as long
// for an unknown name as for a wrong password.
func checkPassword(hash, password string, cost int) bool {
	h, ok := strings.CutPrefix(hash, hashPrefix)
	if !ok {
		dummyOnce.Do(func() { dummyHash, _ = bcrypt.GenerateFromPassword([]byte("nagare: no such user"), cost) })
		_ = bcrypt.CompareHashAndPassword(dummyHash, prehash(password))
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(h), prehash(password)) == nil
}

var (
	dummyOnce sync.Once
	dummyHash []byte
)
