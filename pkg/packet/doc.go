// Package packet parses and builds the frames on the agent's per-packet path.
//
// It exists so the datapath can classify a frame, derive its flow key, answer
// it (ARP, ND, ICMP, TCP reset, the UDP/IPv4 framing of a DHCP reply) and
// rewrite it (NAT, TTL, MAC) without allocating: a fast path that allocates
// per packet spends its time in the garbage collector instead of forwarding.
//
// Parsing follows Tailscale's net/packet: one flat [Parsed] struct is filled
// in place by [Parsed.Decode]. There are no layer objects, no interfaces and
// no error values on the per-packet path. Each field documents when it is
// valid. A malformed frame is not an error: Decode sets [Parsed.Drop] to a
// reason the caller counts (its String is a metrics label) before dropping
// the frame. Decode never panics, whatever the input; fuzz_test.go holds it
// to that.
//
// Builders write into a buffer the caller owns and return the length used.
// Rewrites change the frame given to Decode in place and fix checksums
// incrementally (RFC 1624), so a NAT rewrite costs a few additions rather
// than a pass over the payload.
//
// Tunnels: a VXLAN or GRE (transparent Ethernet bridging) frame decodes to its
// outer headers plus the VNI or key and the offset of the inner Ethernet
// frame; the caller decodes [Parsed.Inner] with a second Parsed.
package packet
