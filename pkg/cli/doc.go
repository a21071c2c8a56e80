// Package cli is Nagare's operator command line, in the grammar of
// midonet-cli: an object path, a verb and field/value pairs ("bridge
// bridge0 add port", "router router0 port port0 set peer bridge0:port1").
//
// Everything is driven by one table (table.go) with a row per object type.
// A row gives only presentation — the type word, the alias prefix, the
// child collections, computed columns — and points at a model kind, whose
// schema supplies the field words, value types, enums, references and
// owners. Parsing, completion, alias resolution and output are generic over
// the table, so adding a type is adding a row. A row may also name views:
// state the API serves below an object that is not an object itself, such
// as a host's datapath ("host host0 show datapath", "host host0 list
// flow"), printed by the view's own renderer.
//
// trace (trace.go) asks the server's simulation what it would do with a
// described packet, as ovn-trace does, and prints each step in the
// operator's words. Its words are fields of a row outside the table, so
// they parse, complete and check their values like object fields. Ids in
// the server's free text (trace steps, flow dumps) are replaced by aliases.
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
