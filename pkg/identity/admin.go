package identity

import (
	"context"
	"errors"
	"sort"
	"strings"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Administration: projects, users, roles and role assignments, with
// Keystone's default policy (administration needs the admin role; a user
// may read itself and its projects). Ids are taken in the form the API
// prints them (APIID) or as stored; objects come back as stored.

// Filter narrows a list as Keystone's query parameters do; nil fields do
// not filter.
type Filter struct {
	Name     *string
	Enabled  *bool
	DomainID *string
}

// otherDomain: the filter names a domain other than the one there is.
func (f *Filter) otherDomain() bool {
	return f.DomainID != nil && !strings.EqualFold(*f.DomainID, DefaultDomainID)
}

// IsDefaultDomain accepts the forms clients name the Default domain in.
func IsDefaultDomain(id, name string) bool {
	return (id == "" || strings.EqualFold(id, DefaultDomainID)) && (name == "" || name == DefaultDomainName)
}

func admin(c *Context) error {
	if !c.IsAdmin() {
		return forbidden()
	}
	return nil
}

// get reads one object by API id, answering Keystone's not-found error.
func get[T model.Object](ctx context.Context, s *Service, what, id string) (T, error) {
	var zero T
	o, err := s.store.Get(ctx, model.KindOf(zero), storeID(id))
	if errors.Is(err, model.ErrNotFound) {
		return zero, notFound(what, id)
	}
	if err != nil {
		return zero, err
	}
	return o.(T), nil
}

// list lists the projects or users a filter admits (admin only).
func list[T model.Object](ctx context.Context, s *Service, c *Context, f Filter, attrs func(T) (name string, enabled bool)) ([]T, error) {
	if err := admin(c); err != nil {
		return nil, err
	}
	if f.otherDomain() {
		return nil, nil
	}
	var zero T
	objs, _, err := s.store.List(ctx, model.KindOf(zero), "", "")
	var out []T
	for _, o := range objs {
		x := o.(T)
		if name, enabled := attrs(x); (f.Name == nil || *f.Name == name) && (f.Enabled == nil || *f.Enabled == enabled) {
			out = append(out, x)
		}
	}
	return out, err
}

// modify changes a project or user by API id, wording a missing object and
// a taken name as Keystone does.
func modify[T model.Object](ctx context.Context, s *Service, what, id string, name *string, change func(T)) (T, error) {
	var zero T
	o, err := s.store.Modify(ctx, model.KindOf(zero), storeID(id), 0, func(o model.Object) error {
		change(o.(T))
		return nil
	})
	if errors.Is(err, model.ErrNotFound) {
		return zero, notFound(what, id)
	}
	if err != nil {
		return zero, duplicate(err, what, deref(name))
	}
	return o.(T), nil
}

// remove deletes one object by API id (cascading to its assignments).
func (s *Service) remove(ctx context.Context, k *model.Kind, what, id string) error {
	err := s.store.Remove(ctx, k, storeID(id), 0)
	if errors.Is(err, model.ErrNotFound) {
		return notFound(what, id)
	}
	return err
}

// ListProjects lists the projects (admin only).
func (s *Service) ListProjects(ctx context.Context, c *Context, f Filter) ([]*Project, error) {
	return list(ctx, s, c, f, func(p *Project) (string, bool) { return p.Name, p.Enabled })
}

// GetProject reads a project: admins any, users the one they are scoped
// to (others are forbidden, whether they exist or not).
func (s *Service) GetProject(ctx context.Context, c *Context, id string) (*Project, error) {
	if !c.IsAdmin() && APIID(storeID(id)) != c.ProjectID {
		return nil, forbidden()
	}
	return get[*Project](ctx, s, "project", id)
}

// ProjectRequest is what a create or update of a project asks; nil fields
// are not given.
type ProjectRequest struct {
	Name        *string
	Description *string
	Enabled     *bool
	DomainID    *string
	ParentID    *string
	IsDomain    *bool
}

func (r *ProjectRequest) check() error {
	switch {
	case r.DomainID != nil && !IsDefaultDomain(*r.DomainID, ""):
		return invalid("Nagare's identity service has one domain, %s.", DefaultDomainID)
	case r.ParentID != nil && *r.ParentID != "" && !strings.EqualFold(*r.ParentID, DefaultDomainID):
		return invalid("Project hierarchies are not supported: parent_id must be the domain.")
	case r.IsDomain != nil && *r.IsDomain:
		return invalid("Projects acting as domains are not supported.")
	case r.Name != nil && (strings.TrimSpace(*r.Name) == "" || len(*r.Name) > 64):
		return invalid("Invalid input for field 'name': the name must be 1 to 64 characters.")
	}
	return nil
}

func (r *ProjectRequest) apply(p *Project) {
	set(&p.Name, r.Name)
	set(&p.Description, r.Description)
	set(&p.Enabled, r.Enabled)
}

// CreateProject creates a project in the Default domain (admin only).
func (s *Service) CreateProject(ctx context.Context, c *Context, r ProjectRequest) (*Project, error) {
	if err := admin(c); err != nil {
		return nil, err
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	if r.Name == nil {
		return nil, invalid("Invalid input for field 'name': 'name' is a required property.")
	}
	p := &Project{Enabled: true}
	r.apply(p)
	o, err := s.store.Create(ctx, p)
	if err != nil {
		return nil, duplicate(err, "project", *r.Name)
	}
	return o.(*Project), nil
}

// UpdateProject changes a project (admin only).
func (s *Service) UpdateProject(ctx context.Context, c *Context, id string, r ProjectRequest) (*Project, error) {
	if err := admin(c); err != nil {
		return nil, err
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return modify(ctx, s, "project", id, r.Name, r.apply)
}

// DeleteProject deletes a project and the role assignments on it (admin
// only).
func (s *Service) DeleteProject(ctx context.Context, c *Context, id string) error {
	if err := admin(c); err != nil {
		return err
	}
	return s.remove(ctx, ProjectKind, "project", id)
}

// ListUsers lists the users (admin only).
func (s *Service) ListUsers(ctx context.Context, c *Context, f Filter) ([]*User, error) {
	return list(ctx, s, c, f, func(u *User) (string, bool) { return u.Name, u.Enabled })
}

// self lets admins at any user and users at themselves.
func self(c *Context, userID string) error {
	if !c.IsAdmin() && APIID(storeID(userID)) != c.UserID {
		return forbidden()
	}
	return nil
}

// GetUser reads a user: admins any, users themselves.
func (s *Service) GetUser(ctx context.Context, c *Context, id string) (*User, error) {
	if err := self(c, id); err != nil {
		return nil, err
	}
	return get[*User](ctx, s, "user", id)
}

// UserRequest is what a create or update of a user asks; nil fields are
// not given.
type UserRequest struct {
	Name             *string
	Password         *string
	DefaultProjectID *string
	Enabled          *bool
	Email            *string
	Description      *string
	DomainID         *string
}

// prepare checks a user request and hashes its password (slow, so it is
// done before any transaction).
func (s *Service) prepare(r *UserRequest) (hash string, err error) {
	switch {
	case r.DomainID != nil && !IsDefaultDomain(*r.DomainID, ""):
		return "", invalid("Nagare's identity service has one domain, %s.", DefaultDomainID)
	case r.Name != nil && (strings.TrimSpace(*r.Name) == "" || len(*r.Name) > 255):
		return "", invalid("Invalid input for field 'name': the name must be 1 to 255 characters.")
	case r.DefaultProjectID != nil && *r.DefaultProjectID != "" && storeID(*r.DefaultProjectID) == "":
		return "", notFound("project", *r.DefaultProjectID)
	case r.Password == nil:
		return "", nil
	}
	if err := validPassword(*r.Password); err != nil {
		return "", invalid("Invalid input for field 'password': %s.", err.Error())
	}
	return hashPassword(*r.Password, s.cost)
}

func (r *UserRequest) apply(u *User, hash string) {
	set(&u.Name, r.Name)
	if hash != "" {
		u.PasswordHash = hash
	}
	if r.DefaultProjectID != nil {
		u.DefaultProjectID = storeID(*r.DefaultProjectID)
	}
	set(&u.Enabled, r.Enabled)
	set(&u.Email, r.Email)
	set(&u.Description, r.Description)
}

// CreateUser creates a user (admin only).
func (s *Service) CreateUser(ctx context.Context, c *Context, r UserRequest) (*User, error) {
	if err := admin(c); err != nil {
		return nil, err
	}
	hash, err := s.prepare(&r)
	if err != nil {
		return nil, err
	}
	if r.Name == nil {
		return nil, invalid("Invalid input for field 'name': 'name' is a required property.")
	}
	u := &User{Enabled: true}
	r.apply(u, hash)
	o, err := s.store.Create(ctx, u)
	if err != nil {
		return nil, duplicate(err, "user", *r.Name)
	}
	return o.(*User), nil
}

// UpdateUser changes a user, its password too (admin only).
func (s *Service) UpdateUser(ctx context.Context, c *Context, id string, r UserRequest) (*User, error) {
	if err := admin(c); err != nil {
		return nil, err
	}
	hash, err := s.prepare(&r)
	if err != nil {
		return nil, err
	}
	return modify(ctx, s, "user", id, r.Name, func(u *User) { r.apply(u, hash) })
}

// DeleteUser deletes a user and its role assignments (admin only).
func (s *Service) DeleteUser(ctx context.Context, c *Context, id string) error {
	if err := admin(c); err != nil {
		return err
	}
	return s.remove(ctx, UserKind, "user", id)
}

// ProjectsOf lists the projects a user holds a role on: admins any
// user's, users their own.
func (s *Service) ProjectsOf(ctx context.Context, c *Context, userID string) ([]*Project, error) {
	if err := self(c, userID); err != nil {
		return nil, err
	}
	as, _, err := s.store.List(ctx, AssignmentKind, "user_id", storeID(userID))
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []*Project
	for _, o := range as {
		pid := o.(*Assignment).ProjectID
		if seen[pid] {
			continue
		}
		seen[pid] = true
		p, err := s.store.Get(ctx, ProjectKind, pid)
		if errors.Is(err, model.ErrNotFound) {
			continue // deleted since the list: its assignments go with it
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p.(*Project))
	}
	return out, nil
}

// ListRoles lists the roles (any caller), by name when the filter names
// one.
func (s *Service) ListRoles(ctx context.Context, c *Context, f Filter) ([]*Role, error) {
	objs, _, err := s.store.List(ctx, RoleKind, "", "")
	var out []*Role
	for _, o := range objs {
		if x := o.(*Role); f.Name == nil || *f.Name == x.Name {
			out = append(out, x)
		}
	}
	return out, err
}

// GetRole reads a role (any caller).
func (s *Service) GetRole(ctx context.Context, c *Context, id string) (*Role, error) {
	return get[*Role](ctx, s, "role", id)
}

// RoleRequest is what a create of a role asks.
type RoleRequest struct {
	Name        *string
	Description string
}

// CreateRole creates a role (admin only); its id derives from its name.
func (s *Service) CreateRole(ctx context.Context, c *Context, r RoleRequest) (*Role, error) {
	if err := admin(c); err != nil {
		return nil, err
	}
	name := r.Name
	if name == nil || strings.TrimSpace(*name) == "" || len(*name) > 255 {
		return nil, invalid("Invalid input for field 'name': the name must be 1 to 255 characters.")
	}
	o, err := s.store.Create(ctx, &Role{Meta: model.Meta{ID: RoleID(*name)}, Name: *name, Description: r.Description})
	if err != nil {
		var ce *model.ConflictError
		if errors.As(err, &ce) {
			err = &model.FieldError{Field: "name", Msg: "already used"}
		}
		return nil, duplicate(err, "role", *name)
	}
	return o.(*Role), nil
}

// DeleteRole deletes a role and its assignments (admin only). The admin
// role stays: deleting it would take every administrator's rights at once.
func (s *Service) DeleteRole(ctx context.Context, c *Context, id string) error {
	if err := admin(c); err != nil {
		return err
	}
	if storeID(id) == RoleID(RoleAdmin) {
		return forbidden()
	}
	return s.remove(ctx, RoleKind, "role", id)
}

// grantIDs resolves the project, user and role of an assignment,
// answering not-found for the first that does not exist.
func (s *Service) grantIDs(ctx context.Context, c *Context, project, user, role string) (pid, uid, rid string, err error) {
	if err := admin(c); err != nil {
		return "", "", "", err
	}
	p, err := get[*Project](ctx, s, "project", project)
	if err != nil {
		return "", "", "", err
	}
	u, err := get[*User](ctx, s, "user", user)
	if err != nil {
		return "", "", "", err
	}
	r, err := get[*Role](ctx, s, "role", role)
	if err != nil {
		return "", "", "", err
	}
	pid, uid, rid = p.ID, u.ID, r.ID
	return pid, uid, rid, nil
}

// Grant gives a user a role on a project (admin only); granting twice is
// granting once.
func (s *Service) Grant(ctx context.Context, c *Context, project, user, role string) error {
	pid, uid, rid, err := s.grantIDs(ctx, c, project, user, role)
	if err != nil {
		return err
	}
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		id := assignmentID(uid, pid, rid)
		if _, err := tx.Get(AssignmentKind, id); err == nil {
			return nil
		} else if !errors.Is(err, model.ErrNotFound) {
			return err
		}
		_, err := tx.Create(&Assignment{Meta: model.Meta{ID: id}, UserID: uid, ProjectID: pid, RoleID: rid})
		return err
	})
	return err
}

// CheckGrant reports (nil) that a user holds a role on a project (admin
// only).
func (s *Service) CheckGrant(ctx context.Context, c *Context, project, user, role string) error {
	pid, uid, rid, err := s.grantIDs(ctx, c, project, user, role)
	if err != nil {
		return err
	}
	_, err = s.store.Get(ctx, AssignmentKind, assignmentID(uid, pid, rid))
	if errors.Is(err, model.ErrNotFound) {
		return notFound("role assignment", role)
	}
	return err
}

// RevokeGrant takes a role on a project from a user (admin only).
func (s *Service) RevokeGrant(ctx context.Context, c *Context, project, user, role string) error {
	pid, uid, rid, err := s.grantIDs(ctx, c, project, user, role)
	if err != nil {
		return err
	}
	err = s.store.Remove(ctx, AssignmentKind, assignmentID(uid, pid, rid), 0)
	if errors.Is(err, model.ErrNotFound) {
		return notFound("role assignment", role)
	}
	return err
}

// GrantedRoles are the roles a user holds on a project (admin only).
func (s *Service) GrantedRoles(ctx context.Context, c *Context, project, user string) ([]*Role, error) {
	if err := admin(c); err != nil {
		return nil, err
	}
	return s.rolesOf(ctx, storeID(user), storeID(project))
}

// AssignmentFilter narrows the role assignments listed ("" does not
// filter); Names asks for the names of the user, project and role.
type AssignmentFilter struct {
	UserID, ProjectID, RoleID string
	Names                     bool
}

// AssignmentInfo is one role assignment as listed, ids as stored.
type AssignmentInfo struct {
	UserID, ProjectID, RoleID       string
	UserName, ProjectName, RoleName string // with AssignmentFilter.Names
}

// Assignments lists role assignments (admin only), ordered by user.
func (s *Service) Assignments(ctx context.Context, c *Context, f AssignmentFilter) ([]AssignmentInfo, error) {
	if err := admin(c); err != nil {
		return nil, err
	}
	uid, pid, rid := storeID(f.UserID), storeID(f.ProjectID), storeID(f.RoleID)
	var objs []model.Object
	var err error
	switch {
	case f.UserID != "":
		objs, _, err = s.store.List(ctx, AssignmentKind, "user_id", uid)
	case f.ProjectID != "":
		objs, _, err = s.store.List(ctx, AssignmentKind, "project_id", pid)
	default:
		objs, _, err = s.store.List(ctx, AssignmentKind, "", "")
	}
	if err != nil {
		return nil, err
	}
	var out []AssignmentInfo
	for _, o := range objs {
		as := o.(*Assignment)
		if (f.UserID != "" && uid != as.UserID) || (f.ProjectID != "" && pid != as.ProjectID) || (f.RoleID != "" && rid != as.RoleID) {
			continue
		}
		info := AssignmentInfo{UserID: as.UserID, ProjectID: as.ProjectID, RoleID: as.RoleID}
		if f.Names {
			if info.UserName, err = s.nameOf(ctx, UserKind, as.UserID); err == nil {
				if info.ProjectName, err = s.nameOf(ctx, ProjectKind, as.ProjectID); err == nil {
					info.RoleName, err = s.nameOf(ctx, RoleKind, as.RoleID)
				}
			}
			if err != nil {
				return nil, err
			}
		}
		out = append(out, info)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].UserID < out[j].UserID })
	return out, nil
}

// nameOf is the name of a user, project or role ("" when it is gone).
func (s *Service) nameOf(ctx context.Context, k *model.Kind, id string) (string, error) {
	o, err := s.store.Get(ctx, k, id)
	if errors.Is(err, model.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	switch x := o.(type) {
	case *User:
		return x.Name, nil
	case *Project:
		return x.Name, nil
	case *Role:
		return x.Name, nil
	}
	return "", nil
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
