// Package neutron serves the OpenStack Networking API v2.0 at /v2.0 over
// package neutron's service: version discovery, the resources with
// Neutron's conventions (filters on any attribute, fields, sorting,
// marker/limit pagination with links, tags, revision_number with If-Match,
// the NeutronError body) and the extensions list.
//
// This package is everything HTTP about Neutron, and only that: routing,
// request bodies (attribute maps, attribute-level policy, converting JSON
// into the domain's typed requests), views (objects as Neutron's JSON),
// and statuses (the fault map from the domain's error classes). The
// domain package holds the resources, what values mean, object policy,
// IPAM and the translation to the native topology, and imports no
// net/http (internal/archtest enforces it).
//
// A resource is two files. In package neutron, <resource>.go: the stored
// kind (kinds.go), a <Resource>Request of decoded values, and the
// Create/Update/Delete methods with their checks. Here, <resource>.go:
// the attribute map, decode<Resource> (Body → <Resource>Request) and
// view<Resource> (object → map), and one row in resources() that wires
// them to the service's methods. Sub-resources and actions (port
// forwardings, router interfaces, tags, quotas) add their own routes in
// Register.
package neutron
