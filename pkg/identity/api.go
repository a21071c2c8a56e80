package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
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

func (a *API) domainView(r *http.Request) map[string]any {
	return map[string]any{"id": DefaultDomainID, "name": DefaultDomainName, "description": "The default domain",
		"enabled": true, "tags": []string{}, "options": map[string]any{}, "links": a.self(r, "domains", DefaultDomainID)}
}

func (a *API) listDomains(w http.ResponseWriter, r *http.Request, c *Context) {
	ds := []any{}
	q := r.URL.Query()
	if (!q.Has("name") || q.Get("name") == DefaultDomainName) && (!q.Has("id") || q.Get("id") == DefaultDomainID) {
		ds = append(ds, a.domainView(r))
	}
	writeJSON(w, http.StatusOK, map[string]any{"domains": ds, "links": a.links(r)})
}

func (a *API) getDomain(w http.ResponseWriter, r *http.Request, c *Context) {
	if id := r.PathValue("id"); !strings.EqualFold(id, DefaultDomainID) {
		notFound(w, "domain", id)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"domain": a.domainView(r)})
}

func (a *API) projectView(r *http.Request, p *Project) map[string]any {
	return map[string]any{"id": apiID(p.ID), "name": p.Name, "description": p.Description, "enabled": p.Enabled,
		"domain_id": DefaultDomainID, "parent_id": DefaultDomainID, "is_domain": false, "tags": []string{},
		"options": map[string]any{}, "links": a.self(r, "projects", apiID(p.ID))}
}

func (a *API) listProjects(w http.ResponseWriter, r *http.Request, c *Context) {
	q := r.URL.Query()
	if q.Has("domain_id") && !strings.EqualFold(q.Get("domain_id"), DefaultDomainID) {
		writeJSON(w, http.StatusOK, map[string]any{"projects": []any{}, "links": a.links(r)})
		return
	}
	objs, _, err := a.svc.store.List(r.Context(), ProjectKind, "", "")
	if err != nil {
		fail(w, err)
		return
	}
	out := []any{}
	for _, o := range objs {
		p := o.(*Project)
		if (q.Has("name") && q.Get("name") != p.Name) || (q.Has("enabled") && parseBool(q.Get("enabled")) != p.Enabled) {
			continue
		}
		out = append(out, a.projectView(r, p))
	}
	writeJSON(w, http.StatusOK, map[string]any{"projects": out, "links": a.links(r)})
}

func parseBool(s string) bool {
	s = strings.ToLower(s)
	return s == "true" || s == "1" || s == "yes" || s == "on"
}

// getProject: admins see any project, users the ones they hold a role on.
func (a *API) getProject(w http.ResponseWriter, r *http.Request, c *Context) {
	id := storeID(r.PathValue("id"))
	o, err := a.svc.store.Get(r.Context(), ProjectKind, id)
	if errors.Is(err, model.ErrNotFound) || (err == nil && !c.IsAdmin() && apiID(id) != c.ProjectID) {
		if !c.IsAdmin() {
			forbidden(w)
			return
		}
		notFound(w, "project", r.PathValue("id"))
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"project": a.projectView(r, o.(*Project))})
}

type projectBody struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	Enabled     *bool   `json:"enabled"`
	DomainID    *string `json:"domain_id"`
	ParentID    *string `json:"parent_id"`
	IsDomain    *bool   `json:"is_domain"`
}

func (b *projectBody) check(w http.ResponseWriter) bool {
	if b.DomainID != nil && !isDefaultDomain(*b.DomainID, "") {
		badRequest(w, "Nagare's identity service has one domain, "+DefaultDomainID+".")
		return false
	}
	if b.ParentID != nil && *b.ParentID != "" && !strings.EqualFold(*b.ParentID, DefaultDomainID) {
		badRequest(w, "Project hierarchies are not supported: parent_id must be the domain.")
		return false
	}
	if b.IsDomain != nil && *b.IsDomain {
		badRequest(w, "Projects acting as domains are not supported.")
		return false
	}
	if b.Name != nil && (strings.TrimSpace(*b.Name) == "" || len(*b.Name) > 64) {
		badRequest(w, "Invalid input for field 'name': the name must be 1 to 64 characters.")
		return false
	}
	return true
}

