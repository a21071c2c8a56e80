package identity

import (
	"context"
	"net/http"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
)

// The administration half of the identity API: the Default domain,
// projects, users, roles and role assignments. Policy is the service's;
// these handlers decode, call and render.

// collection is one administered collection of /v3 (projects, users,
// roles): its names, its view, and the service's operations (which apply
// the policy). B is the create or update body as Keystone's JSON names it,
// conv makes it the service's request R.
type collection[T, B, R any] struct {
	singular, plural string
	view             func(*http.Request, T) map[string]any
	conv             func(B) R
	list             func(context.Context, *identity.Context, identity.Filter) ([]T, error)
	get              func(context.Context, *identity.Context, string) (T, error)
	create           func(context.Context, *identity.Context, R) (T, error)
	update           func(context.Context, *identity.Context, string, R) (T, error) // nil: no PATCH
	delete           func(context.Context, *identity.Context, string) error
}

func (col *collection[T, B, R]) register(a *API, mux *http.ServeMux) {
	base := Prefix + "/v3/" + col.plural
	mux.HandleFunc("GET "+base, a.authed(func(w http.ResponseWriter, r *http.Request, c *identity.Context) {
		objs, err := col.list(r.Context(), c, filter(r))
		writeList(a, w, r, col.plural, objs, err, col.view)
	}))
	mux.HandleFunc("GET "+base+"/{id}", a.authed(func(w http.ResponseWriter, r *http.Request, c *identity.Context) {
		o, err := col.get(r.Context(), c, r.PathValue("id"))
		writeOne(w, r, http.StatusOK, col.singular, o, err, col.view)
	}))
	mux.HandleFunc("POST "+base, a.authed(func(w http.ResponseWriter, r *http.Request, c *identity.Context) {
		save(w, r, col.singular, http.StatusCreated, func(b B) (T, error) { return col.create(r.Context(), c, col.conv(b)) }, col.view)
	}))
	if col.update != nil {
		mux.HandleFunc("PATCH "+base+"/{id}", a.authed(func(w http.ResponseWriter, r *http.Request, c *identity.Context) {
			save(w, r, col.singular, http.StatusOK, func(b B) (T, error) { return col.update(r.Context(), c, r.PathValue("id"), col.conv(b)) }, col.view)
		}))
	}
	mux.HandleFunc("DELETE "+base+"/{id}", a.authed(func(w http.ResponseWriter, r *http.Request, c *identity.Context) {
		done(w, col.delete(r.Context(), c, r.PathValue("id")))
	}))
}

// registerCollections serves projects, users and roles.
func (a *API) registerCollections(mux *http.ServeMux) {
	s := a.svc
	(&collection[*identity.Project, projectBody, identity.ProjectRequest]{singular: "project", plural: "projects",
		view: a.projectView, conv: func(b projectBody) identity.ProjectRequest { return identity.ProjectRequest(b) },
		list: s.ListProjects, get: s.GetProject, create: s.CreateProject, update: s.UpdateProject, delete: s.DeleteProject}).register(a, mux)
	(&collection[*identity.User, userBody, identity.UserRequest]{singular: "user", plural: "users",
		view: a.userView, conv: func(b userBody) identity.UserRequest { return identity.UserRequest(b) },
		list: s.ListUsers, get: s.GetUser, create: s.CreateUser, update: s.UpdateUser, delete: s.DeleteUser}).register(a, mux)
	(&collection[*identity.Role, roleBody, identity.RoleRequest]{singular: "role", plural: "roles",
		view: a.roleView, conv: func(b roleBody) identity.RoleRequest { return identity.RoleRequest(b) },
		list: s.ListRoles, get: s.GetRole, create: s.CreateRole, delete: s.DeleteRole}).register(a, mux)
}

func (a *API) domainView(r *http.Request) map[string]any {
	return map[string]any{"id": identity.DefaultDomainID, "name": identity.DefaultDomainName, "description": "The default domain",
		"enabled": true, "tags": []string{}, "options": map[string]any{}, "links": a.self(r, "domains", identity.DefaultDomainID)}
}

func (a *API) listDomains(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	ds := []any{}
	q := r.URL.Query()
	if (!q.Has("name") || q.Get("name") == identity.DefaultDomainName) && (!q.Has("id") || q.Get("id") == identity.DefaultDomainID) {
		ds = append(ds, a.domainView(r))
	}
	writeJSON(w, http.StatusOK, map[string]any{"domains": ds, "links": a.links(r)})
}

func (a *API) getDomain(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	if id := r.PathValue("id"); !strings.EqualFold(id, identity.DefaultDomainID) {
		writeError(w, http.StatusNotFound, "Could not find domain: "+id+".")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"domain": a.domainView(r)})
}

// filter reads the list filters Keystone's collections take.
func filter(r *http.Request) identity.Filter {
	q := r.URL.Query()
	var f identity.Filter
	if q.Has("name") {
		n := q.Get("name")
		f.Name = &n
	}
	if q.Has("enabled") {
		e := parseBool(q.Get("enabled"))
		f.Enabled = &e
	}
	if q.Has("domain_id") {
		d := q.Get("domain_id")
		f.DomainID = &d
	}
	return f
}

func parseBool(s string) bool {
	s = strings.ToLower(s)
	return s == "true" || s == "1" || s == "yes" || s == "on"
}

// writeList answers a collection: each object's view, under plural.
func writeList[T any](a *API, w http.ResponseWriter, r *http.Request, plural string, objs []T, err error, view func(*http.Request, T) map[string]any) {
	if err != nil {
		fail(w, err)
		return
	}
	out := []any{}
	for _, o := range objs {
		out = append(out, view(r, o))
	}
	writeJSON(w, http.StatusOK, map[string]any{plural: out, "links": a.links(r)})
}

