package dhcp

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// Subnet is the responder's view of one DHCP subnet of a bridge: addresses
// as integers, the pool range, the fixed hosts by MAC, and the options every
// reply from it carries, encoded once so that the per-packet path only
// copies them. A Subnet is immutable: rebuild it when the NSDB changes and
// give the new set to [Server.SetSubnets].
type Subnet struct {
	id       string
	prefix   netip.Prefix
	mask     uint32
	bcast    uint32
	gateway  uint32 // 0 when the subnet has none
	server   uint32 // server identifier, source of replies
	disabled bool

	// The pool is [first, first+size): every usable address, reserved ones
	// included, so that the probe order depends only on the prefix and the
	// MAC. Empty for /31 and /32.
	first, size uint32
	// reserved holds the addresses inside the pool range that are never
	// leased: gateway, server address and fixed host addresses.
	reserved map[uint32]struct{}
	hosts    map[packet.MAC]fixedHost

	// opts: options 1, 3, 6, 26, 28 and 121, in that order.
	opts []byte
}

type fixedHost struct {
	addr uint32
	name string
	// opts is the host's option set when it has extra options: the
	// subnet's without the codes it sets, then its own (nil: the subnet's).
	opts []byte
}

// fixedOptLen is what every OFFER or ACK adds to a subnet's own options:
// message type (3), server identifier (6), lease, renewal and rebinding
// times (3×6) and END (1).
const fixedOptLen = 3 + 6 + 18 + 1

// NewSubnet builds the responder's view of d and its fixed hosts.
// overlayMTU is the MTU the agent computed for VM interfaces (underlay MTU
// minus encapsulation); it is handed out when d sets no MTU, and 0 leaves
// the option out.
//
// It refuses configurations a client could not use: no server identifier,
// addresses of the wrong family or outside the subnet, duplicate hosts, and
// options that would not fit the 576-byte datagram every client accepts.
func NewSubnet(d model.DHCPSubnet, hosts []model.DHCPHost, overlayMTU uint16) (*Subnet, error) {
	if !d.Subnet.IsValid() || !d.Subnet.Addr().Unmap().Is4() {
		return nil, fmt.Errorf("DHCP subnet %s: only IPv4 subnets are served", d.Subnet)
	}
	p := netip.PrefixFrom(d.Subnet.Addr().Unmap(), d.Subnet.Bits()).Masked()
	s := &Subnet{
		id:       d.ID,
		prefix:   p,
		disabled: d.Disabled,
		reserved: make(map[uint32]struct{}),
		hosts:    make(map[packet.MAC]fixedHost, len(hosts)),
	}
	bits := p.Bits()
	s.mask = ^uint32(0) << (32 - bits)
	if bits == 0 {
		s.mask = 0
	}
	network := u32(p.Addr())
	s.bcast = network | ^s.mask
	if bits <= 30 {
		s.first, s.size = network+1, s.bcast-network-1
	}
	errf := func(format string, args ...any) error {
		return fmt.Errorf("DHCP subnet %s: "+format, append([]any{p}, args...)...)
	}

	if d.Gateway.IsValid() {
		gw := d.Gateway.Unmap()
		if !gw.Is4() || !p.Contains(gw) {
			return nil, errf("gateway %s is not an address of the subnet", d.Gateway)
		}
		s.gateway = u32(gw)
		s.reserve(s.gateway)
	}
	srv := d.ServerAddress.Unmap()
	if !srv.IsValid() {
		srv = d.Gateway.Unmap()
	}
	if !srv.IsValid() {
		return nil, errf("no server identifier: set server_address (or a gateway) so that replies name their server")
	}
	if !srv.Is4() || srv.IsUnspecified() {
		return nil, errf("server address %s is not a usable IPv4 address", srv)
	}
	s.server = u32(srv)
	s.reserve(s.server)

	longestName := 0
	addrs := make(map[uint32]packet.MAC, len(hosts))
	for _, h := range hosts {
		if h.DHCPSubnetID != "" && d.ID != "" && h.DHCPSubnetID != d.ID {
			return nil, errf("host %s belongs to DHCP subnet %s, not %s", h.MAC, h.DHCPSubnetID, d.ID)
		}
		a := h.Address.Unmap()
		if !a.Is4() || !p.Contains(a) {
			return nil, errf("host %s: address %s is outside the subnet", h.MAC, h.Address)
		}
		v := u32(a)
		if bits <= 30 && (v == network || v == s.bcast) {
			return nil, errf("host %s: %s is the network or broadcast address", h.MAC, a)
		}
		if v == s.gateway || v == s.server {
			return nil, errf("host %s: %s is the gateway or server address", h.MAC, a)
		}
		if h.MAC.IsZero() || h.MAC[0]&1 != 0 {
			return nil, errf("host %s: not a unicast MAC", h.MAC)
		}
		if _, dup := s.hosts[h.MAC]; dup {
			return nil, errf("host %s is listed twice", h.MAC)
		}
		if other, dup := addrs[v]; dup {
			return nil, errf("hosts %s and %s share address %s", other, h.MAC, a)
		}
		if len(h.Name) > 255 {
			return nil, errf("host %s: name longer than 255 bytes", h.MAC)
		}
		addrs[v] = h.MAC
		for _, o := range h.Options {
			if _, err := o.Encode(); err != nil {
				return nil, errf("host %s: %v", h.MAC, err)
			}
		}
		s.hosts[h.MAC] = fixedHost{addr: v, name: h.Name}
		s.reserve(v)
		longestName = max(longestName, len(h.Name))
	}

	var dns []byte
	for _, a := range d.DNSServers {
		a = a.Unmap()
		if !a.Is4() {
			return nil, errf("DNS server %s is not IPv4", a)
		}
		dns = binary.BigEndian.AppendUint32(dns, u32(a))
	}
	mtu := d.MTU
	if mtu == 0 {
		mtu = overlayMTU
	}
	if mtu != 0 && mtu < 68 {
		return nil, errf("MTU %d is below the IPv4 minimum of 68", mtu)
	}
	var routes []byte
	if len(d.Opt121Routes) > 0 {
		var err error
		if routes, err = classlessRoutes(d.Opt121Routes, d.Gateway.Unmap()); err != nil {
			return nil, errf("%v", err)
		}
	}

	w := optWriter{}
	w.u32(optSubnetMask, s.mask)
	if s.gateway != 0 {
		w.u32(optRouter, s.gateway)
	}
	if len(dns) > 0 {
		if len(dns) > 255 {
			return nil, errf("too many DNS servers (%d)", len(d.DNSServers))
		}
		w.bytes(optDNS, dns)
	}
	if mtu != 0 {
		w.bytes(optMTU, []byte{byte(mtu >> 8), byte(mtu)})
	}
	if bits <= 30 {
		w.u32(optBroadcast, s.bcast)
	}
	if routes != nil {
		w.bytes(optClassless, routes)
	}
	s.opts = w.b

	need := fixedOptLen + len(s.opts)
	if longestName > 0 {
		need += 2 + longestName
	}
	if need > maxOptLen {
		return nil, errf("replies need %d bytes of options, more than the %d that fit the 576-byte datagram every client accepts: drop DNS servers or routes, or shorten host names", need, maxOptLen)
	}
	for _, h := range hosts {
		if len(h.Options) == 0 {
			continue
		}
		fh := s.hosts[h.MAC]
		fh.opts = hostOptions(s.opts, h.Options)
		if n := fixedOptLen + len(fh.opts) + 2 + len(fh.name); n > maxOptLen {
			return nil, errf("host %s: replies need %d bytes of options, more than the %d that fit the 576-byte datagram every client accepts: drop extra options", h.MAC, n, maxOptLen)
		}
		s.hosts[h.MAC] = fh
	}
	return s, nil
}

