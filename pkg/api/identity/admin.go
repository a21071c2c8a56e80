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

func (a *API) listProjects(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	ps, err := a.svc.ListProjects(r.Context(), c, filter(r))
	writeList(a, w, r, "projects", ps, err, a.projectView)
}

func (a *API) getProject(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	p, err := a.svc.GetProject(r.Context(), c, r.PathValue("id"))
	writeOne(w, r, http.StatusOK, "project", p, err, a.projectView)
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

func (a *API) createProject(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	var b projectBody
	if !decode(w, r, "project", &b) {
		return
	}
	p, err := a.svc.CreateProject(r.Context(), c, identity.ProjectRequest(b))
	writeOne(w, r, http.StatusCreated, "project", p, err, a.projectView)
}

func (a *API) updateProject(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	var b projectBody
	if !decode(w, r, "project", &b) {
		return
	}
	p, err := a.svc.UpdateProject(r.Context(), c, r.PathValue("id"), identity.ProjectRequest(b))
	writeOne(w, r, http.StatusOK, "project", p, err, a.projectView)
}

func (a *API) deleteProject(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	done(w, a.svc.DeleteProject(r.Context(), c, r.PathValue("id")))
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

func (a *API) listUsers(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	us, err := a.svc.ListUsers(r.Context(), c, filter(r))
	writeList(a, w, r, "users", us, err, a.userView)
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	u, err := a.svc.GetUser(r.Context(), c, r.PathValue("id"))
	writeOne(w, r, http.StatusOK, "user", u, err, a.userView)
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

func (a *API) createUser(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	var b userBody
	if !decode(w, r, "user", &b) {
		return
	}
	u, err := a.svc.CreateUser(r.Context(), c, identity.UserRequest(b))
	writeOne(w, r, http.StatusCreated, "user", u, err, a.userView)
}

func (a *API) updateUser(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	var b userBody
	if !decode(w, r, "user", &b) {
		return
	}
	u, err := a.svc.UpdateUser(r.Context(), c, r.PathValue("id"), identity.UserRequest(b))
	writeOne(w, r, http.StatusOK, "user", u, err, a.userView)
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	done(w, a.svc.DeleteUser(r.Context(), c, r.PathValue("id")))
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

func (a *API) listRoles(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	rs, err := a.svc.ListRoles(r.Context(), c, filter(r).Name)
	writeList(a, w, r, "roles", rs, err, a.roleView)
}

func (a *API) getRole(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	x, err := a.svc.GetRole(r.Context(), c, r.PathValue("id"))
	writeOne(w, r, http.StatusOK, "role", x, err, a.roleView)
}

func (a *API) createRole(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	var b struct {
		Name        *string `json:"name"`
		Description string  `json:"description"`
	}
	if !decode(w, r, "role", &b) {
		return
	}
	x, err := a.svc.CreateRole(r.Context(), c, b.Name, b.Description)
	writeOne(w, r, http.StatusCreated, "role", x, err, a.roleView)
}

func (a *API) deleteRole(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	done(w, a.svc.DeleteRole(r.Context(), c, r.PathValue("id")))
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
