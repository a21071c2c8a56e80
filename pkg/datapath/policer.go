package datapath

import "sync"

// Token buckets of port rate limits (PortQoS), shared by the datapaths
// that police in software.

// Bucket is the token bucket of a rate limit: the rate in bytes per
// second and the burst in bytes (Neutron's 80% of a second at the rate
// without one).
func Bucket(kbps, burstKbit uint32) (bytesPerSec, burstBytes float64) {
	bytesPerSec = float64(kbps) * 1000 / 8
	burstBytes = float64(burstKbit) * 1000 / 8
	if burstKbit == 0 {
		burstBytes = 0.8 * bytesPerSec
	}
	return bytesPerSec, max(burstBytes, 1600) // at least a full frame
}

// Policer is a token bucket over a monotonic clock in nanoseconds. It is
// safe for concurrent use.
type Policer struct {
	mu          sync.Mutex
	rate, burst float64 // bytes per nanosecond, bytes
	tokens      float64
	last        int64
}

// NewPolicer returns a full bucket for a rate limit, nil for no limit.
func NewPolicer(kbps, burstKbit uint32) *Policer {
	if kbps == 0 {
		return nil
	}
	rate, burst := Bucket(kbps, burstKbit)
	return &Policer{rate: rate / 1e9, burst: burst, tokens: burst}
}

// Allow takes size bytes' tokens at time now, reporting false (taking
// nothing) when there are not enough. A GSO super-frame takes its bytes
// at once, and one larger than the burst never passes: as with the
// kernel's policers, a TCP sender with TSO needs a burst of many
// super-frames (Neutron's default, 80% of a second at the rate, is).
func (p *Policer) Allow(now int64, size int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last != 0 && now > p.last {
		p.tokens = min(p.burst, p.tokens+float64(now-p.last)*p.rate)
	}
	p.last = now
	if p.tokens < float64(size) {
		return false
	}
	p.tokens -= float64(size)
	return true
}