// writeOne answers one object: its view under singular, with status.
func writeOne[T any](w http.ResponseWriter, r *http.Request, status int, singular string, o T, err error, view func(*http.Request, T) map[string]any) {
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, status, map[string]any{singular: view(r, o)})
}

// save decodes the body under key and answers what write makes of it.
func save[B, T any](w http.ResponseWriter, r *http.Request, key string, status int, write func(B) (T, error), view func(*http.Request, T) map[string]any) {
	var b B
	if !decode(w, r, key, &b) {
		return
	}
	o, err := write(b)
	writeOne(w, r, status, key, o, err, view)
}

// done answers a write with no body.
func done(w http.ResponseWriter, err error) {
	if err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) projectView(r *http.Request, p *identity.Project) map[string]any {
	return map[string]any{"id": identity.APIID(p.ID), "name": p.Name, "description": p.Description, "enabled": p.Enabled,
		"domain_id": identity.DefaultDomainID, "parent_id": identity.DefaultDomainID, "is_domain": false, "tags": []string{},
		"options": map[string]any{}, "links": a.self(r, "projects", identity.APIID(p.ID))}
}

// projectBody is identity.ProjectRequest as Keystone's JSON names it.
type projectBody struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	Enabled     *bool   `json:"enabled"`
	DomainID    *string `json:"domain_id"`
	ParentID    *string `json:"parent_id"`
	IsDomain    *bool   `json:"is_domain"`
}

func (a *API) userView(r *http.Request, u *identity.User) map[string]any {
	v := map[string]any{"id": identity.APIID(u.ID), "name": u.Name, "domain_id": identity.DefaultDomainID, "enabled": u.Enabled,
		"password_expires_at": nil, "options": map[string]any{}, "links": a.self(r, "users", identity.APIID(u.ID))}
	if u.DefaultProjectID != "" {
		v["default_project_id"] = identity.APIID(u.DefaultProjectID)
	}
	if u.Email != "" {
		v["email"] = u.Email
	}
	if u.Description != "" {
		v["description"] = u.Description
	}
	return v
}

// userBody is identity.UserRequest as Keystone's JSON names it.
type userBody struct {
	Name             *string `json:"name"`
	Password         *string `json:"password"`
	DefaultProjectID *string `json:"default_project_id"`
	Enabled          *bool   `json:"enabled"`
	Email            *string `json:"email"`
	Description      *string `json:"description"`
	DomainID         *string `json:"domain_id"`
}

// userProjects lists the projects a user holds a role on.
func (a *API) userProjects(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	ps, err := a.svc.ProjectsOf(r.Context(), c, r.PathValue("id"))
	writeList(a, w, r, "projects", ps, err, a.projectView)
}

func (a *API) myProjects(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	ps, err := a.svc.ProjectsOf(r.Context(), c, c.UserID)
	writeList(a, w, r, "projects", ps, err, a.projectView)
}

func (a *API) roleView(r *http.Request, x *identity.Role) map[string]any {
	return map[string]any{"id": identity.APIID(x.ID), "name": x.Name, "domain_id": nil, "description": x.Description,
		"options": map[string]any{}, "links": a.self(r, "roles", identity.APIID(x.ID))}
}

type roleBody struct {
	Name        *string `json:"name"`
	Description string  `json:"description"`
}

// grantOp is an operation on the assignment a URL names.
type grantOp func(ctx context.Context, c *identity.Context, project, user, role string) error

func (a *API) grantHandler(op grantOp) handler {
	return func(w http.ResponseWriter, r *http.Request, c *identity.Context) {
		done(w, op(r.Context(), c, r.PathValue("pid"), r.PathValue("uid"), r.PathValue("rid")))
	}
}

func (a *API) listGrants(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	rs, err := a.svc.GrantedRoles(r.Context(), c, r.PathValue("pid"), r.PathValue("uid"))
	writeList(a, w, r, "roles", rs, err, a.roleView)
}

// listAssignments is GET /v3/role_assignments with the filters the
// openstack CLI sends (user.id, scope.project.id, role.id, include_names).
func (a *API) listAssignments(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	q := r.URL.Query()
	f := identity.AssignmentFilter{UserID: q.Get("user.id"), ProjectID: q.Get("scope.project.id"), RoleID: q.Get("role.id"),
		Names: q.Has("include_names") && q.Get("include_names") != "false" && q.Get("include_names") != "0"}
	as, err := a.svc.Assignments(r.Context(), c, f)
	if err != nil {
		fail(w, err)
		return
	}
	out := []map[string]any{}
	for _, x := range as {
		user := map[string]any{"id": identity.APIID(x.UserID)}
		proj := map[string]any{"id": identity.APIID(x.ProjectID)}
		role := map[string]any{"id": identity.APIID(x.RoleID)}
		if f.Names {
			user["name"], user["domain"] = x.UserName, defaultDomain
			proj["name"], proj["domain"] = x.ProjectName, defaultDomain
			role["name"] = x.RoleName
		}
		out = append(out, map[string]any{"user": user, "role": role, "scope": map[string]any{"project": proj},
			"links": map[string]any{"assignment": a.AuthURL(r) + "/v3/projects/" + identity.APIID(x.ProjectID) + "/users/" + identity.APIID(x.UserID) + "/roles/" + identity.APIID(x.RoleID)}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"role_assignments": out, "links": a.links(r)})
}
