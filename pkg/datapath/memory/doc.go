// Package memory is a datapath that lives entirely in the process: the
// interfaces it binds are in-memory endpoints, its underlay is an
// in-memory network, and no packet touches the kernel.
//
// It is wireguard-go's tuntest/bindtest idea applied to Nagare's datapath
// boundary: not a mock that scripts expectations, but a working datapath
// that forwards frames. A Host is a simulated hypervisor's namespace: a
// test makes interfaces on it (AddInterface, as `ip link add` would),
// sends frames into them as a VM would (Interface.Send) and reads what the
// datapath sends out (Interface.Recv); deleting and re-creating an
// interface is a VM's tap going away and coming back. A Hub is the
// underlay between hosts, keyed by underlay address: datapaths of several
// hosts on one hub exchange real VXLAN and GRE datagrams (headers with
// the egress port's tunnel key, flow-state packets with the reserved one).
//
// The flow table has the semantics every datapath must have (package
// dptest checks them): exact match, tags, idle expiry by class, eviction
// at the cap, the flow MTU, TCP FIN/RST of stateful flows to the slow
// path, flow-state packets through SendState and a StateHandler. Each
// bound port has its own reader goroutine calling the MissHandler, as the
// userspace datapath's do. The hit path allocates nothing
// (TestHitPathAllocs).
//
// It is what unit tests of the agent run on without root, and what one
// process running many simulated hypervisors uses.
package memory
