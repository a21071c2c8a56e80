package datapath

import "testing"

func TestBucket(t *testing.T) {
	cases := []struct {
		name             string
		kbps, burstKbit  uint32
		wantRate, wantBu float64
	}{
		{"explicit burst", 8000, 800, 1e6, 1e5},
		{"default burst is 80% of a second", 8000, 0, 1e6, 0.8e6},
		{"tiny burst holds a full frame", 8000, 1, 1e6, 1600},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, b := Bucket(c.kbps, c.burstKbit)
			if r != c.wantRate || b != c.wantBu {
				t.Fatalf("Bucket(%d, %d) = %v, %v; want %v, %v", c.kbps, c.burstKbit, r, b, c.wantRate, c.wantBu)
			}
		})
	}
}

func TestPolicer(t *testing.T) {
	if NewPolicer(0, 100) != nil {
		t.Fatal("a zero rate is no limit, want a nil policer")
	}
	const ms = int64(1e6)
	type step struct {
		at   int64 // ns
		size int
		want bool
	}
	cases := []struct {
		name            string
		kbps, burstKbit uint32 // 8000 kbit/s: 1000 bytes per ms
		steps           []step
	}{
		{"burst then refill", 8000, 80, []step{ // burst 10000 bytes
			{1, 6000, true}, {1, 4000, true}, {1, 1, false},
			{1 + ms, 1000, true}, {1 + ms, 1000, false},
			{1 + 100*ms, 10000, true}, // refilled, capped at the burst
			{1 + 100*ms, 1, false},
		}},
		{"a frame larger than the burst never passes", 8000, 16, []step{ // burst 2000 bytes
			{1, 65000, false},
			{1 + 100*ms, 65000, false},
			{1 + 100*ms, 2000, true}, // nothing was taken
		}},
		{"super-frame refused on a partly empty bucket", 8000, 16, []step{
			{1, 1500, true},
			{1, 65000, false}, // 500 tokens < burst: refused, nothing taken
			{1, 500, true},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := NewPolicer(c.kbps, c.burstKbit)
			for i, s := range c.steps {
				if got := p.Allow(s.at, s.size); got != s.want {
					t.Fatalf("step %d: Allow(%d, %d) = %v, want %v (tokens %v)", i, s.at, s.size, got, s.want, p.tokens)
				}
			}
		})
	}
}
