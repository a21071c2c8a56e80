package identity

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// The administration half of the identity API: the Default domain,
// projects, users, roles and role assignments.

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
