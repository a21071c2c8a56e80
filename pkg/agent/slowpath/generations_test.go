package slowpath

import "testing"

func TestGenerations(t *testing.T) {
	tags := func(ts ...uint64) []uint64 { return ts }
	for _, c := range []struct {
		name  string
		do    func(g *Generations) (since, skip uint64)
		flow  []uint64
		stale bool
	}{
		{"nothing since", func(g *Generations) (uint64, uint64) { g.Advance(tags(1)); return g.Current(), 0 }, tags(1), false},
		{"other tags", func(g *Generations) (uint64, uint64) {
			s := g.Current()
			g.Advance(tags(2, 3))
			g.Advance(tags(4))
			return s, 0
		}, tags(1, 5), false},
		{"one of its tags", func(g *Generations) (uint64, uint64) {
			s := g.Current()
			g.Advance(tags(2))
			g.Advance(tags(9, 5))
			return s, 0
		}, tags(1, 5), true},
		{"its own push skipped", func(g *Generations) (uint64, uint64) {
			s := g.Current()
			return s, g.Advance(tags(1))
		}, tags(1), false},
		{"its own push and another's of the same tag", func(g *Generations) (uint64, uint64) {
			s := g.Current()
			own := g.Advance(tags(1))
			g.Advance(tags(1))
			return s, own
		}, tags(1), true},
		{"an invalidation before it counts not", func(g *Generations) (uint64, uint64) {
			g.Advance(tags(1))
			return g.Current(), 0
		}, tags(1), false},
		{"a flush", func(g *Generations) (uint64, uint64) { s := g.Current(); g.AdvanceAll(); return s, 0 }, nil, true},
		{"the window overrun", func(g *Generations) (uint64, uint64) {
			s := g.Current()
			for range GenerationWindow {
				g.Advance(tags(2))
			}
			return s, 0
		}, tags(1), true},
		{"just inside the window", func(g *Generations) (uint64, uint64) {
			s := g.Current()
			for range GenerationWindow - 1 {
				g.Advance(tags(2))
			}
			return s, 0
		}, tags(1), false},
		{"a generation from the future", func(g *Generations) (uint64, uint64) { return g.Current() + 1, 0 }, tags(1), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var g Generations
			g.Advance(tags(7)) // not at zero
			since, skip := c.do(&g)
			if got := g.Stale(since, skip, c.flow); got != c.stale {
				t.Fatalf("stale %v, want %v", got, c.stale)
			}
		})
	}
}

// The filter's false positives stay rare at the sizes a state push
// invalidates (two tags per entry, a few entries).
func TestGenerationsFalsePositives(t *testing.T) {
	var g Generations
	fp := 0
	const n = 1000
	for i := range uint64(n) {
		g.Advance([]uint64{i*2 + 1<<40, i*2 + 1 + 1<<40})
		if g.Stale(g.Current()-1, 0, []uint64{i + 1<<50, i + 2<<50, i + 3<<50}) {
			fp++
		}
	}
	if fp > n/50 {
		t.Fatalf("%d of %d flows of 3 tags taken for stale after an unrelated push of 2", fp, n)
	}
}
