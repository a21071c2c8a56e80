package neutron

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/netip"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
)

// IP address management: a subnet's pools, and the addresses in use as
// neutron-ip-allocation objects whose address is unique within the subnet.

// lastAddr is the last address of a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// usableRange is the range Neutron allocates from: the first address
// after the network address, through the last before the IPv4 broadcast
// (IPv6 has no broadcast).
func usableRange(p netip.Prefix) (netip.Addr, netip.Addr) {
	first := p.Masked().Addr().Next()
	last := lastAddr(p)
	if p.Addr().Is4() {
		last = last.Prev()
	}
	return first, last
}

// defaultPools are Neutron's generate_pools: the usable range without the
// gateway.
func defaultPools(p netip.Prefix, gw netip.Addr) []Pool {
	first, last := usableRange(p)
	if !first.IsValid() || !last.IsValid() || last.Less(first) {
		return nil
	}
	if !gw.IsValid() || gw.Less(first) || last.Less(gw) {
		return []Pool{{first, last}}
	}
	var out []Pool
	if first.Less(gw) {
		out = append(out, Pool{first, gw.Prev()})
	}
	if gw.Less(last) {
		out = append(out, Pool{gw.Next(), last})
	}
	return out
}

func (p Pool) contains(a netip.Addr) bool { return !a.Less(p.Start) && !p.End.Less(a) }

func (p Pool) String() string {
	return fmt.Sprintf("IPRange('%s', '%s')", p.Start, p.End)
}

// size is the number of addresses of a pool, as a big integer (IPv6 pools
// are huge).
func (p Pool) size() *big.Int {
	s := new(big.Int).SetBytes(p.Start.AsSlice())
	e := new(big.Int).SetBytes(p.End.AsSlice())
	return e.Sub(e, s).Add(e, big.NewInt(1))
}

func addrAt(p Pool, off *big.Int) netip.Addr {
	n := new(big.Int).SetBytes(p.Start.AsSlice())
	n.Add(n, off)
	b := n.FillBytes(make([]byte, p.Start.BitLen()/8))
	a, _ := netip.AddrFromSlice(b)
	return a
}

// validatePools is Neutron's validate_allocation_pools and
// validate_gw_out_of_pools.
func validatePools(pools []Pool, cidr netip.Prefix, gw netip.Addr) error {
	first, last := usableRange(cidr)
	for _, p := range pools {
		if p.Start.Is4() != cidr.Addr().Is4() || p.End.Is4() != cidr.Addr().Is4() || p.End.Less(p.Start) {
			return newErr(400, "InvalidAllocationPool", "The allocation pool %s is not valid.", p)
		}
		if p.Start.Less(first) || last.Less(p.End) {
			return newErr(400, "OutOfBoundsAllocationPool", "The allocation pool %s spans beyond the subnet cidr %s.", p, cidr)
		}
	}
	for i := range pools {
		for j := i + 1; j < len(pools); j++ {
			a, b := pools[i], pools[j]
			if !a.End.Less(b.Start) && !b.End.Less(a.Start) {
				return conflict("OverlappingAllocationPools", "Found overlapping allocation pools: %s %s for subnet %s.", a, b, cidr)
			}
		}
	}
	if gw.IsValid() {
		for _, p := range pools {
			if p.contains(gw) {
				return inUse("GatewayConflictWithAllocationPools", "Gateway ip %s conflicts with allocation pool %s.", gw, p)
			}
		}
	}
	return nil
}

