// Package identity is nagare-server's authentication domain: a Keystone v3
// subset (password authentication, tokens, projects, users, roles, role
// assignments) kept in the NSDB, the caller's Context that every API's
// policy reads, and the Validator interface the authentication middleware
// checks tokens with.
//
// Users, projects, roles and assignments are internal kinds of the store
// (model.RegisterInternal), so they get unique names and cascading deletes
// from the schema and live apart from the topology agents watch. Passwords
// are hashed with bcrypt. Tokens are signed rather than stored, so logging
// in writes nothing and any server replica validates any token; roles are
// read at validation (cached for 30 seconds), not frozen into the token.
//
// Like package neutron, this package is the domain and imports no net/http
// (internal/archtest enforces it): its Service takes typed requests
// (ProjectRequest, UserRequest, …), applies Keystone's default policy
// (administration needs the admin role; a user may read itself and its
// project) and returns *Error values of a Class. Package api/identity is
// the HTTP side: the /identity routes, Keystone's JSON, statuses, the
// authentication middleware every API sits behind, and the validator of an
// external Keystone (an HTTP client of Keystone's token API).
//
// Policy on other resources lives with their APIs: the native API admits
// the admin role only; the Neutron domain scopes every request to the
// caller's project (see Context.IsAdmin and Context.CanWrite).
package identity
