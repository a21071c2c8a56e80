//go:build linux

package ebpf

import (
	"testing"

	"github.com/nagare/nagare/pkg/datapath"
)

// TestBucketOf checks the kernel's buckets against datapath.Bucket: the
// rate in bytes per second, the burst (and the full bucket's tokens) in
// the nanoseconds the rate takes to fill it.
func TestBucketOf(t *testing.T) {
	for _, c := range []struct {
		kbps, burstKbit uint32
		want            policer
	}{
		{0, 0, policer{}},
		{0, 1000, policer{}}, // a burst without a rate is no limit
		// Neutron's default burst: 80% of a second at the rate.
		{20000, 0, policer{Rate: 2500000, Burst: 800000000, Tokens: 800000000}},
		// 16 kbit (2000 bytes) at 80 kbit/s (10000 bytes/s): 200 ms.
		{80, 16, policer{Rate: 10000, Burst: 200000000, Tokens: 200000000}},
		// At least a full frame (1600 bytes): 1.6 ms at 8 Mbit/s.
		{8000, 1, policer{Rate: 1000000, Burst: 1600000, Tokens: 1600000}},
		// The largest burst at the smallest rate fits in 64 bits.
		{1, ^uint32(0), policer{Rate: 125, Burst: 4294967295000000000, Tokens: 4294967295000000000}},
	} {
		got := bucketOf(c.kbps, c.burstKbit)
		if got != c.want {
			t.Errorf("bucketOf(%d kbit/s, %d kbit) = %+v, want %+v", c.kbps, c.burstKbit, got, c.want)
		}
		if c.kbps == 0 {
			continue
		}
		rate, burst := datapath.Bucket(c.kbps, c.burstKbit)
		if bytes := float64(got.Burst) * rate / 1e9; bytes < burst-1 || bytes > burst+1 {
			t.Errorf("bucketOf(%d kbit/s, %d kbit) holds %.0f bytes, datapath.Bucket %.0f", c.kbps, c.burstKbit, bytes, burst)
		}
	}
}
