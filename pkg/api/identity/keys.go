package identity

import (
	"net/http"
	"time"

	"github.com/nagare/nagare/pkg/identity"
)

// The token signing keys, for administrators (not Keystone's API: its
// Fernet keys are rotated on the command line):
//
//	GET  /api/v1/token-signing-keys         the ring: ids and dates, never the keys
//	POST /api/v1/token-signing-keys/rotate  a new primary key now
//
// Both need the admin role; admin wraps them in the authentication and
// that check.

// KeyView is one key as listed.
type KeyView struct {
	ID         string     `json:"id"`
	Primary    bool       `json:"primary"`
	CreatedAt  time.Time  `json:"created_at"`
	RetiredAt  *time.Time `json:"retired_at,omitempty"`
	ValidUntil *time.Time `json:"valid_until,omitempty"`
}

// RegisterKeys adds the key routes to mux, behind admin.
func (a *API) RegisterKeys(mux *http.ServeMux, admin func(http.Handler) http.Handler) {
	keys := func(list func(*http.Request, *identity.Context) ([]identity.KeyInfo, error)) http.Handler {
		return admin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := identity.FromContext(r.Context())
			ks, err := list(r, c)
			if err != nil {
				fail(w, err)
				return
			}
			out := make([]KeyView, 0, len(ks))
			for _, k := range ks {
				v := KeyView{ID: k.ID, Primary: k.Primary, CreatedAt: k.Created}
				if !k.Retired.IsZero() {
					v.RetiredAt, v.ValidUntil = &k.Retired, &k.ValidUntil
				}
				out = append(out, v)
			}
			writeJSON(w, http.StatusOK, map[string]any{"token_signing_keys": out})
		}))
	}
	mux.Handle("GET /api/v1/token-signing-keys", keys(func(r *http.Request, c *identity.Context) ([]identity.KeyInfo, error) {
		return a.svc.Keys(r.Context(), c)
	}))
	mux.Handle("POST /api/v1/token-signing-keys/rotate", keys(func(r *http.Request, c *identity.Context) ([]identity.KeyInfo, error) {
		return a.svc.Rotate(r.Context(), c)
	}))
}
