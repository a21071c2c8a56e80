// Package identity serves the Keystone v3 subset at /identity over package
// identity's service, validates tokens against an external Keystone, and
// holds the authentication middleware every API sits behind.
//
// It is everything HTTP about identity, and only that: routes, request
// bodies into the domain's requests, views (objects as Keystone's JSON,
// ids in Keystone's form), Keystone's error document and statuses (from
// the domain's error classes), and the client of an external Keystone's
// token API. Users, projects, roles, passwords, tokens and policy are
// package identity's, which imports no net/http (internal/archtest
// enforces it); package api/neutron follows the same rule.
package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
)

// Prefix is where the identity API is mounted; the v3 API is below it.
const Prefix = "/identity"

// API serves the Keystone v3 subset: version discovery, password and token
// authentication, token validation and revocation, and the administration
// of projects, users, roles and role assignments that the openstack CLI
// drives (`project create`, `user create`, `role add`, `role assignment
// list`).
type API struct {
	svc *identity.Service
	// PublicURL, when set, is this server's URL as clients reach it (for
	// the catalog); otherwise it is derived from each request's Host.
	PublicURL string
	// Region names the catalog's region.
	Region string
}

// NewAPI returns the identity API over a service.
func NewAPI(svc *identity.Service, publicURL string) *API {
	return &API{svc: svc, PublicURL: strings.TrimRight(publicURL, "/"), Region: "RegionOne"}
}

// BaseURL is the server's URL as a request reached it.
func (a *API) BaseURL(r *http.Request) string {
	if a.PublicURL != "" {
		return a.PublicURL
	}
	return RequestBaseURL(r)
}

// AuthURL is the identity endpoint to name in WWW-Authenticate.
func (a *API) AuthURL(r *http.Request) string { return a.BaseURL(r) + Prefix }

// Register adds the identity routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	v3 := Prefix + "/v3"
	mux.HandleFunc("GET "+Prefix, a.versions)
	mux.HandleFunc("GET "+Prefix+"/{$}", a.versions)
	mux.HandleFunc("GET "+v3, a.version)
	mux.HandleFunc("GET "+v3+"/{$}", a.version)
	mux.HandleFunc("POST "+v3+"/auth/tokens", a.issue)
	mux.HandleFunc("GET "+v3+"/auth/tokens", a.authed(a.check))
	mux.HandleFunc("HEAD "+v3+"/auth/tokens", a.authed(a.check))
	mux.HandleFunc("DELETE "+v3+"/auth/tokens", a.authed(a.revoke))
	mux.HandleFunc("GET "+v3+"/auth/catalog", a.authed(a.catalogOf))
	mux.HandleFunc("GET "+v3+"/auth/projects", a.authed(a.myProjects))
	mux.HandleFunc("GET "+v3+"/domains", a.authed(a.listDomains))
	mux.HandleFunc("GET "+v3+"/domains/{id}", a.authed(a.getDomain))
	a.registerCollections(mux)
	mux.HandleFunc("GET "+v3+"/users/{id}/projects", a.authed(a.userProjects))
	grant := v3 + "/projects/{pid}/users/{uid}/roles"
	mux.HandleFunc("GET "+grant, a.authed(a.listGrants))
	mux.HandleFunc("PUT "+grant+"/{rid}", a.authed(a.grantHandler(a.svc.Grant)))
	mux.HandleFunc("HEAD "+grant+"/{rid}", a.authed(a.grantHandler(a.svc.CheckGrant)))
	mux.HandleFunc("GET "+grant+"/{rid}", a.authed(a.grantHandler(a.svc.CheckGrant)))
	mux.HandleFunc("DELETE "+grant+"/{rid}", a.authed(a.grantHandler(a.svc.RevokeGrant)))
	mux.HandleFunc("GET "+v3+"/role_assignments", a.authed(a.listAssignments))
	mux.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "The resource could not be found.")
	})
}

const keystoneVersion = "v3.14"

func (a *API) versionDoc(r *http.Request) map[string]any {
	return map[string]any{
		"id": keystoneVersion, "status": "stable", "updated": "2020-04-07T00:00:00Z",
		"links":       []map[string]string{{"rel": "self", "href": a.AuthURL(r) + "/v3/"}},
		"media-types": []map[string]string{{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}},
	}
}

// versions answers like Keystone's root: 300 Multiple Choices listing v3.
func (a *API) versions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": map[string]any{"values": []any{a.versionDoc(r)}}})
}

func (a *API) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"version": a.versionDoc(r)})
}

type handler func(w http.ResponseWriter, r *http.Request, c *identity.Context)

// authed validates X-Auth-Token for the identity API's own routes.
func (a *API) authed(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := a.svc.Validate(r.Context(), r.Header.Get("X-Auth-Token"))
		if errors.Is(err, identity.ErrInvalidToken) {
			Unauthorized(w, a.AuthURL(r))
			return
		}
		if err != nil {
			fail(w, err)
			return
		}
		h(w, r, c)
	}
}

// statuses are the statuses of the domain's error classes.
var statuses = map[identity.Class]int{
	identity.Internal:     http.StatusInternalServerError,
	identity.BadRequest:   http.StatusBadRequest,
	identity.Unauthorized: http.StatusUnauthorized,
	identity.Forbidden:    http.StatusForbidden,
	identity.NotFound:     http.StatusNotFound,
	identity.Conflict:     http.StatusConflict,
	identity.Unavailable:  http.StatusServiceUnavailable,
}

// fail answers an error with Keystone's error document.
func fail(w http.ResponseWriter, err error) {
	e := identity.AsError(err)
	writeError(w, statuses[e.Class], e.Message)
}

func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusBadRequest, msg)
}

// writeError writes Keystone's error document; its title is the status's.
func writeError(w http.ResponseWriter, code int, msg string) {
	var b struct {
		Error struct {
			Code    int    `json:"code"`
			Title   string `json:"title"`
			Message string `json:"message"`
		} `json:"error"`
	}
	b.Error.Code, b.Error.Title, b.Error.Message = code, http.StatusText(code), msg
	writeJSON(w, code, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads {"<key>": {...}} into v.
func decode(w http.ResponseWriter, r *http.Request, key string, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		badRequest(w, "cannot read the request body")
		return false
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		badRequest(w, "The request body is not valid JSON: "+err.Error())
		return false
	}
	inner, ok := doc[key]
	if !ok {
		badRequest(w, fmt.Sprintf("'%s' is a required property", key))
		return false
	}
	if err := json.Unmarshal(inner, v); err != nil {
		badRequest(w, fmt.Sprintf("Invalid input for field '%s': %v", key, err))
		return false
	}
	return true
}

func (a *API) links(r *http.Request) map[string]any {
	return map[string]any{"self": a.BaseURL(r) + r.URL.RequestURI(), "previous": nil, "next": nil}
}

func (a *API) self(r *http.Request, coll, id string) map[string]any {
	return map[string]any{"self": a.AuthURL(r) + "/v3/" + coll + "/" + id}
}
