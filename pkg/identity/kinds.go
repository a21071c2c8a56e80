package identity

import (
	"strings"

	"github.com/google/uuid"

	"github.com/nagare/nagare/pkg/model"
)

// The identity objects live in the NSDB as internal kinds (model.Kind.Internal):
// the store's schema rules give unique names and cascade a user's role
// assignments away with the user, and agents never see them.

// Project is a Keystone project (tenant). Every project is in the one
// domain, Default.
type Project struct {
	model.Meta
	Name        string `json:"name" nagare:"required,unique"`
	Description string `json:"description,omitempty"`
	Enabled     bool   `json:"enabled"`
}

// User is a Keystone user. PasswordHash never leaves the package.
type User struct {
	model.Meta
	Name             string `json:"name" nagare:"required,unique"`
	PasswordHash     string `json:"password_hash,omitempty"`
	DefaultProjectID string `json:"default_project_id,omitempty" nagare:"ref=identity-project,ondelete=nullify"`
	Enabled          bool   `json:"enabled"`
	Email            string `json:"email,omitempty"`
	Description      string `json:"description,omitempty"`
}

// Role is a named role; admin, member and reader exist from the start.
type Role struct {
	model.Meta
	Name        string `json:"name" nagare:"required,unique"`
	Description string `json:"description,omitempty"`
}

// Assignment grants a user a role on a project. Its id derives from the
// triple, so granting twice is the same object.
type Assignment struct {
	model.Meta
	UserID    string `json:"user_id" nagare:"ref=identity-user,ondelete=cascade,required"`
	ProjectID string `json:"project_id" nagare:"ref=identity-project,ondelete=cascade,required,parent"`
	RoleID    string `json:"role_id" nagare:"ref=identity-role,ondelete=cascade,required"`
}

// Revocation records a revoked token (by its audit id) until it would have
// expired anyway.
type Revocation struct {
	model.Meta
	ExpiresAt int64 `json:"expires_at"`
}

// Secret holds the keys tokens are signed with, shared by every server
// replica through the NSDB (see keys.go).
type Secret struct {
	model.Meta
	Key  []byte       `json:"key,omitempty"` // the one key before keys rotated
	Keys []SigningKey `json:"keys,omitempty"`
}

var (
	ProjectKind    = model.RegisterInternal("identity-project", "identity-projects", "A Keystone project.", &Project{}, nil)
	UserKind       = model.RegisterInternal("identity-user", "identity-users", "A Keystone user.", &User{}, nil)
	RoleKind       = model.RegisterInternal("identity-role", "identity-roles", "A Keystone role.", &Role{}, nil)
	AssignmentKind = model.RegisterInternal("identity-assignment", "identity-assignments", "A role of a user on a project.", &Assignment{}, nil)
	RevocationKind = model.RegisterInternal("identity-revocation", "identity-revocations", "A revoked token.", &Revocation{}, nil)
	SecretKind     = model.RegisterInternal("identity-secret", "identity-secrets", "The token signing keys.", &Secret{}, nil)
)

// namespace derives the ids of objects whose identity is a name or a tuple
// (roles, assignments, revocations), so that creating one twice is creating
// the same object and concurrent creators collide in etcd.
var namespace = uuid.MustParse("6f0f5b1e-3c52-4b0e-9d7c-4e61a7e0c0de")

// DerivedID is the id of the object named by parts.
func DerivedID(parts ...string) string {
	return uuid.NewSHA1(namespace, []byte(strings.Join(parts, "\x00"))).String()
}

// The well-known objects: the signing key and the roles Keystone's
// bootstrap creates.
var (
	secretID = DerivedID("secret", "token-signing-key")
)

// Role names with a meaning to policy.
const (
	RoleAdmin  = "admin"
	RoleMember = "member"
	RoleReader = "reader"
)

// RoleID is a role's id, derived from its name.
func RoleID(name string) string { return DerivedID("role", name) }

func assignmentID(user, project, role string) string {
	return DerivedID("assignment", user, project, role)
}

// APIID is the form Keystone prints ids in: 32 hex digits, no dashes.
func APIID(id string) string { return strings.ReplaceAll(id, "-", "") }

// storeID turns an API id (with or without dashes, any case) back into the
// store's canonical UUID; "" when it is not one.
func storeID(s string) string {
	s = strings.ToLower(s)
	if model.IsUUID(s) {
		return s
	}
	if len(s) != 32 {
		return ""
	}
	c := s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
	if !model.IsUUID(c) {
		return ""
	}
	return c
}
