// Package identity is nagare-server's authentication: a Keystone v3 subset
// (password authentication, tokens, projects, users, roles, role
// assignments) kept in the NSDB, a validator for an external Keystone, and
// the middleware that puts the caller on each API request.
//
// Users, projects, roles and assignments are internal kinds of the store
// (model.RegisterInternal), so they get unique names and cascading deletes
// from the schema and live apart from the topology agents watch. Passwords
// are hashed with bcrypt. Tokens are signed rather than stored, so logging
// in writes nothing and any server replica validates any token; roles are
// read at validation (cached for 30 seconds), not frozen into the token.
//
// Policy lives with each API: the native API admits the admin role only;
// the Neutron API scopes every request to the caller's project (see
// Context.IsAdmin and Context.CanWrite).
package identity
