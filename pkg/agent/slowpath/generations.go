package slowpath

// Generations numbers a datapath's invalidations and remembers, for the
// last GenerationWindow of them, which tags each removed, as a 256-bit
// Bloom filter. A flow simulated at generation g is stale only if a later
// invalidation may have removed a flow with one of its tags — not merely
// because one came: at tens of thousands of new connections a second every
// connection's state push invalidates (its own tags), and a stale check
// on the number alone refused nearly every install. False positives
// (a full filter, a window overrun) only cost a miss more.
//
// Generations is not safe for concurrent use: its owner orders
// invalidations against installs (countedFlows' lock).
type Generations struct {
	cur  uint64
	ring [GenerationWindow]genRecord
}

// GenerationWindow is how many invalidations are remembered. A flow
// whose simulation more than this many invalidations overtook is stale.
const GenerationWindow = 1024

type genRecord struct {
	gen   uint64
	all   bool // a flush: every flow went
	bloom [4]uint64
}

// Current is the generation now: that of the last invalidation.
func (g *Generations) Current() uint64 { return g.cur }

// Advance records an invalidation of tags and returns its generation.
func (g *Generations) Advance(tags []uint64) uint64 {
	g.cur++
	r := &g.ring[g.cur%GenerationWindow]
	*r = genRecord{gen: g.cur}
	for _, t := range tags {
		a, b := bloomBits(t)
		r.bloom[a>>6] |= 1 << (a & 63)
		r.bloom[b>>6] |= 1 << (b & 63)
	}
	return g.cur
}

// AdvanceAll records an invalidation of every flow (a flush).
func (g *Generations) AdvanceAll() uint64 {
	g.cur++
	g.ring[g.cur%GenerationWindow] = genRecord{gen: g.cur, all: true}
	return g.cur
}

// Stale reports whether a flow with tags, simulated at generation since,
// may have read what an invalidation after since changed; skip (0: none)
// is one generation not to count, the walk's own state push.
func (g *Generations) Stale(since, skip uint64, tags []uint64) bool {
	if since > g.cur {
		return true // not a generation this table gave
	}
	if g.cur-since >= GenerationWindow {
		return true
	}
	for n := since + 1; n <= g.cur; n++ {
		if n == skip {
			continue
		}
		r := &g.ring[n%GenerationWindow]
		if r.gen != n || r.all {
			return true
		}
		for _, t := range tags {
			a, b := bloomBits(t)
			if r.bloom[a>>6]&(1<<(a&63)) != 0 && r.bloom[b>>6]&(1<<(b&63)) != 0 {
				return true
			}
		}
	}
	return false
}

// bloomBits are a tag's two bits in a record's filter. Tags are hashes
// already, but of differing quality (some are object ids' hashes, some
// connection keys'): mixing once more is cheap.
func bloomBits(t uint64) (a, b uint64) {
	t *= 0x9e3779b97f4a7c15
	return t >> 56, (t >> 48) & 0xff
}
