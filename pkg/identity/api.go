package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nagare/nagare/pkg/model"
)

// Prefix is where the identity API is mounted; the v3 API is below it.
const Prefix = "/identity"

// API serves the Keystone v3 subset: version discovery, password and token
// authentication, token validation and revocation, and the administration
// of projects, users, roles and role assignments that the openstack CLI
// drives (`project create`, `user create`, `role add`, `role assignment
// list`). Administration needs the admin role; a user may read itself and
// its projects.
type API struct {
	svc *Service
	// PublicURL, when set, is this server's URL as clients reach it (for
	// the catalog); otherwise it is derived from each request's Host.
	PublicURL string
	// Region names the catalog's region.
	Region string
}

// NewAPI returns the identity API over a service.
func NewAPI(svc *Service, publicURL string) *API {
	return &API{svc: svc, PublicURL: strings.TrimRight(publicURL, "/"), Region: "RegionOne"}
}

// BaseURL is the server's URL as a request reached it.
func (a *API) BaseURL(r *http.Request) string {
	if a.PublicURL != "" {
		return a.PublicURL
	}
	return RequestBaseURL(r)
}

// RequestBaseURL is scheme://host of the URL a request was sent to.
func RequestBaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
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
	mux.HandleFunc("GET "+v3+"/projects", a.authed(a.admin(a.listProjects)))
	mux.HandleFunc("POST "+v3+"/projects", a.authed(a.admin(a.createProject)))
	mux.HandleFunc("GET "+v3+"/projects/{id}", a.authed(a.getProject))
	mux.HandleFunc("PATCH "+v3+"/projects/{id}", a.authed(a.admin(a.updateProject)))
	mux.HandleFunc("DELETE "+v3+"/projects/{id}", a.authed(a.admin(a.deleteProject)))
	mux.HandleFunc("GET "+v3+"/users", a.authed(a.admin(a.listUsers)))
	mux.HandleFunc("POST "+v3+"/users", a.authed(a.admin(a.createUser)))
	mux.HandleFunc("GET "+v3+"/users/{id}", a.authed(a.getUser))
	mux.HandleFunc("PATCH "+v3+"/users/{id}", a.authed(a.admin(a.updateUser)))
	mux.HandleFunc("DELETE "+v3+"/users/{id}", a.authed(a.admin(a.deleteUser)))
	mux.HandleFunc("GET "+v3+"/users/{id}/projects", a.authed(a.userProjects))
	mux.HandleFunc("GET "+v3+"/roles", a.authed(a.listRoles))
	mux.HandleFunc("POST "+v3+"/roles", a.authed(a.admin(a.createRole)))
	mux.HandleFunc("GET "+v3+"/roles/{id}", a.authed(a.getRole))
	mux.HandleFunc("DELETE "+v3+"/roles/{id}", a.authed(a.admin(a.deleteRole)))
	grant := v3 + "/projects/{pid}/users/{uid}/roles"
	mux.HandleFunc("GET "+grant, a.authed(a.admin(a.listGrants)))
	mux.HandleFunc("PUT "+grant+"/{rid}", a.authed(a.admin(a.grant)))
	mux.HandleFunc("HEAD "+grant+"/{rid}", a.authed(a.admin(a.checkGrant)))
	mux.HandleFunc("GET "+grant+"/{rid}", a.authed(a.admin(a.checkGrant)))
	mux.HandleFunc("DELETE "+grant+"/{rid}", a.authed(a.admin(a.revokeGrant)))
	mux.HandleFunc("GET "+v3+"/role_assignments", a.authed(a.admin(a.listAssignments)))
	mux.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Not Found", "The resource could not be found.")
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

type handler func(w http.ResponseWriter, r *http.Request, c *Context)

// authed validates X-Auth-Token for the identity API's own routes.
func (a *API) authed(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := a.svc.Validate(r.Context(), r.Header.Get("X-Auth-Token"))
		if errors.Is(err, ErrInvalidToken) {
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

// admin lets only holders of the admin role through.
func (a *API) admin(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, c *Context) {
		if !c.IsAdmin() {
			forbidden(w)
			return
		}
		h(w, r, c)
	}
}

func forbidden(w http.ResponseWriter) {
	writeError(w, http.StatusForbidden, "Forbidden", "You are not authorized to perform the requested action.")
}

func notFound(w http.ResponseWriter, what, id string) {
	writeError(w, http.StatusNotFound, "Not Found", fmt.Sprintf("Could not find %s: %s.", what, id))
}

func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusBadRequest, "Bad Request", msg)
}

