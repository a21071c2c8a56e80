package identity

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Token signing keys rotate the way Keystone's Fernet keys do, without
// logging anyone out: the keys live in the NSDB (svc/, which agents cannot
// read) so every server replica has the same ring; one key, the primary,
// signs; a rotation makes a new primary and retires the old one, which
// keeps validating the tokens it signed until they expire. During a
// rotation two keys (or three, after two quick rotations) are valid.
//
// A token names the key that signed it (its "k" claim). A replica that
// meets a key id it does not know re-reads the ring (at most once a
// second): another replica rotated and signs with a key this one has not
// seen yet. Every replica re-reads the ring every KeyRefresh anyway, so it
// signs with the new primary soon after a rotation; a retired key stays
// valid for the token lifetime plus twice that interval, which covers the
// tokens a replica signed with it before it noticed.

// SigningKey is one key of the ring.
type SigningKey struct {
	ID      string `json:"id"`
	Key     []byte `json:"key"`
	Created int64  `json:"created"`           // unix milliseconds
	Retired int64  `json:"retired,omitempty"` // when it stopped signing; 0 for the primary
}

// KeyInfo describes a key without its secret, for administrators.
type KeyInfo struct {
	ID         string
	Created    time.Time
	Retired    time.Time // zero for the primary
	ValidUntil time.Time // zero for the primary: it validates until retired
	Primary    bool
}

// KeyRefresh is how often a replica re-reads the key ring.
const KeyRefresh = 30 * time.Second

// legacyKeyID names the single key of a data directory made before keys
// rotated; tokens without a key id were signed with it.
const legacyKeyID = "0"

// keyring is a replica's copy of the ring.
type keyring struct {
	keys    []SigningKey // as stored, oldest first
	primary SigningKey
}

func (k keyring) find(id string) (SigningKey, bool) {
	if id == "" {
		id = legacyKeyID
	}
	for _, x := range k.keys {
		if x.ID == id {
			return x, true
		}
	}
	return SigningKey{}, false
}

// keys is the service's key state: the ring, and when it was last read
// because of an unknown key id.
type keys struct {
	mu         sync.RWMutex
	ring       keyring
	lastReload time.Time
	reloadMu   sync.Mutex // one reload at a time
}

func (k *keys) get() keyring {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.ring
}

func (k *keys) set(r keyring) {
	k.mu.Lock()
	k.ring = r
	k.mu.Unlock()
}

func newSigningKey(now time.Time) SigningKey {
	var id [6]byte
	_, _ = rand.Read(id[:])
	return SigningKey{ID: base64.RawURLEncoding.EncodeToString(id[:]), Key: newKey(), Created: now.UnixMilli()}
}

// validFor is how long after its retirement a key still validates tokens.
func (s *Service) validFor() time.Duration { return s.ttl + 2*KeyRefresh }

// ringOf makes a ring of a stored secret, migrating the single key of an
// older data directory; changed reports that the secret must be written.
func ringOf(sec *Secret, now time.Time) (keyring, bool) {
	changed := false
	if len(sec.Keys) == 0 {
		k := newSigningKey(now)
		if len(sec.Key) > 0 {
			k.ID, k.Key = legacyKeyID, sec.Key
		}
		sec.Keys, sec.Key, changed = []SigningKey{k}, nil, true
	}
	r := keyring{keys: sec.Keys}
	for _, k := range sec.Keys {
		if k.Retired == 0 {
			r.primary = k
		}
	}
	if r.primary.ID == "" { // every key retired: cannot happen but by hand; sign with the newest
		r.primary = sec.Keys[len(sec.Keys)-1]
	}
	return r, changed
}

// loadKeys reads the ring in tx, creating or migrating it.
func (s *Service) loadKeys(tx *nsdb.Tx) (keyring, error) {
	sec := &Secret{Meta: model.Meta{ID: secretID}}
	o, err := tx.Get(SecretKind, secretID)
	switch {
	case err == nil:
		sec = o.(*Secret)
	case !errors.Is(err, model.ErrNotFound):
		return keyring{}, err
	}
	r, changed := ringOf(sec, s.now())
	if changed {
		if err := tx.Put(sec); err != nil {
			return keyring{}, err
		}
	}
	return r, nil
}

// ReloadKeys re-reads the key ring from the NSDB.
func (s *Service) ReloadKeys(ctx context.Context) error {
	var r keyring
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) (err error) {
		r, err = s.loadKeys(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("identity: read the token signing keys: %w", err)
	}
	s.keys.set(r)
	return nil
}

