package identity

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/nagare/nagare/pkg/identity"
)

// The authentication every API of nagare-server sits behind: it puts the
// caller (identity.Context) on each request, as keystonemiddleware does
// for OpenStack's services. It lives here, with the identity API, because
// it speaks Keystone's HTTP dialect (X-Auth-Token, WWW-Authenticate:
// Keystone uri=…, Keystone's error document), whichever validator checks
// the token.

// Authenticate lets a request through to h only with a valid X-Auth-Token,
// putting the caller on its context; otherwise it answers 401 as
// keystonemiddleware does (clients key on the status and WWW-Authenticate).
func Authenticate(v identity.Validator, authURL func(*http.Request) string, log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("X-Auth-Token")
		if tok == "" {
			Unauthorized(w, authURL(r))
			return
		}
		c, err := v.Validate(r.Context(), tok)
		if errors.Is(err, identity.ErrInvalidToken) {
			Unauthorized(w, authURL(r))
			return
		}
		if err != nil {
			log.Error("token validation failed", "err", err)
			writeError(w, http.StatusServiceUnavailable, "The identity service cannot validate tokens right now: "+err.Error())
			return
		}
		h.ServeHTTP(w, r.WithContext(identity.WithContext(r.Context(), c)))
	})
}

// NoAuth lets every request through as an administrator (--auth noauth, for
// demos). The project is the X-Project-Id header's, else "admin".
func NoAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.Header.Get("X-Project-Id")
		if p == "" {
			p = "admin"
		}
		c := &identity.Context{UserID: "noauth", UserName: "noauth", ProjectID: p, ProjectName: p, Roles: []string{identity.RoleAdmin}, NoAuth: true}
		h.ServeHTTP(w, r.WithContext(identity.WithContext(r.Context(), c)))
	})
}

// Unauthorized answers 401 the way Keystone and keystonemiddleware do.
func Unauthorized(w http.ResponseWriter, authURL string) {
	if authURL != "" {
		w.Header().Set("WWW-Authenticate", `Keystone uri="`+authURL+`"`)
	}
	writeError(w, http.StatusUnauthorized, "The request you have made requires authentication.")
}

// RequestBaseURL is scheme://host of the URL a request was sent to.
func RequestBaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