func (a *API) createProject(w http.ResponseWriter, r *http.Request, c *Context) {
	var b projectBody
	if !decode(w, r, "project", &b) || !b.check(w) {
		return
	}
	if b.Name == nil {
		badRequest(w, "Invalid input for field 'name': 'name' is a required property.")
		return
	}
	p := &Project{Name: *b.Name, Enabled: b.Enabled == nil || *b.Enabled}
	if b.Description != nil {
		p.Description = *b.Description
	}
	o, err := a.svc.store.Create(r.Context(), p)
	if err != nil {
		failDuplicate(w, err, "project", *b.Name)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"project": a.projectView(r, o.(*Project))})
}

// failDuplicate words a taken name as Keystone does.
func failDuplicate(w http.ResponseWriter, err error, what, name string) {
	var fe *model.FieldError
	if errors.As(err, &fe) && fe.Field == "name" {
		writeError(w, http.StatusConflict, "Conflict", fmt.Sprintf("Conflict occurred attempting to store %s - Duplicate entry found with name %s at domain ID %s.", what, name, DefaultDomainID))
		return
	}
	fail(w, err)
}

func (a *API) updateProject(w http.ResponseWriter, r *http.Request, c *Context) {
	var b projectBody
	if !decode(w, r, "project", &b) || !b.check(w) {
		return
	}
	id := storeID(r.PathValue("id"))
	o, err := a.svc.store.Modify(r.Context(), ProjectKind, id, 0, func(o model.Object) error {
		p := o.(*Project)
		if b.Name != nil {
			p.Name = *b.Name
		}
		if b.Description != nil {
			p.Description = *b.Description
		}
		if b.Enabled != nil {
			p.Enabled = *b.Enabled
		}
		return nil
	})
	if errors.Is(err, model.ErrNotFound) {
		notFound(w, "project", r.PathValue("id"))
		return
	}
	if err != nil {
		failDuplicate(w, err, "project", deref(b.Name))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"project": a.projectView(r, o.(*Project))})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (a *API) deleteProject(w http.ResponseWriter, r *http.Request, c *Context) {
	a.remove(w, r, ProjectKind, "project")
}