// fail maps store errors to Keystone's error documents.
func fail(w http.ResponseWriter, err error) {
	var fe *model.FieldError
	var ce *model.ConflictError
	switch {
	case errors.As(err, &fe):
		if strings.Contains(fe.Msg, "already used") {
			writeError(w, http.StatusConflict, "Conflict", "Conflict occurred attempting to store "+fe.Field+": "+fe.Msg+".")
			return
		}
		badRequest(w, "Invalid input for field '"+fe.Field+"': "+fe.Msg+".")
	case errors.As(err, &ce):
		writeError(w, http.StatusConflict, "Conflict", ce.Msg)
	case errors.Is(err, model.ErrNotFound):
		writeError(w, http.StatusNotFound, "Not Found", err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, "Service Unavailable", "The NSDB did not answer in time.")
	default:
		writeError(w, http.StatusInternalServerError, "Internal Server Error", "An unexpected error prevented the server from fulfilling your request: "+err.Error())
	}
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

const timeFormat = "2006-01-02T15:04:05.000000Z"

var defaultDomain = map[string]any{"id": DefaultDomainID, "name": DefaultDomainName}

// isDefaultDomain accepts the forms clients name the Default domain in.
func isDefaultDomain(id, name string) bool {
	return (id == "" || strings.EqualFold(id, DefaultDomainID)) && (name == "" || name == DefaultDomainName)
}

type nameRef struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Domain *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"domain"`
}

func (n *nameRef) inDefaultDomain() bool {
	return n.Domain == nil || isDefaultDomain(n.Domain.ID, n.Domain.Name)
}

type authRequest struct {
	Identity struct {
		Methods  []string `json:"methods"`
		Password *struct {
			User struct {
				nameRef
				Password string `json:"password"`
			} `json:"user"`
		} `json:"password"`
		Token *struct {
			ID string `json:"id"`
		} `json:"token"`
	} `json:"identity"`
	Scope json.RawMessage `json:"scope"`
}

// issue is POST /v3/auth/tokens: password authentication (or a token
// rescoped to a project), answering 201 with X-Subject-Token.
func (a *API) issue(w http.ResponseWriter, r *http.Request) {
	var req authRequest
	if !decode(w, r, "auth", &req) {
		return
	}
	var scope struct {
		Project *nameRef `json:"project"`
		Domain  *nameRef `json:"domain"`
		System  any      `json:"system"`
	}
	unscoped := len(req.Scope) == 0 || string(req.Scope) == `"unscoped"`
	if !unscoped {
		if err := json.Unmarshal(req.Scope, &scope); err != nil {
			badRequest(w, "Invalid input for field 'scope': "+err.Error())
			return
		}
		if scope.Project == nil {
			// Domain and system scopes carry no project; Nagare's policy has
			// nothing they would grant beyond an unscoped token.
			Unauthorized(w, a.AuthURL(r))
			return
		}
		if !scope.Project.inDefaultDomain() {
			Unauthorized(w, a.AuthURL(r))
			return
		}
	}
	pid, pname := "", ""
	if scope.Project != nil {
		pid, pname = scope.Project.ID, scope.Project.Name
	}
	var (
		tok string
		c   *Context
		err error
	)
	id := req.Identity
	switch {
	case contains(id.Methods, "password") && id.Password != nil:
		u := id.Password.User
		if !u.inDefaultDomain() || (u.ID == "" && u.Name == "") {
			Unauthorized(w, a.AuthURL(r))
			return
		}
		tok, c, err = a.svc.Login(r.Context(), u.ID, u.Name, u.Password, pid, pname, !unscoped)
	case contains(id.Methods, "token") && id.Token != nil:
		tok, c, err = a.svc.Rescope(r.Context(), id.Token.ID, pid, pname)
	default:
		badRequest(w, "Expecting to find identity methods password or token.")
		return
	}
	if errors.Is(err, ErrInvalidToken) {
		writeError(w, http.StatusUnauthorized, "Unauthorized", "The request you have made requires authentication.")
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("X-Subject-Token", tok)
	writeJSON(w, http.StatusCreated, map[string]any{"token": a.tokenBody(r, tok, c, r.URL.Query().Has("nocatalog"))})
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func (a *API) tokenBody(r *http.Request, tok string, c *Context, nocatalog bool) map[string]any {
	cl, _ := verify(a.svc.key, tok, time.Time{})
	issued := time.Now().UTC()
	audit := ""
	if cl != nil {
		issued, audit = cl.issued(), cl.AuditID
	}
	t := map[string]any{
		"methods":    []string{"password"},
		"user":       map[string]any{"id": c.UserID, "name": c.UserName, "domain": defaultDomain, "password_expires_at": nil},
		"audit_ids":  []string{audit},
		"expires_at": c.ExpiresAt.UTC().Format(timeFormat),
		"issued_at":  issued.Format(timeFormat),
	}
	if cl != nil {
		t["methods"] = cl.Methods
	}
	if c.ProjectID != "" {
		t["project"] = map[string]any{"id": c.ProjectID, "name": c.ProjectName, "domain": defaultDomain}
		t["is_domain"] = false
		roles := make([]map[string]string, len(c.Roles))
		for i, n := range c.Roles {
			roles[i] = map[string]string{"id": apiID(roleID(n)), "name": n}
		}
		t["roles"] = roles
		if !nocatalog {
			t["catalog"] = a.catalog(r)
		}
	}
	return t
}

// catalog lists this server as the network endpoint and the identity
// endpoint, in every interface (clients default to public; Nova uses
// internal).
func (a *API) catalog(r *http.Request) []map[string]any {
	base := a.BaseURL(r)
	svc := func(typ, name, url string) map[string]any {
		var eps []map[string]any
		for _, iface := range []string{"public", "internal", "admin"} {
			eps = append(eps, map[string]any{"id": apiID(derivedID("endpoint", typ, iface)), "interface": iface,
				"region_id": a.Region, "region": a.Region, "url": url})
		}
		return map[string]any{"id": apiID(derivedID("service", typ)), "type": typ, "name": name, "endpoints": eps}
	}
	return []map[string]any{svc("network", "neutron", base), svc("identity", "keystone", base+Prefix)}
}

// check is GET/HEAD /v3/auth/tokens: validate X-Subject-Token. Admins may
// check any token; a user its own.
func (a *API) check(w http.ResponseWriter, r *http.Request, c *Context) {
	subj := r.Header.Get("X-Subject-Token")
	sc, err := a.svc.Validate(r.Context(), subj)
	if errors.Is(err, ErrInvalidToken) {
		writeError(w, http.StatusNotFound, "Not Found", "Could not find token: "+shorten(subj)+".")
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	if !c.IsAdmin() && sc.UserID != c.UserID {
		forbidden(w)
		return
	}
	w.Header().Set("X-Subject-Token", subj)
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": a.tokenBody(r, subj, sc, r.URL.Query().Has("nocatalog"))})
}

func shorten(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

func (a *API) revoke(w http.ResponseWriter, r *http.Request, c *Context) {
	subj := r.Header.Get("X-Subject-Token")
	sc, err := a.svc.Validate(r.Context(), subj)
	if errors.Is(err, ErrInvalidToken) {
		writeError(w, http.StatusNotFound, "Not Found", "Could not find token: "+shorten(subj)+".")
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	if !c.IsAdmin() && sc.UserID != c.UserID {
		forbidden(w)
		return
	}
	if err := a.svc.Revoke(r.Context(), subj); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) catalogOf(w http.ResponseWriter, r *http.Request, c *Context) {
	writeJSON(w, http.StatusOK, map[string]any{"catalog": a.catalog(r), "links": a.links(r)})
}

func (a *API) links(r *http.Request) map[string]any {
	return map[string]any{"self": a.BaseURL(r) + r.URL.RequestURI(), "previous": nil, "next": nil}
}

func (a *API) self(r *http.Request, coll, id string) map[string]any {
	return map[string]any{"self": a.AuthURL(r) + "/v3/" + coll + "/" + id}
}
