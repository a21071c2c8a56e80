package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// A join token lets one agent (or a bounded number) obtain a host
// certificate. It has kubeadm's shape, "<id>.<secret>" with a 6-character
// id and a 16-character secret of [a-z0-9], and, like k3s' tokens, may
// carry the hash of the server's CA in front ("N10<64 hex>::<id>.<secret>")
// so that `nagare-agent --join URL --token T` can verify the server it
// has never seen before without a CA file. The server stores only the
// secret's SHA-256, under the id.
type JoinToken struct {
	ID, Secret string
	// CAHash is the pinned CA ("sha256:<hex>"), or "" when the token was
	// given without it (the agent then needs the CA file).
	CAHash string
}

const (
	tokenIDLen     = 6
	tokenSecretLen = 16
	tokenAlphabet  = "abcdefghijklmnopqrstuvwxyz0123456789"
	tokenCAPrefix  = "N10"
)

// NewJoinToken makes a random token pinned to caHash.
func NewJoinToken(caHash string) JoinToken {
	return JoinToken{ID: randomString(tokenIDLen), Secret: randomString(tokenSecretLen), CAHash: caHash}
}

func randomString(n int) string {
	// Rejection sampling keeps every character equally likely.
	out := make([]byte, 0, n)
	var b [1]byte
	for len(out) < n {
		_, _ = rand.Read(b[:])
		if int(b[0]) < 256-256%len(tokenAlphabet) {
			out = append(out, tokenAlphabet[int(b[0])%len(tokenAlphabet)])
		}
	}
	return string(out)
}

// String is the token as the operator passes it to the agent.
func (t JoinToken) String() string {
	if t.CAHash == "" {
		return t.ID + "." + t.Secret
	}
	return tokenCAPrefix + strings.TrimPrefix(t.CAHash, "sha256:") + "::" + t.ID + "." + t.Secret
}

// SecretHash is what the server stores: the hex SHA-256 of the secret.
func (t JoinToken) SecretHash() string {
	sum := sha256.Sum256([]byte(t.Secret))
	return hex.EncodeToString(sum[:])
}

// SecretMatches compares the token's secret with a stored hash in
// constant time.
func (t JoinToken) SecretMatches(storedHash string) bool {
	return subtle.ConstantTimeCompare([]byte(t.SecretHash()), []byte(storedHash)) == 1
}

// ParseJoinToken reads a token in either form.
func ParseJoinToken(s string) (JoinToken, error) {
	var t JoinToken
	if rest, ok := strings.CutPrefix(s, tokenCAPrefix); ok {
		hash, creds, ok := strings.Cut(rest, "::")
		if !ok || len(hash) != 64 || !isHex(hash) {
			return JoinToken{}, fmt.Errorf("join token: after %q want 64 hex digits of the CA hash and \"::\"", tokenCAPrefix)
		}
		t.CAHash, s = "sha256:"+strings.ToLower(hash), creds
	}
	id, secret, ok := strings.Cut(s, ".")
	if !ok || len(id) != tokenIDLen || len(secret) != tokenSecretLen || !inAlphabet(id) || !inAlphabet(secret) {
		return JoinToken{}, fmt.Errorf("join token: want %d and %d characters of [a-z0-9] joined by '.' (as `nagare-server token create` prints)", tokenIDLen, tokenSecretLen)
	}
	t.ID, t.Secret = id, secret
	return t, nil
}

// ValidTokenID reports whether id could be a token id (an API path or key
// segment).
func ValidTokenID(id string) bool { return len(id) == tokenIDLen && inAlphabet(id) }

// CheckCAHash reports whether cert is the CA a token pins.
func (t JoinToken) CheckCAHash(cert *x509.Certificate) error {
	if t.CAHash == "" {
		return nil
	}
	got := CertHash(cert)
	if subtle.ConstantTimeCompare([]byte(got), []byte(t.CAHash)) != 1 {
		return fmt.Errorf("the server's CA is %s but the join token pins %s: wrong server, or someone in between", got, t.CAHash)
	}
	return nil
}

func inAlphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(tokenAlphabet, rune(s[i])) {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}
