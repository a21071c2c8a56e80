package sim

import (
	"net/netip"

	"github.com/nagare/nagare/internal/persist"
	"github.com/nagare/nagare/internal/splitmix"
)

// The topology's persistent containers (internal/persist) and their keys'
// hashes.
type (
	vec[T any]                = persist.Vec[T]
	hmap[K comparable, V any] = persist.Map[K, V]
)

func newHmap[K comparable, V any](hash func(K) uint64) hmap[K, V] { return persist.NewMap[K, V](hash) }

func hashID(s string) uint64 { return persist.HashString(s) }

func hashUint32(k uint32) uint64 { return splitmix.Mix64(uint64(k)) }

func hashMACKey(k macKey) uint64 {
	return splitmix.Mix64(uint64(uint32(k.dev))<<16 ^ uint64(k.vlan) ^ macBits(k.mac)<<8)
}

func hashIPKey(k ipKey) uint64 {
	return splitmix.Mix64(uint64(uint32(k.dev))<<16^uint64(k.vlan)) ^ addrHash(netip.AddrFrom16(k.ip))
}

func hashAddr(a netip.Addr) uint64 { return addrHash(a) }