func (a *API) remove(w http.ResponseWriter, r *http.Request, k *model.Kind, what string) {
	err := a.svc.store.Remove(r.Context(), k, storeID(r.PathValue("id")), 0)
	if errors.Is(err, model.ErrNotFound) {
		notFound(w, what, r.PathValue("id"))
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) userView(r *http.Request, u *User) map[string]any {
	v := map[string]any{"id": apiID(u.ID), "name": u.Name, "domain_id": DefaultDomainID, "enabled": u.Enabled,
		"password_expires_at": nil, "options": map[string]any{}, "links": a.self(r, "users", apiID(u.ID))}
	if u.DefaultProjectID != "" {
		v["default_project_id"] = apiID(u.DefaultProjectID)
	}
	if u.Email != "" {
		v["email"] = u.Email
	}
	if u.Description != "" {
		v["description"] = u.Description
	}
	return v
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request, c *Context) {
	q := r.URL.Query()
	if q.Has("domain_id") && !strings.EqualFold(q.Get("domain_id"), DefaultDomainID) {
		writeJSON(w, http.StatusOK, map[string]any{"users": []any{}, "links": a.links(r)})
		return
	}
	objs, _, err := a.svc.store.List(r.Context(), UserKind, "", "")
	if err != nil {
		fail(w, err)
		return
	}
	out := []any{}
	for _, o := range objs {
		u := o.(*User)
		if (q.Has("name") && q.Get("name") != u.Name) || (q.Has("enabled") && parseBool(q.Get("enabled")) != u.Enabled) {
			continue
		}
		out = append(out, a.userView(r, u))
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out, "links": a.links(r)})
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request, c *Context) {
	id := storeID(r.PathValue("id"))
	if !c.IsAdmin() && apiID(id) != c.UserID {
		forbidden(w)
		return
	}
	o, err := a.svc.store.Get(r.Context(), UserKind, id)
	if errors.Is(err, model.ErrNotFound) {
		notFound(w, "user", r.PathValue("id"))
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": a.userView(r, o.(*User))})
}

type userBody struct {
	Name             *string `json:"name"`
	Password         *string `json:"password"`
	DefaultProjectID *string `json:"default_project_id"`
	Enabled          *bool   `json:"enabled"`
	Email            *string `json:"email"`
	Description      *string `json:"description"`
	DomainID         *string `json:"domain_id"`
}

// apply sets the body's fields on u, hashing a new password (slow, so it
// is done before the transaction).
func (b *userBody) apply(u *User, hash string) {
	if b.Name != nil {
		u.Name = *b.Name
	}
	if hash != "" {
		u.PasswordHash = hash
	}
	if b.DefaultProjectID != nil {
		u.DefaultProjectID = storeID(*b.DefaultProjectID)
	}
	if b.Enabled != nil {
		u.Enabled = *b.Enabled
	}
	if b.Email != nil {
		u.Email = *b.Email
	}
	if b.Description != nil {
		u.Description = *b.Description
	}
}

func (a *API) userBody(w http.ResponseWriter, r *http.Request) (*userBody, string, bool) {
	var b userBody
	if !decode(w, r, "user", &b) {
		return nil, "", false
	}
	if b.DomainID != nil && !isDefaultDomain(*b.DomainID, "") {
		badRequest(w, "Nagare's identity service has one domain, "+DefaultDomainID+".")
		return nil, "", false
	}
	if b.Name != nil && (strings.TrimSpace(*b.Name) == "" || len(*b.Name) > 255) {
		badRequest(w, "Invalid input for field 'name': the name must be 1 to 255 characters.")
		return nil, "", false
	}
	if b.DefaultProjectID != nil && *b.DefaultProjectID != "" && storeID(*b.DefaultProjectID) == "" {
		notFound(w, "project", *b.DefaultProjectID)
		return nil, "", false
	}
	hash := ""
	if b.Password != nil {
		if err := validPassword(*b.Password); err != nil {
			badRequest(w, "Invalid input for field 'password': "+err.Error()+".")
			return nil, "", false
		}
		var err error
		if hash, err = hashPassword(*b.Password, a.svc.cost); err != nil {
			fail(w, err)
			return nil, "", false
		}
	}
	return &b, hash, true
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request, c *Context) {
	b, hash, ok := a.userBody(w, r)
	if !ok {
		return
	}
	if b.Name == nil {
		badRequest(w, "Invalid input for field 'name': 'name' is a required property.")
		return
	}
	u := &User{Enabled: true}
	b.apply(u, hash)
	o, err := a.svc.store.Create(r.Context(), u)
	if err != nil {
		failDuplicate(w, err, "user", *b.Name)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"user": a.userView(r, o.(*User))})
}

