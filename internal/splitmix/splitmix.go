// Package splitmix holds the splitmix64 finalizer, the one mixing function
// behind the simulator's tags and ECMP and load-balancer choices and the
// flow-state table's hash. Agents of different versions must compute the
// same tags and choices, so there is exactly one copy of it.
package splitmix

// Mix64 is the splitmix64 finalizer: it spreads every input bit over the
// whole word, so hashes built by xor-ing fields together stay uniform.
func Mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
