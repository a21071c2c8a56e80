// Package nsdb is Nagare's network state database: a typed store of the
// native topology (package model) over etcd's client.
//
// Every writer — the native API, the Neutron translation, agents registering
// their host — goes through this package, so that all of them obey the same
// referential integrity, uniqueness and on-delete rules. The rules come from
// the schema (model.Field's Ref, OnDelete, Unique, Scope, Derived); the
// cross-object write rules come from model.PrepareCreate/PrepareUpdate; this
// package supplies the transaction they run in.
//
// # Key layout
//
// All keys live under /nagare/v1/ ("v1" is the key layout, not the API):
//
//	/nagare/v1/schema-version                         "1"; see Store.Init
//	/nagare/v1/obj/<kind>/<id>                        the object as JSON
//	/nagare/v1/svc/<kind>/<id>                        the same, for internal kinds (model.Kind.Internal)
//	/nagare/v1/ref/<targetID>/<srcKind>/<srcID>/<field>  ""
//	/nagare/v1/uniq/<kind>/<field>/<scope>/<value>    id of the owner
//	/nagare/v1/state/host/<hostID>/alive              "" under the agent's lease
//	/nagare/v1/state/datapath/<hostID>                agent's datapath status (JSON), same lease
//	/nagare/v1/state/natblock/<hostID>/<device>/<ip>/<block>  hostID: a NAT port block it leased, same lease
//	/nagare/v1/state/nat/translations/<hostID>        its NAT bindings (JSON), same lease
//	/nagare/v1/state/pool-member/<hostID>/<memberID>  up|down|no_monitor, from that host's health monitor, same lease
//	/nagare/v1/state/mac/<hostID>/<bridge>/<vlan>/<mac>   port: a MAC that host learned, same lease
//	/nagare/v1/state/neighbor/<hostID>/<router>/<ip>  "MAC ms": a neighbor that host's router port resolved, same lease
//	/nagare/v1/state/route/<hostID>/<portID>/<prefix>  a route a BGP peer announced (JSON), that gateway's lease
//	/nagare/v1/state/bgp-peer/<hostID>/<peerID>       that host's BGP session's state (JSON), same lease
//
// obj: <kind> is the model's singular name ("tunnel-zone"), <id> a lower-case
// UUID. svc holds the kinds outside the virtual topology (Neutron's objects,
// identity's users and projects) so that agents, which watch obj/, neither
// receive them nor need read access to them. The JSON holds neither Meta.Revision (filled on read from the key's
// ModRevision, so it is the etcd revision of the last write) nor derived
// fields (computed by the reader, e.g. a host's liveness).
//
// ref: the reverse reference index. One key per (referrer, field, target),
// written in the same transaction as the referrer, so a delete finds every
// referrer with one range read instead of scanning all kinds. <field> is the
// referrer's JSON field name; its schema says the target kind, so two objects
// of different kinds sharing a UUID (a Neutron network and its bridge) do not
// confuse each other.
//
// uniq: one key per unique field value. <scope> is the text of the scoping
// field (the host of a binding's interface name) or empty; <scope> and
// <value> are URL-path-escaped because values such as prefixes contain '/'.
// Zero values are not keyed: two unbound ports both have no interface name.
//
// state: runtime state written by agents. An agent's host is alive while its
// lease keeps the alive key. Every key a host writes has the host's id in
// its prefix, so that etcd's RBAC can let each agent write its own state
// and nothing else (see access.go).
//
// # Transactions
//
// Store.Update runs a function against a Tx: a small optimistic software
// transactional memory. All reads are served from one snapshot revision
// (pinned by the first read), recorded, and turned into compares of the
// single etcd transaction that commits the buffered writes: a key read must
// still have the ModRevision seen (or still be absent), and a prefix range
// read must have no key modified or created after the snapshot. When another
// writer got in first the function runs again from scratch, a bounded number
// of times. Because reads come from one snapshot, a rule never sees half of
// someone else's transaction and never refuses a write for a state that did
// not exist. A prefix compare cannot see a key deleted from the range; for
// ranges of up to 64 keys each key is compared too, larger ones (full-kind
// lists inside a transaction) are guarded against additions and changes
// only.
//
// References are checked when the transaction commits, against its final
// state, so a transaction may write a chain listing a rule before the rule.
// A first attempt asserts what it expects (referenced objects exist, unique
// values are free) in the commit's compares rather than reading it; only a
// failed assertion costs a second, reading attempt that names the problem.
//
// # Watch
//
// Store.Watch lists the objects at a revision R and then watches from R+1,
// delivering a full snapshot first and then batches of changes, each etcd
// transaction within one batch. When etcd has compacted the history a
// resumed watch needs, it lists again and delivers a new snapshot.
package nsdb