func (a *API) updateUser(w http.ResponseWriter, r *http.Request, c *Context) {
	b, hash, ok := a.userBody(w, r)
	if !ok {
		return
	}
	o, err := a.svc.store.Modify(r.Context(), UserKind, storeID(r.PathValue("id")), 0, func(o model.Object) error {
		b.apply(o.(*User), hash)
		return nil
	})
	if errors.Is(err, model.ErrNotFound) {
		notFound(w, "user", r.PathValue("id"))
		return
	}
	if err != nil {
		failDuplicate(w, err, "user", deref(b.Name))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": a.userView(r, o.(*User))})
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request, c *Context) {
	a.remove(w, r, UserKind, "user")
}

// userProjects lists the projects a user holds a role on.
func (a *API) userProjects(w http.ResponseWriter, r *http.Request, c *Context) {
	id := storeID(r.PathValue("id"))
	if !c.IsAdmin() && apiID(id) != c.UserID {
		forbidden(w)
		return
	}
	a.projectsOf(w, r, id)
}

func (a *API) myProjects(w http.ResponseWriter, r *http.Request, c *Context) {
	a.projectsOf(w, r, storeID(c.UserID))
}

func (a *API) projectsOf(w http.ResponseWriter, r *http.Request, userID string) {
	as, _, err := a.svc.store.List(r.Context(), AssignmentKind, "user_id", userID)
	if err != nil {
		fail(w, err)
		return
	}
	seen := map[string]bool{}
	out := []any{}
	for _, o := range as {
		pid := o.(*Assignment).ProjectID
		if seen[pid] {
			continue
		}
		seen[pid] = true
		p, err := a.svc.store.Get(r.Context(), ProjectKind, pid)
		if err != nil {
			continue
		}
		out = append(out, a.projectView(r, p.(*Project)))
	}
	writeJSON(w, http.StatusOK, map[string]any{"projects": out, "links": a.links(r)})
}

func (a *API) roleView(r *http.Request, x *Role) map[string]any {
	return map[string]any{"id": apiID(x.ID), "name": x.Name, "domain_id": nil, "description": x.Description,
		"options": map[string]any{}, "links": a.self(r, "roles", apiID(x.ID))}
}

func (a *API) listRoles(w http.ResponseWriter, r *http.Request, c *Context) {
	objs, _, err := a.svc.store.List(r.Context(), RoleKind, "", "")
	if err != nil {
		fail(w, err)
		return
	}
	q := r.URL.Query()
	out := []any{}
	for _, o := range objs {
		x := o.(*Role)
		if q.Has("name") && q.Get("name") != x.Name {
			continue
		}
		out = append(out, a.roleView(r, x))
	}
	writeJSON(w, http.StatusOK, map[string]any{"roles": out, "links": a.links(r)})
}

func (a *API) getRole(w http.ResponseWriter, r *http.Request, c *Context) {
	o, err := a.svc.store.Get(r.Context(), RoleKind, storeID(r.PathValue("id")))
	if errors.Is(err, model.ErrNotFound) {
		notFound(w, "role", r.PathValue("id"))
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"role": a.roleView(r, o.(*Role))})
}

func (a *API) createRole(w http.ResponseWriter, r *http.Request, c *Context) {
	var b struct {
		Name        *string `json:"name"`
		Description string  `json:"description"`
	}
	if !decode(w, r, "role", &b) {
		return
	}
	if b.Name == nil || strings.TrimSpace(*b.Name) == "" || len(*b.Name) > 255 {
		badRequest(w, "Invalid input for field 'name': the name must be 1 to 255 characters.")
		return
	}
	o, err := a.svc.store.Create(r.Context(), &Role{Meta: model.Meta{ID: roleID(*b.Name)}, Name: *b.Name, Description: b.Description})
	if err != nil {
		var ce *model.ConflictError
		if errors.As(err, &ce) {
			err = &model.FieldError{Field: "name", Msg: "already used"}
		}
		failDuplicate(w, err, "role", *b.Name)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"role": a.roleView(r, o.(*Role))})
}

func (a *API) deleteRole(w http.ResponseWriter, r *http.Request, c *Context) {
	if storeID(r.PathValue("id")) == roleID(RoleAdmin) {
		// Deleting it would take every administrator's rights at once.
		forbidden(w)
		return
	}
	a.remove(w, r, RoleKind, "role")
}

// grantIDs resolves the project, user and role of an assignment URL,
// answering 404 for the first that does not exist.
func (a *API) grantIDs(w http.ResponseWriter, r *http.Request) (pid, uid, rid string, ok bool) {
	for _, x := range []struct {
		k    *model.Kind
		what string
		name string
		out  *string
	}{{ProjectKind, "project", "pid", &pid}, {UserKind, "user", "uid", &uid}, {RoleKind, "role", "rid", &rid}} {
		id := storeID(r.PathValue(x.name))
		if _, err := a.svc.store.Get(r.Context(), x.k, id); err != nil {
			if errors.Is(err, model.ErrNotFound) {
				notFound(w, x.what, r.PathValue(x.name))
			} else {
				fail(w, err)
			}
			return "", "", "", false
		}
		*x.out = id
	}
	return pid, uid, rid, true
}