// hostOptions is a host's option set: the subnet's options (encoded TLVs)
// whose codes the host does not set, then the host's (checked encodable).
func hostOptions(subnet []byte, extra []model.DHCPOption) []byte {
	set := map[uint8]bool{}
	for _, o := range extra {
		set[o.Code] = true
	}
	var out []byte
	for i := 0; i+1 < len(subnet); i += 2 + int(subnet[i+1]) {
		if !set[subnet[i]] {
			out = append(out, subnet[i:i+2+int(subnet[i+1])]...)
		}
	}
	w := optWriter{b: out}
	for _, o := range extra {
		v, _ := o.Encode()
		w.bytes(o.Code, v)
	}
	return w.b
}

// ID is the model.DHCPSubnet the subnet was built from.
func (s *Subnet) ID() string { return s.id }

// Prefix is the subnet's address range.
func (s *Subnet) Prefix() netip.Prefix { return s.prefix }

func (s *Subnet) reserve(a uint32) {
	if s.inPool(a) {
		s.reserved[a] = struct{}{}
	}
}

func (s *Subnet) contains(a uint32) bool { return a&s.mask == s.bcast&s.mask }

func (s *Subnet) inPool(a uint32) bool { return a-s.first < s.size }

// leasable reports whether a is an address the pool may hand out.
func (s *Subnet) leasable(a uint32) bool {
	if !s.inPool(a) {
		return false
	}
	_, r := s.reserved[a]
	return !r
}

// classlessRoutes encodes option 121 (RFC 3442): per route the prefix
// length, the significant octets of the destination, then the router. When
// the subnet has a gateway it is appended as the route to 0.0.0.0/0 unless
// a default route is already listed: a client that honours option 121 must
// ignore option 3 (RFC 3442, "DHCP Client Behavior"), so without it the
// client would lose its default route.
func classlessRoutes(routes []model.Opt121Route, gateway netip.Addr) ([]byte, error) {
	var b []byte
	hasDefault := false
	for _, r := range routes {
		dst, gw := r.Destination.Masked(), r.Gateway.Unmap()
		if !dst.IsValid() || !dst.Addr().Unmap().Is4() || !gw.Is4() {
			return nil, fmt.Errorf("classless route %s is not IPv4", r)
		}
		hasDefault = hasDefault || dst.Bits() == 0
		b = appendRoute(b, dst, gw)
	}
	if !hasDefault && gateway.IsValid() {
		b = appendRoute(b, netip.PrefixFrom(netip.IPv4Unspecified(), 0), gateway)
	}
	if len(b) > 255 {
		return nil, fmt.Errorf("classless routes need %d bytes, more than one option holds (255)", len(b))
	}
	return b, nil
}

func appendRoute(b []byte, dst netip.Prefix, gw netip.Addr) []byte {
	bits := dst.Bits()
	a := dst.Addr().Unmap().As4()
	b = append(b, byte(bits))
	b = append(b, a[:(bits+7)/8]...)
	g := gw.As4()
	return append(b, g[:]...)
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addr4(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
