// Package neutron implements OpenStack Networking (Neutron v2.0) over
// Nagare's NSDB: the resources, Neutron's validation and policy, IP address
// management, and the translation of Neutron objects to the native
// topology (package model), as MidoNet's C3PO did.
//
// Every write is one nsdb Store.Update: it writes the Neutron objects (as
// internal kinds of the store, so references, uniqueness and on-delete
// rules come from the same schema) and reconciles their native
// translation in the same etcd transaction. The two therefore never
// disagree, and a request Neutron would refuse writes nothing.
//
// Translation is pure (translate.go): functions from Neutron objects to
// native objects whose ids derive from the Neutron ids (DerivedID), so
// translating again names the same objects. reconcile.go applies a
// translation: it removes what the previous one wrote and the new one does
// not, creates new objects under the model's write rules, and rewrites
// only objects whose translated form changed (the previous forms' hashes
// are kept in a Translation object beside the Neutron object).
//
//	network      bridge (same id); flat/VLAN on a physical network: + uplink bridge port
//	             (physical_network, physical_vlan), which an agent mapping it binds
//	subnet       DHCP subnet (same id) on the network's bridge; IPv4 only
//	port         bridge port (same id), bound to tap<id[:11]> on binding:host_id's host;
//	             DHCP host per IPv4 subnet; with port security: in/out/egress chains
//	             (anti-spoofing by MAC and source, ARP and neighbor advertisements
//	             only for the port's own MAC and addresses, jumps to the groups'
//	             chains, drop)
//	             and its addresses in its groups' address groups
//	router port  (interface, gateway) + router port peer-linked to it, route to its subnet;
//	             gateway: + default route through the external subnet's gateway
//	router       router (same id) with pre-routing (DNAT of floating IPs and port
//	             forwardings, reverse SNAT) and post-routing (their SNAT, gateway SNAT)
//	             chains, static routes through the connected router port
//	floating IP  static NAT rules in its router's chains (its own port has no native form)
//	sec. group   ingress and egress chains of accept rules, and an address group
//	BGP speaker  on the provider routers linked into its gateway networks: their asn,
//	             a bgp-peer per peer on the uplink holding its address, a bgp-network
//	             and a route through the tenant router's gateway per advertised route
//	             (bgp_drive.go; re-translated when a router's translation changes)
//
// This package is the domain and imports no net/http (internal/archtest
// enforces it): it takes typed requests of decoded values (NetworkRequest,
// PortRequest, …; a nil field is an attribute the request does not name),
// applies object policy (who may see and change what, from the caller's
// identity.Context), checks what the values mean, and returns objects and
// *Error values of a Class. Everything HTTP is package api/neutron: routes,
// attribute maps and attribute-level policy, decoding bodies into the
// requests, views, and the fault map from classes to statuses.
//
// A new resource is two files following the others. Here, <resource>.go:
// its stored kind (in kinds.go, registered with model.RegisterInternal),
// its Translate function (translate.go) when it has a native form, a
// <Resource>Request with an apply method, and Prepare/Create/Update/Delete
// methods built from policy.go's steps (creating for a create's policy and
// project, then a Creation that create.go admits and writes, alone or in
// a bulk; modify for an update or delete of an existing object under its
// policy) and apply (reconcile.go: its translation, in the same
// transaction).
// In api/neutron, <resource>.go: the attribute map, decode<Resource> and
// view<Resource>, and one row of its resources table.
package neutron
