// Package cli is Nagare's operator command line, in the grammar of
// midonet-cli: an object path, a verb and field/value pairs ("bridge
// bridge0 add port", "router router0 port port0 set peer bridge0:port1").
//
// Everything is driven by one table (table.go) with a row per object type.
// A row gives only presentation — the type word, the alias prefix, the
// child collections, computed columns — and points at a model kind, whose
// schema supplies the field words, value types, enums, references and
// owners. Parsing, completion, alias resolution and output are generic over
// the table, so adding a type is adding a row.
//
// Aliases (router0, bridge0:port1) are not stored anywhere: an alias is the
// object's index among its siblings in the order the API lists them
// (creation order). They are therefore the same in every invocation, which
// lets scripts use them, and deleting an object renumbers its later
// siblings.
//
// The package talks to nagare-server's REST API (/api/v1) only; it has no
// access to the store.
package cli