// keyFor finds the key a token names, re-reading the ring once (at most
// once a second) when it is not known here: another replica may have
// rotated.
func (s *Service) keyFor(ctx context.Context, id string) (SigningKey, bool) {
	if k, ok := s.keys.get().find(id); ok {
		return k, true
	}
	s.keys.reloadMu.Lock()
	defer s.keys.reloadMu.Unlock()
	if k, ok := s.keys.get().find(id); ok { // reloaded while we waited
		return k, true
	}
	if now := s.now(); now.Sub(s.keys.lastReload) >= time.Second {
		s.keys.lastReload = now
		if err := s.ReloadKeys(ctx); err != nil {
			s.log.Warn("identity: cannot re-read the token signing keys", "err", err)
		}
	}
	return s.keys.get().find(id)
}

// RotateKeys makes a new primary signing key and retires the current
// one; keys retired long enough ago that every token they signed has
// expired are dropped. With every > 0 it rotates only if the primary is
// at least that old (so replicas rotating on a timer rotate once).
func (s *Service) RotateKeys(ctx context.Context, every time.Duration) (rotated bool, err error) {
	var r keyring
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		rotated = false
		cur, err := s.loadKeys(tx)
		if err != nil {
			return err
		}
		r = cur
		now := s.now()
		if every > 0 && now.Sub(time.UnixMilli(cur.primary.Created)) < every {
			return nil
		}
		var keep []SigningKey
		for _, k := range cur.keys {
			switch {
			case k.ID == cur.primary.ID:
				k.Retired = now.UnixMilli()
			case k.Retired != 0 && now.Sub(time.UnixMilli(k.Retired)) > s.validFor():
				continue // every token it signed has expired
			}
			keep = append(keep, k)
		}
		next := newSigningKey(now)
		keep = append(keep, next)
		if err := tx.Put(&Secret{Meta: model.Meta{ID: secretID}, Keys: keep}); err != nil {
			return err
		}
		r, rotated = keyring{keys: keep, primary: next}, true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("identity: rotate the token signing key: %w", err)
	}
	s.keys.set(r)
	if rotated {
		s.log.Info("identity: token signing key rotated; the previous key validates the tokens it signed until they expire",
			"key", r.primary.ID, "keys", len(r.keys))
	}
	return rotated, nil
}

// Keys describes the ring (admin only).
func (s *Service) Keys(ctx context.Context, c *Context) ([]KeyInfo, error) {
	if err := admin(c); err != nil {
		return nil, err
	}
	if err := s.ReloadKeys(ctx); err != nil {
		return nil, err
	}
	r := s.keys.get()
	out := make([]KeyInfo, 0, len(r.keys))
	for _, k := range r.keys {
		i := KeyInfo{ID: k.ID, Created: time.UnixMilli(k.Created).UTC(), Primary: k.ID == r.primary.ID}
		if k.Retired != 0 {
			i.Retired = time.UnixMilli(k.Retired).UTC()
			i.ValidUntil = i.Retired.Add(s.validFor())
		}
		out = append(out, i)
	}
	slices.SortFunc(out, func(a, b KeyInfo) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// Rotate rotates the signing key now (admin only) and describes the ring.
func (s *Service) Rotate(ctx context.Context, c *Context) ([]KeyInfo, error) {
	if err := admin(c); err != nil {
		return nil, err
	}
	if _, err := s.RotateKeys(ctx, 0); err != nil {
		return nil, err
	}
	return s.Keys(ctx, c)
}

// Run is the service's background work until ctx is done: it re-reads
// the key ring every KeyRefresh and, with rotateEvery > 0, rotates the key
// when the primary is that old; every purgeEvery it deletes the records
// of revoked tokens that have expired anyway.
func (s *Service) Run(ctx context.Context, rotateEvery time.Duration) {
	const purgeEvery = 10 * time.Minute
	t := time.NewTicker(KeyRefresh)
	defer t.Stop()
	lastPurge := s.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var err error
		if rotateEvery > 0 {
			_, err = s.RotateKeys(ctx, rotateEvery)
		} else {
			err = s.ReloadKeys(ctx)
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("identity: token signing keys", "err", err)
		}
		if s.now().Sub(lastPurge) >= purgeEvery {
			lastPurge = s.now()
			if err := s.PurgeRevocations(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("identity: purging expired token revocations failed", "err", err)
			}
		}
	}
}
