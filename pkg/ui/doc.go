// Package ui is nagare-server's dashboard at /ui/: a web page an operator
// keeps open that draws the virtual network (bridges, routers, ports,
// links, uplinks and the hosts they are bound to) as SVG, live; graphs each
// host's datapath over the last minutes; traces a packet through the
// picture with the simulation's own explanations; and edits the common
// things through the Neutron API.
//
// The page is static (web/, plain ES modules and SVG, no build step, no
// CDN: everything is embedded in the binary and the Content-Security-Policy
// forbids fetching from anywhere else). It talks to the same APIs as the
// CLI — /api/v1 (trace, datapath), /v2.0 (the forms), /identity/v3 (login)
// — and to a few endpoints of its own under /ui/api/ that no other client
// needs: the live topology as Server-Sent Events fed from the NSDB's watch
// (hub.go), object details with their rules, and a host's datapath history
// (history.go), sampled from the status every agent publishes into the NSDB
// — the values of its Prometheus counters, on change, every 30 s and when
// the host's page asks — into ring buffers.
//
// # Who sees what
//
// The endpoints sit behind the same authentication as the APIs (a Keystone
// token in the X-Auth-Token header; never a cookie, so a page elsewhere
// cannot make the browser send it: no CSRF). Administrators see everything.
// A project member sees the native objects that translate the Neutron
// objects Neutron itself shows them (neutron.Service.NativeScope: their
// networks, subnets, ports, routers, security groups and floating IPs, and
// the shared and external networks), plus the ports of their routers and
// those ports' peers (a gateway port belongs to no project; the member's
// router is theirs). Hosts, bindings, datapaths and traces are
// infrastructure and admin-only, as Neutron's policy hides binding:host_id:
// a member's ports arrive without host or interface. The event stream is
// filtered per subscriber by the same rule, so a member never receives an
// event about another project's object, not even its id.
package ui