func (a *API) grant(w http.ResponseWriter, r *http.Request, c *Context) {
	pid, uid, rid, ok := a.grantIDs(w, r)
	if !ok {
		return
	}
	_, err := a.svc.store.Update(r.Context(), func(tx *nsdb.Tx) error {
		id := assignmentID(uid, pid, rid)
		if _, err := tx.Get(AssignmentKind, id); err == nil {
			return nil // granting twice is granting once
		}
		_, err := tx.Create(&Assignment{Meta: model.Meta{ID: id}, UserID: uid, ProjectID: pid, RoleID: rid})
		return err
	})
	if err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) checkGrant(w http.ResponseWriter, r *http.Request, c *Context) {
	pid, uid, rid, ok := a.grantIDs(w, r)
	if !ok {
		return
	}
	if _, err := a.svc.store.Get(r.Context(), AssignmentKind, assignmentID(uid, pid, rid)); err != nil {
		if errors.Is(err, model.ErrNotFound) {
			notFound(w, "role assignment", r.PathValue("rid"))
		} else {
			fail(w, err)
		}
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) revokeGrant(w http.ResponseWriter, r *http.Request, c *Context) {
	pid, uid, rid, ok := a.grantIDs(w, r)
	if !ok {
		return
	}
	err := a.svc.store.Remove(r.Context(), AssignmentKind, assignmentID(uid, pid, rid), 0)
	if errors.Is(err, model.ErrNotFound) {
		notFound(w, "role assignment", r.PathValue("rid"))
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listGrants(w http.ResponseWriter, r *http.Request, c *Context) {
	pid, uid := storeID(r.PathValue("pid")), storeID(r.PathValue("uid"))
	roles, err := a.svc.rolesOf(r.Context(), uid, pid)
	if err != nil {
		fail(w, err)
		return
	}
	out := []any{}
	for _, x := range roles {
		out = append(out, a.roleView(r, x))
	}
	writeJSON(w, http.StatusOK, map[string]any{"roles": out, "links": a.links(r)})
}

// listAssignments is GET /v3/role_assignments with the filters the
// openstack CLI sends (user.id, scope.project.id, role.id, include_names).
func (a *API) listAssignments(w http.ResponseWriter, r *http.Request, c *Context) {
	q := r.URL.Query()
	var objs []model.Object
	var err error
	switch {
	case q.Get("user.id") != "":
		objs, _, err = a.svc.store.List(r.Context(), AssignmentKind, "user_id", storeID(q.Get("user.id")))
	case q.Get("scope.project.id") != "":
		objs, _, err = a.svc.store.List(r.Context(), AssignmentKind, "project_id", storeID(q.Get("scope.project.id")))
	default:
		objs, _, err = a.svc.store.List(r.Context(), AssignmentKind, "", "")
	}
	if err != nil {
		fail(w, err)
		return
	}
	names := q.Has("include_names") && q.Get("include_names") != "false" && q.Get("include_names") != "0"
	name := func(k *model.Kind, id string) string {
		o, err := a.svc.store.Get(r.Context(), k, id)
		if err != nil {
			return ""
		}
		switch x := o.(type) {
		case *User:
			return x.Name
		case *Project:
			return x.Name
		case *Role:
			return x.Name
		}
		return ""
	}
	out := []map[string]any{}
	for _, o := range objs {
		as := o.(*Assignment)
		if (q.Get("user.id") != "" && storeID(q.Get("user.id")) != as.UserID) ||
			(q.Get("scope.project.id") != "" && storeID(q.Get("scope.project.id")) != as.ProjectID) ||
			(q.Get("role.id") != "" && storeID(q.Get("role.id")) != as.RoleID) {
			continue
		}
		user := map[string]any{"id": apiID(as.UserID)}
		proj := map[string]any{"id": apiID(as.ProjectID)}
		role := map[string]any{"id": apiID(as.RoleID)}
		if names {
			user["name"], user["domain"] = name(UserKind, as.UserID), defaultDomain
			proj["name"], proj["domain"] = name(ProjectKind, as.ProjectID), defaultDomain
			role["name"] = name(RoleKind, as.RoleID)
		}
		out = append(out, map[string]any{"user": user, "role": role, "scope": map[string]any{"project": proj},
			"links": map[string]any{"assignment": a.AuthURL(r) + "/v3/projects/" + apiID(as.ProjectID) + "/users/" + apiID(as.UserID) + "/roles/" + apiID(as.RoleID)}})
	}
	sort.SliceStable(out, func(i, j int) bool {
		return fmt.Sprint(out[i]["user"]) < fmt.Sprint(out[j]["user"])
	})
	writeJSON(w, http.StatusOK, map[string]any{"role_assignments": out, "links": a.links(r)})
}