// parsePools reads allocation_pools.
func parsePools(b Body, name string) ([]Pool, bool, error) {
	var raw []map[string]json.RawMessage
	ok, err := b.raw(name, &raw, "Invalid data format for IP pool")
	if err != nil || !ok {
		return nil, ok, err
	}
	out := []Pool{}
	for _, m := range raw {
		pb := Body(m)
		s, _, err1 := pb.ip("start")
		e, _, err2 := pb.ip("end")
		if err1 != nil || err2 != nil || !s.IsValid() || !e.IsValid() || len(m) != 2 {
			return nil, true, invalid(name, "Invalid data format for IP pool: '%s'", mustJSON(m))
		}
		out = append(out, Pool{s, e})
	}
	return out, true, nil
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// validIPForSubnet is Neutron's check_subnet_ip: inside the prefix, not
// the network address, not the IPv4 broadcast.
func validIPForSubnet(s *Subnet, a netip.Addr, routerPort bool) bool {
	if !s.CIDR.Contains(a) {
		return false
	}
	if a == s.CIDR.Masked().Addr() && !(s.IPVersion == 6 && routerPort) {
		return false
	}
	return !(a.Is4() && a == lastAddr(s.CIDR))
}

// claim allocates an address in a subnet to a port (one it does not hold
// yet): the given one, or a free one from the pools. Candidates are probed at random so that
// concurrent creates rarely collide; a first optimistic attempt asserts
// its pick free at commit without reading it (nsdb.Update retries, reading,
// when it was taken).
func claim(tx *nsdb.Tx, s *Subnet, portID string, want netip.Addr) (netip.Addr, error) {
	f := IPAllocationKind.Field("ip_address")
	if want.IsValid() {
		owner, err := tx.UniqueOwner(IPAllocationKind, f, s.ID, want.String())
		if err != nil {
			return netip.Addr{}, err
		}
		if owner != "" {
			return netip.Addr{}, ipInUse(s.NetworkID, want)
		}
		return want, allocate(tx, s, portID, want)
	}
	total := new(big.Int)
	for _, p := range s.AllocationPools {
		total.Add(total, p.size())
	}
	if total.Sign() == 0 {
		return netip.Addr{}, conflict("IpAddressGenerationFailure", "No more IP addresses available on network %s.", s.NetworkID)
	}
	for range 32 {
		off, _ := rand.Int(rand.Reader, total)
		a := pick(s.AllocationPools, off)
		owner, err := tx.UniqueOwner(IPAllocationKind, f, s.ID, a.String())
		if err != nil {
			return netip.Addr{}, err
		}
		if owner == "" {
			return a, allocate(tx, s, portID, a)
		}
	}
	// A nearly full subnet: find the free addresses from the list of the
	// used ones.
	used, err := tx.List(IPAllocationKind, "subnet_id", s.ID)
	if err != nil {
		return netip.Addr{}, err
	}
	taken := make(map[netip.Addr]bool, len(used))
	for _, o := range used {
		taken[o.(*IPAllocation).IPAddress] = true
	}
	for _, p := range s.AllocationPools {
		for a := p.Start; a.IsValid() && !p.End.Less(a); a = a.Next() {
			if !taken[a] {
				return a, allocate(tx, s, portID, a)
			}
			if a == p.End {
				break
			}
		}
	}
	return netip.Addr{}, conflict("IpAddressGenerationFailure", "No more IP addresses available on network %s.", s.NetworkID)
}

func pick(pools []Pool, off *big.Int) netip.Addr {
	o := new(big.Int).Set(off)
	for _, p := range pools {
		sz := p.size()
		if o.Cmp(sz) < 0 {
			return addrAt(p, o)
		}
		o.Sub(o, sz)
	}
	return pools[len(pools)-1].End
}

func allocate(tx *nsdb.Tx, s *Subnet, portID string, a netip.Addr) error {
	_, err := tx.Create(&IPAllocation{Meta: model.Meta{ID: allocationID(s.ID, a)}, SubnetID: s.ID, PortID: portID, IPAddress: a})
	return err
}

func ipInUse(netID string, a netip.Addr) *Error {
	return inUse("IpAddressInUse", "Unable to complete operation for network %s. The IP address %s is in use.", netID, a)
}

// release frees a port's address.
func release(tx *nsdb.Tx, subnetID string, a netip.Addr) error {
	err := tx.Delete(IPAllocationKind, allocationID(subnetID, a))
	if err != nil && !errors.Is(err, model.ErrNotFound) {
		return err
	}
	return nil
}

// eui64 is the SLAAC address of a MAC in a /64.
func eui64(p netip.Prefix, m packet.MAC) netip.Addr {
	b := p.Masked().Addr().As16()
	b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15] = m[0]^2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]
	return netip.AddrFrom16(b)
}

// slaac reports whether addresses of the subnet are derived from MACs.
func slaac(s *Subnet) bool {
	return s.IPVersion == 6 && (s.IPv6AddressMode == "slaac" || s.IPv6AddressMode == "dhcpv6-stateless")
}

// randomMAC is a Neutron MAC: base_mac fa:16:3e and three random bytes.
func randomMAC() packet.MAC {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return packet.MAC{0xfa, 0x16, 0x3e, b[0], b[1], b[2]}
}
